"""`exchange verify`: re-check everything an auditor relies on, naming the first broken item.

Checks, in order: the provenance chain (continuity, entry hashes, signatures); every batch manifest
(signature, count conservation, every file's size and SHA-256, the DuckLake snapshot's files and row
counts against the manifest, a provenance commit entry carrying the manifest digest); every committed
batch has a manifest; every extract against its signed manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from exchange.access.extract import EXTRACT_MANIFEST, verify_extract
from exchange.config import ExchangeSettings, Layout
from exchange.errors import VerificationError
from exchange.lake.commit import LEDGER, QUARANTINE, files_added, ledger_rows, snapshot_of
from exchange.lake.connect import catalog_and_data, connect
from exchange.provenance.log import ProvenanceLog, verify_chain
from exchange.provenance.manifest import SignedManifest, manifest_bytes, read_manifest
from exchange.signing.canonical import file_sha256
from exchange.signing.keys import Keyring, TrustBundle, verify_signature


@dataclass
class VerifyReport:
    """What verify checked and what it found broken (in the order found)."""

    entries: int = 0
    manifests: int = 0
    files: int = 0
    extracts: int = 0
    problems: list[VerificationError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check(report: VerifyReport, fn: Callable[[], None]) -> None:
    try:
        fn()
    except VerificationError as exc:
        report.problems.append(exc)


def verify_home(settings: ExchangeSettings) -> VerifyReport:
    """Verify the whole EXCHANGE_HOME."""
    layout = Layout(settings.home)
    bundle = Keyring(layout.keys).trust_bundle()
    report = VerifyReport()
    log = ProvenanceLog(layout.provenance)

    def chain() -> None:
        report.entries = verify_chain(log, bundle)

    _check(report, chain)
    commit_digests = {
        e.subject: e.digests.get("manifest") for e in _safe_entries(log) if e.action == "commit"
    }
    manifests = sorted(layout.manifests.rglob("*.json"))
    lake_root = Path(catalog_and_data(settings)[1])
    with connect(settings, read_only=True) as con:
        seen: set[str] = set()
        for path in manifests:
            item = str(path.relative_to(layout.home))
            try:
                signed = read_manifest(path)
            except ValueError as exc:
                report.problems.append(VerificationError(item, f"unreadable manifest: {exc}"))
                continue
            seen.add(signed.manifest.batch_id)
            report.manifests += 1
            _check(report, partial(_verify_manifest, signed, item, bundle, lake_root, con, report))
            if commit_digests.get(signed.manifest.batch_id) != signed.digest():
                report.problems.append(VerificationError(
                    item, "no provenance commit entry carries this manifest's digest (manifest replaced?)"))
        for row in ledger_rows(con):
            if row["batch_id"] not in seen:
                report.problems.append(VerificationError(
                    f"lake batch {row['batch_id']}", f"committed to {LEDGER} but has no manifest"))
    for manifest in sorted(layout.extracts.rglob(EXTRACT_MANIFEST)):
        report.extracts += 1
        _check(report, partial(_verify_extract, manifest.parent, bundle))
    return report


def _safe_entries(log: ProvenanceLog) -> list:  # type: ignore[type-arg]
    try:
        return log.read()
    except ValueError:
        return []  # the chain check already reported the unreadable entry


def _verify_extract(directory: Path, bundle: TrustBundle) -> None:
    verify_extract(directory, bundle)


def _verify_manifest(
    signed: SignedManifest, item: str, bundle: TrustBundle, lake_root: Path, con: object, report: VerifyReport
) -> None:
    m = signed.manifest
    verify_signature(bundle, signed.signature, manifest_bytes(m), m.created_at, item)
    c = m.counts
    if c.pulled != c.accepted + c.quarantined:
        raise VerificationError(item, f"counts not conserved: pulled {c.pulled} != accepted {c.accepted} "
                                      f"+ quarantined {c.quarantined}")
    for f in m.files:
        path = lake_root / f.name
        if not path.exists():
            raise VerificationError(f"lake file {f.name}", f"listed in {item} but missing")
        if path.stat().st_size != f.size or file_sha256(path) != f.sha256:
            raise VerificationError(f"lake file {f.name}", f"content differs from {item} (SHA-256 mismatch)")
        report.files += 1
    snapshot = snapshot_of(con, m.batch_id)  # type: ignore[arg-type]
    if snapshot != m.snapshot_id:
        raise VerificationError(item, f"manifest names snapshot {m.snapshot_id}, the lake has {snapshot}")
    in_lake = {(f.table, f.relative, f.rows) for f in files_added(con, snapshot, lake_root)}  # type: ignore[arg-type]
    in_manifest = {(f.table, f.name, f.rows) for f in m.files}
    if in_lake != in_manifest:
        raise VerificationError(item, f"snapshot {snapshot}'s files differ from the manifest: "
                                      f"lake-only {sorted(in_lake - in_manifest)}, "
                                      f"manifest-only {sorted(in_manifest - in_lake)}")
    rows = {t: 0 for t in (m.dataset, QUARANTINE)}
    for f in m.files:
        rows[f.table] = rows.get(f.table, 0) + f.rows
    if rows[m.dataset] != c.accepted or rows[QUARANTINE] != c.quarantined:
        raise VerificationError(item, f"lake holds {rows[m.dataset]} accepted / {rows[QUARANTINE]} quarantined "
                                      f"rows, the manifest says {c.accepted} / {c.quarantined}")


