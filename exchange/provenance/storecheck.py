"""verify, part 2: manifests against the lake, the lake as a whole, extracts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import duckdb

from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest, extract_digest, verify_extract
from exchange.config import ExchangeSettings
from exchange.errors import VerificationError
from exchange.lake import files as lake_files
from exchange.lake.commit import LEDGER, QUARANTINE
from exchange.lake.connect import catalog_and_data, connect
from exchange.provenance.checkpoint import VerifiedState
from exchange.provenance.hashing import Prefetcher
from exchange.provenance.lakecheck import LakeCatalog, check_catalog, read_catalog
from exchange.provenance.links import check_replay_link, check_snapshot_claim, origin_of, snapshots_without_manifest
from exchange.provenance.manifest import BatchManifest, SignedManifest, landing_dir, manifest_bytes
from exchange.provenance.manifeststream import ListedManifests, Locations, ManifestStream
from exchange.provenance.problems import Mismatch
from exchange.provenance.verify_result import ChainFacts, VerifyReport, check, unreadable_as_problem
from exchange.signing.roles import Signed, check_signer
from exchange.signing.trust import TrustBundle, verify_signature


@dataclass
class Sources:
    """Where one verify run reads from."""

    bundle: TrustBundle
    settings: ExchangeSettings
    manifests: list[tuple[str, Callable[[], bytes]]]
    extracts: list[Path]
    landing: Path | None = None
    state: VerifiedState | None = None
    stream: ManifestStream | None = None  # opened early by the caller to hash beside the chain check


def open_stream(src: Sources) -> ManifestStream:
    """The manifests of `src`, to be walked once, with their local files hashed ahead (see manifeststream.py)."""
    lake_root = catalog_and_data(src.settings)[1]
    where = Locations(None if lake_files.is_remote(lake_root) else lake_root, src.landing)
    return ManifestStream(src.manifests, src.state.manifests if src.state else {}, where, Prefetcher())


@dataclass
class LakeView:
    """The open lake as the manifest checks see it: the connection, its data path and its catalog facts."""

    con: duckdb.DuckDBPyConnection
    root: str
    catalog: LakeCatalog


def manifest_files(home_manifests: Path, label_root: Path) -> list[tuple[str, Callable[[], bytes]]]:
    """(label, reader) for every manifest file under a folder; read lazily, one at a time."""
    paths = sorted(home_manifests.rglob("*.json")) if home_manifests.is_dir() else []
    return [(label(p, label_root), p.read_bytes) for p in paths]


def label(path: Path, root: Path) -> str:
    """A path as reported: relative to `root` when under it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def verify_store(src: Sources, facts: ChainFacts, report: VerifyReport) -> VerifiedState:
    """Manifests, the lake and extracts; returns what a later incremental run may skip."""
    state = VerifiedState(verified_at=datetime.now(UTC), head_seq=0, head_hash="")
    if lake_exists(src.settings):
        with unreadable_as_problem(report, f"lake catalog {catalog_and_data(src.settings)[0]}"):
            _verify_lake(src, facts, report, state)
    elif src.manifests or facts.commits:
        catalog = catalog_and_data(src.settings)[0]
        report.problems.append(Mismatch(f"lake catalog {catalog}", "missing, though batches were committed",
                                        expected="a DuckLake catalog", found="no file"))
    _verify_extracts(src, facts, report, state)
    return state


def lake_exists(settings: ExchangeSettings) -> bool:
    """Whether the lake's catalog is there to open (a PostgreSQL catalog is assumed to be)."""
    catalog = catalog_and_data(settings)[0]
    return catalog.startswith(("postgres:", "postgresql:")) or Path(catalog).exists()


def _verify_lake(src: Sources, facts: ChainFacts, report: VerifyReport, state: VerifiedState) -> None:
    lake_root = catalog_and_data(src.settings)[1]  # a folder or s3://bucket/prefix/: kept a string
    stream = src.stream or open_stream(src)
    try:
        with connect(src.settings, read_only=True) as con:
            catalog = read_catalog(con, lake_root)
            _verify_manifests(src, stream, LakeView(con, lake_root, catalog), facts, report, state)
            _verify_catalog(catalog, con, lake_root, stream.listed, facts, report, state)
    finally:
        stream.close()


def _verify_manifests(
    src: Sources, stream: ManifestStream, lake: LakeView, facts: ChainFacts, report: VerifyReport,
    state: VerifiedState,
) -> None:
    digests: dict[str, str] = {}  # every manifest read, checked now or skipped: for the replay links
    replays: list[tuple[BatchManifest, str]] = []
    skipped = 0
    for doc in stream:
        if doc.error is not None:
            report.problems.append(doc.error)
            continue
        state.manifests[doc.batch_id] = digests[doc.batch_id] = doc.digest
        if doc.signed is None:
            skipped += 1
            continue
        signed, item, m = doc.signed, doc.item, doc.signed.manifest
        report.manifests += 1
        before = len(report.problems)
        check(report, partial(_verify_manifest, signed, item, src.bundle, lake, stream.hashes, report))
        check(report, partial(check_snapshot_claim, m, item, lake.catalog.infos))
        check(report, partial(_cross_links, signed, item, doc.digest, facts))
        check(report, partial(_verify_landing, signed, item, src.landing, stream.hashes, report))
        if origin_of(m.batch_id) != m.batch_id:
            replays.append((m, item))
        if len(report.problems) > before:
            state.manifests.pop(m.batch_id, None)
    # After the loop: a replay's origin manifest may come later in the listing (archives, other folders).
    for replayed, item in replays:
        count = len(report.problems)
        check(report, partial(check_replay_link, replayed, item, digests, facts))
        if len(report.problems) > count:
            state.manifests.pop(replayed.batch_id, None)
    if src.state is not None:
        report.skipped["manifests"] = skipped


def _verify_catalog(
    catalog: LakeCatalog, con: duckdb.DuckDBPyConnection, lake_root: str, listed: ListedManifests,
    facts: ChainFacts, report: VerifyReport, state: VerifiedState,
) -> None:
    """The lake as a whole: ledger and snapshots against the manifests, stray files, rollbacks."""
    report.problems += catalog.problems
    unsigned: list[str] = []
    for batch in catalog.batches:
        if batch not in listed.batches:
            unsigned.append(batch)
            report.problems.append(Mismatch(f"lake batch {batch}", f"committed to {LEDGER} but has "
                                            "no signed manifest", expected="a manifest", found="none"))
    report.problems += snapshots_without_manifest(catalog.infos, listed.snapshots, unsigned)
    report.problems += check_catalog(con, lake_root, catalog, listed.files)
    state.lake_snapshot = catalog.head
    if facts.lake_floor is not None and (catalog.head is None or catalog.head < facts.lake_floor):
        report.problems.append(Mismatch("lake catalog", "rolled back: its newest snapshot is older than one a "
                                        "signed checkpoint recorded", expected=f"snapshot >= {facts.lake_floor}",
                                        found=f"snapshot {catalog.head}"))


def _verify_extracts(src: Sources, facts: ChainFacts, report: VerifyReport, state: VerifiedState) -> None:
    done = set(src.state.extracts) if src.state else set()
    skipped = 0
    for directory in src.extracts:
        item = str(directory / EXTRACT_MANIFEST)
        try:
            signed = SignedExtractManifest.model_validate_json((directory / EXTRACT_MANIFEST).read_text("utf-8"))
        except ValueError as exc:
            report.problems.append(VerificationError(item, f"unreadable extract manifest: {exc}"))
            continue
        digest = extract_digest(signed)
        if digest in done:
            skipped += 1
            state.extracts.append(digest)
            continue
        report.extracts += 1
        before = len(report.problems)
        check(report, partial(_verify_extract, directory, src.bundle))
        if digest not in facts.extracts:
            report.problems.append(Mismatch(item, "no provenance extract entry carries this extract manifest's "
                                            "digest (extract replaced or never logged?)", expected=digest,
                                            found="no entry"))
        if len(report.problems) == before:
            state.extracts.append(digest)
    if src.state is not None:
        report.skipped["extracts"] = skipped


def _verify_extract(directory: Path, bundle: TrustBundle) -> None:
    verify_extract(directory, bundle)


def _verify_manifest(
    signed: SignedManifest, item: str, bundle: TrustBundle, lake: LakeView, hashes: Prefetcher, report: VerifyReport,
) -> None:
    m = signed.manifest
    verify_signature(bundle, signed.signature, manifest_bytes(m), m.created_at, item)
    check_signer(bundle, signed.signature, Signed.BATCH_MANIFEST, item)
    c = m.counts
    if c.pulled != c.accepted + c.quarantined:
        raise Mismatch(item, "counts not conserved: pulled != accepted + quarantined", expected=c.pulled,
                       found=f"{c.accepted} + {c.quarantined} = {c.accepted + c.quarantined}")
    for f in m.files:
        location = lake_files.join(lake.root, f.name)
        found = (lake_files.digest(lake.con, location) if lake_files.is_remote(location)
                 else hashes.digest(Path(location)))
        if found is None:
            raise Mismatch(f"lake file {f.name}", f"listed in {item} but missing", expected=f.sha256, found="no file")
        actual, size = found
        if size != f.size:
            raise Mismatch(f"lake file {f.name}", f"size differs from {item}", expected=f.size, found=size)
        if actual != f.sha256:
            raise Mismatch(f"lake file {f.name}", f"content differs from {item} (SHA-256 mismatch)",
                           expected=f.sha256, found=actual)
        report.files += 1
    snapshot = lake.catalog.snapshot_of(m.batch_id)
    if snapshot != m.snapshot_id:
        raise Mismatch(item, "the lake's snapshot for this batch differs from the manifest (catalog rolled back "
                             "or rewritten?)", expected=f"snapshot {m.snapshot_id}", found=f"snapshot {snapshot}")
    in_lake = {(f.table, f.relative, f.rows) for f in lake.catalog.added_by(snapshot)}
    in_manifest = {(f.table, f.name, f.rows) for f in m.files}
    if in_lake != in_manifest:
        raise Mismatch(item, f"snapshot {snapshot}'s files differ from the manifest",
                       expected=sorted(in_manifest - in_lake), found=sorted(in_lake - in_manifest))
    rows = {t: 0 for t in (m.dataset, QUARANTINE)}
    deleted = 0
    for f in m.files:
        if f.kind == "delete":
            deleted += f.rows
        else:
            rows[f.table] = rows.get(f.table, 0) + f.rows
    if deleted != c.deleted:
        raise Mismatch(item, "the lake's delete files differ from the manifest's deletions",
                       expected=f"{c.deleted} deleted", found=f"{deleted} deleted")
    if rows[m.dataset] != c.accepted or rows[QUARANTINE] != c.quarantined:
        raise Mismatch(item, "lake rows differ from the manifest's counts",
                       expected=f"{c.accepted} accepted / {c.quarantined} quarantined",
                       found=f"{rows[m.dataset]} accepted / {rows[QUARANTINE]} quarantined")


def _cross_links(signed: SignedManifest, item: str, digest: str, facts: ChainFacts) -> None:
    m = signed.manifest
    commit = facts.commits.get(m.batch_id)
    if commit is None or commit.digests.get("manifest") != digest:
        raise Mismatch(item, "no provenance commit entry carries this manifest's digest (manifest replaced?)",
                       expected=digest, found=commit.digests.get("manifest") if commit else "no commit entry")
    if commit.details.get("snapshot_id") != m.snapshot_id:
        raise Mismatch(item, "the provenance commit entry names another snapshot",
                       expected=m.snapshot_id, found=commit.details.get("snapshot_id"))
    landing = {f.name: f.sha256 for f in m.landing}
    pulls = facts.pulls.get(m.batch_id, [])
    if landing and not any(p == landing for p in pulls):
        raise Mismatch(item, "no provenance pull entry carries the manifest's landing digests",
                       expected=landing, found=pulls[-1] if pulls else "no pull entry")


def _verify_landing(
    signed: SignedManifest, item: str, landing_root: Path | None, hashes: Prefetcher, report: VerifyReport
) -> None:
    m = signed.manifest
    if landing_root is None:
        return
    folder = landing_dir(landing_root, m.province, m.dataset, m.batch_id)
    if not folder.is_dir():
        return  # landing copies may be retained elsewhere; the digests stay in the manifest and the log
    for f in m.landing:
        path = folder / f.name
        if not path.exists():
            raise Mismatch(f"landing file {m.batch_id}/{f.name}", f"listed in {item} but missing",
                           expected=f.sha256, found="no file")
        found = hashes.digest(path)
        actual = found[0] if found else "no file"
        if actual != f.sha256:
            raise Mismatch(f"landing file {m.batch_id}/{f.name}", f"differs from what the province delivered "
                           f"({item})", expected=f.sha256, found=actual)
        report.landing += 1


def extract_dirs(root: Path | None) -> list[Path]:
    """Every extract folder (one holding an extract manifest) under `root`."""
    if root is None or not root.is_dir():
        return []
    return [p.parent for p in sorted(root.rglob(EXTRACT_MANIFEST))]


