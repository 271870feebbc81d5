"""`exchange verify`: re-check everything an auditor relies on, naming the first broken item.

Checks, in order:

1. the trust bundle: its own signature (a key slipped into it breaks it), and the hub's key history from
   the anchor the verifier holds outside EXCHANGE_HOME (exchange/signing/anchor.py); the grants' signatures;
2. the provenance chain (continuity, entry hashes, signatures against the key valid at each entry's
   time, revocations), from the live log or from a chain of archives; archives against their signed
   headers, each other and the log;
3. every batch manifest: signature, count conservation, every lake file's size and SHA-256, the DuckLake
   snapshot's files and row counts, the provenance commit entry carrying the manifest digest and the
   snapshot id, the pull entry carrying the landing digests, and the landing copy itself when present;
4. the lake as a whole: every committed batch has a manifest, every live catalog file is listed by a
   manifest, every Parquet file in the data path is known to the catalog, and the catalog has not been
   rolled back behind a signed checkpoint;
5. every extract against its signed manifest and the provenance entry that recorded it.

Modes: the whole EXCHANGE_HOME (`verify_home`), incrementally from the last verified checkpoint
(`incremental=True`), or an auditor's offline copy (`verify_offline`: archives or a log, a lake copy,
a trust bundle; no EXCHANGE_HOME needed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from exchange.config import ExchangeSettings, Layout, existing_home
from exchange.errors import VerificationError
from exchange.provenance.accounted import missing_archives, office_reports, verified_record
from exchange.provenance.archive import (
    ARCHIVES,
    ArchiveContents,
    archive_paths,
    archives_locked,
    read_header,
)
from exchange.provenance.chaincheck import verify_archive_chain, verify_log_and_archives
from exchange.provenance.checkpoint import STATE_FILE, VerifiedState, load_state, save_state
from exchange.provenance.log import ChainVerifier, ProvenanceLog
from exchange.provenance.problems import Mismatch
from exchange.provenance.storecheck import (
    Sources,
    extract_dirs,
    label,
    lake_exists,
    manifest_files,
    open_stream,
    verify_store,
)
from exchange.provenance.trustcheck import check_grants, check_trust
from exchange.provenance.tsa import TSA_DIR, LocalTsa
from exchange.provenance.verify_result import ChainFacts, VerifyReport, unreadable_as_problem
from exchange.provenance.witness import RECEIPTS, WitnessCheck, check_witnessed, load_receipts, office_journals
from exchange.signing.keyring import Keyring
from exchange.signing.trust import TrustBundle

__all__ = ["VerifyReport", "lake_exists", "load_trust_bundle", "verify_home", "verify_offline"]


def verify_home(settings: ExchangeSettings, *, incremental: bool = False, record: bool = True,
                anchors: Sequence[str] | None = None) -> VerifyReport:
    """Verify the whole EXCHANGE_HOME (or, incrementally, what is new since the last verified checkpoint).

    The trust bundle is checked against `anchors` (hub key ids), else the setting ``trust_anchor``; with
    neither, the verdict is UNANCHORED and the report names the root key to pin.

    SettingsError when EXCHANGE_HOME does not hold a hub (nothing is created: an empty home is not "intact").
    Any file verify cannot read ends as a named problem in the report, never as an exception.
    """
    layout = existing_home(settings)
    report = VerifyReport(mode="incremental" if incremental else "full")
    with unreadable_as_problem(report, f"EXCHANGE_HOME {layout.home}"):
        _verify_home(settings, layout, report, incremental, record, anchors)
    return report


def _verify_home(settings: ExchangeSettings, layout: Layout, report: VerifyReport, incremental: bool,
                 record: bool, anchors: Sequence[str] | None) -> None:
    keyring = Keyring(layout.keys)
    item = f"trust bundle {label(keyring.trust_bundle_path, layout.home)}"
    try:
        bundle = keyring.trust_bundle()
    except (OSError, ValueError) as exc:  # without the keys nothing else can be checked
        report.problems.append(Mismatch(item, f"unreadable: {' '.join(str(exc).split())}",
                                        expected="the hub's trust bundle", found="unreadable"))
        return
    if keyring.trust_bundle_path.exists() or settings.trust_anchor or anchors:
        # Without a bundle every signature check below fails and says so; with an anchor its absence is named.
        check_trust(report, bundle, item, setting=settings.trust_anchor, anchors=anchors, home=layout.home)
    with unreadable_as_problem(report, f"grants under {label(layout.access, layout.home)}"):
        check_grants(report, layout.access, bundle)
    log = ProvenanceLog(layout.provenance)
    previous = None
    with unreadable_as_problem(report, f"provenance/{STATE_FILE} (the last verify's record)"):
        try:
            previous = load_state(layout.provenance, bundle)
        except VerificationError as exc:  # edited or forged: named, and not trusted as a starting point
            report.problems.append(exc)
    witnessing = WitnessCheck(bundle, load_receipts(layout.provenance / RECEIPTS), office_journals(layout.sandboxes),
                              _tsa_root(settings, layout))
    facts = ChainFacts(watch=({previous.head_seq} if previous else set()) | witnessing.seqs())
    if previous is not None and previous.lake_snapshot is not None:
        facts.lake_floor = previous.lake_snapshot
    start = previous if incremental else None
    if incremental and previous is None:
        report.notes.append("no earlier verify recorded: checked everything")
    src = Sources(bundle, settings, manifest_files(layout.manifests, layout.home),
                  extract_dirs(layout.extracts), layout.landing, start)
    with _early_stream(src):
        archives = layout.provenance / ARCHIVES
        # Shared: `provenance archive --truncate` (exclusive) waits until the chain is read.
        with archives_locked(archives, shared=True) if archives.is_dir() else nullcontext():
            checked = verify_log_and_archives(log, partial(archive_paths, archives), bundle, report, facts,
                                              start, start.archives if start else None)
        if previous is not None:
            _check_not_truncated(previous, checked.chain, facts, report, log)
        report.problems += verified_record(facts, previous)
        report.problems += missing_archives(facts, len(archive_paths(archives)))
        _check_witnessed(report, witnessing, facts, checked.chain.seq, start.checkpoint_seq if start else 0)
        state = verify_store(src, facts, report)
        report.problems += office_reports(facts, layout.reports)
    if not report.ok:
        classify_interrupted(report, facts, settings, log)
    if report.ok and record:
        state.log_first_seq = checked.first_seq
        resumable = previous if start and start.log_first_seq == checked.first_seq else None
        try:
            _record(layout.provenance, state, checked.chain, facts, resumable, layout, keyring)
        except OSError as exc:
            # The verdict stands without the record (a full disk, a read-only copy): only --incremental loses it.
            report.notes.append(f"this verify was not recorded ({exc.strerror or exc}); the next --incremental "
                                "run checks everything again")


@contextmanager
def _early_stream(src: Sources) -> Iterator[None]:
    """Read the first manifests and start hashing their files before the chain check, which then runs beside
    the hashing (hashlib releases the GIL); the hashing threads stop on the way out, whatever happened."""
    if not lake_exists(src.settings):
        yield
        return
    src.stream = open_stream(src)
    try:
        src.stream.prime()
        yield
    finally:
        src.stream.close()


def _check_not_truncated(
    previous: VerifiedState, chain: ChainVerifier, facts: ChainFacts, report: VerifyReport, log: ProvenanceLog
) -> None:
    if chain.seq < previous.head_seq and not report.problems:
        report.problems.append(Mismatch(f"provenance log {log.path.name}", "truncated: entries verified earlier "
                                        "are gone", expected=f"at least seq {previous.head_seq}",
                                        found=f"last seq {chain.seq}"))
    logged = facts.hashes.get(previous.head_seq)
    if logged is not None and logged != previous.head_hash:
        report.problems.append(Mismatch(f"provenance log {log.path.name}", f"entry seq {previous.head_seq} differs "
                                        "from the one verified earlier (log rewritten?)",
                                        expected=previous.head_hash, found=logged))


def _record(
    directory: Path, state: VerifiedState, chain: ChainVerifier, facts: ChainFacts,
    previous: VerifiedState | None, layout: Layout, keyring: Keyring,
) -> None:
    state.head_seq, state.head_hash = chain.seq, chain.head
    if facts.checkpoints:
        entry, offset, line = facts.checkpoints[-1]
        state.checkpoint_seq, state.checkpoint_hash = entry.seq, entry.entry_hash
        state.checkpoint_offset, state.checkpoint_line = offset, line
    elif previous is not None:
        state.checkpoint_seq, state.checkpoint_hash = previous.checkpoint_seq, previous.checkpoint_hash
        state.checkpoint_offset, state.checkpoint_line = previous.checkpoint_offset, previous.checkpoint_line
    for path in archive_paths(layout.provenance / ARCHIVES):
        state.archives[path.name] = read_header(path).digest()
    save_state(directory, state, keyring.signer())


def _tsa_root(settings: ExchangeSettings, layout: Layout) -> bytes | None:
    """The pinned root of the time-stamping authority: the operator's setting, else the local authority's."""
    path = settings.witness_tsa_root or LocalTsa(layout.home / TSA_DIR).root_pem
    return path.read_bytes() if path.is_file() else None


def _check_witnessed(report: VerifyReport, witnessing: WitnessCheck, facts: ChainFacts, last_seq: int,
                     floor: int) -> None:
    problems, newest = check_witnessed(witnessing, facts.hashes, facts.witnesses, last_seq, floor)
    report.problems += problems
    report.witnessed = newest
    if newest is None and not witnessing.receipts and not witnessing.journals:
        report.notes.append("no witnessed head yet: run `exchange witness` so the log cannot be cut or rewritten "
                            "unnoticed")


def classify_interrupted(report: VerifyReport, facts: ChainFacts, settings: ExchangeSettings,
                         log: ProvenanceLog) -> None:
    """Mark the problems an interrupted commit or write explains (report.interrupted).

    A problem counts only when it concerns a batch whose commit began with a signed commit_intent entry, has no
    commit entry yet and still has its intent marker in staging, or is an unpublished extract folder, or a torn
    last log line: what the commit protocol leaves after a crash, and what recovery settles. So does a lake object
    a signed `recovered` entry lists as left on object storage, holding only that batch's rows: recovery cannot
    delete it, an operator does. Anything else, or a marker without a signed intent, stays tampering or damage.
    """
    from exchange.recovery import intents_pending

    pending = {b for b in intents_pending(Layout(settings.home).staging)
               if b in facts.intents and b not in facts.commits}
    torn = log.torn_tail() > 0
    left: list[str] = []

    def explained(problem: VerificationError) -> bool:
        text = str(problem)
        if any(b in text for b in pending) or "/.partial-" in text:
            return True
        if torn and problem.problem.startswith("unreadable entry"):
            return True
        lake_file = problem.item.removeprefix("lake file ")
        if lake_file == problem.item:
            return False
        if lake_file not in facts.left and not pending:
            return False
        batches = _rows_of_batches(settings, lake_file)
        if lake_file in facts.left and batches == {facts.left[lake_file]}:
            left.append(lake_file)
            return True
        return bool(pending) and batches <= pending

    explains = [p for p in report.problems if explained(p)]
    report.interrupted += explains
    if report.recoverable and len(explains) > len(left):
        report.notes.append("a commit or write was interrupted (a signed intent names it); nothing points at "
                            "tampering: run `exchange recover`, then verify again")
    if left:
        report.notes.append(f"{len(left)} lake object(s) an interrupted commit wrote to object storage, which "
                            "recovery could not delete (its signed `recovered` entries list them): delete them with "
                            "your storage tool, or while no commit runs with DuckLake's cleanup "
                            "(`CALL ducklake_delete_orphaned_files`, docs/operators.md), then verify again")


def _rows_of_batches(settings: ExchangeSettings, relative: str) -> set[str]:
    """The batch ids a lake data file's rows carry ({"?"} when it cannot be read: not explained)."""
    import duckdb

    from exchange.lake import files as lake_files
    from exchange.lake.connect import catalog_and_data, connect

    location = lake_files.join(catalog_and_data(settings)[1], relative)
    try:
        with connect(settings, read_only=True) as con:
            rows = con.execute("SELECT DISTINCT batch_id FROM read_parquet(?)", [location]).fetchall()
    except duckdb.Error:
        return {"?"}
    return {str(b) for (b,) in rows} or {"?"}


def load_trust_bundle(path: Path) -> TrustBundle:
    """Read a trust bundle file (an auditor's copy)."""
    return TrustBundle.model_validate_json(path.read_text(encoding="utf-8"))


def verify_offline(
    provenance: Path,
    trust_bundle: Path,
    lake: Path,
    *,
    manifests: Path | None = None,
    extracts: Path | None = None,
    anchors: Sequence[str] | None = None,
    setting: str | None = None,
    witnesses: Path | None = None,
    tsa_root: Path | None = None,
    reports: Path | None = None,
) -> VerifyReport:
    """Verify an auditor's copy: `provenance` is one archive, a folder of archives, or a folder with log.jsonl
    (and optionally archives/); `lake` holds catalog.ducklake and data/. Needs no EXCHANGE_HOME. The bundle is
    checked against the auditor's own `anchors`, else `setting` (EXCHANGE_TRUST_ANCHOR); without either the
    verdict is UNANCHORED.

    Any file verify cannot read ends as a named problem in the report, never as an exception."""
    report = VerifyReport(mode="offline")
    with unreadable_as_problem(report, f"auditor's copy ({provenance}, {lake})"):
        _verify_offline(report, provenance, trust_bundle, lake, manifests, extracts, anchors, setting,
                        _Kept(witnesses, tsa_root, reports))
    return report


@dataclass(frozen=True)
class _Kept:
    """What else an auditor kept beside the chain and the lake."""

    witnesses: Path | None
    tsa_root: Path | None
    reports: Path | None


def _verify_offline(report: VerifyReport, provenance: Path, trust_bundle: Path, lake: Path, manifests: Path | None,
                    extracts: Path | None, anchors: Sequence[str] | None, setting: str | None,
                    kept: _Kept) -> None:
    try:
        bundle = load_trust_bundle(trust_bundle)
    except (OSError, ValueError) as exc:
        report.problems.append(Mismatch(f"trust bundle {trust_bundle}", f"unreadable: {exc}",
                                        expected="the hub's exported trust bundle", found="unreadable"))
        return
    check_trust(report, bundle, f"trust bundle {trust_bundle.name}", setting=setting, anchors=anchors)
    receipts = kept.witnesses or (provenance / RECEIPTS if provenance.is_dir() else None)
    witnessing = WitnessCheck(bundle, load_receipts(receipts) if receipts else [], [],
                              kept.tsa_root.read_bytes() if kept.tsa_root else None, label=str(receipts))
    facts = ChainFacts(watch=witnessing.seqs())
    archives: list[ArchiveContents]
    last_seq = 0
    if provenance.is_file():
        archives = verify_archive_chain([provenance], bundle, report, facts)
    else:
        paths = archive_paths(provenance) + archive_paths(provenance / ARCHIVES)
        log = ProvenanceLog(provenance)
        if log.path.exists():
            checked = verify_log_and_archives(log, lambda: paths, bundle, report, facts)
            archives, last_seq = checked.archives, checked.chain.seq
            report.problems += missing_archives(facts, len(archive_paths(provenance / ARCHIVES)))
        else:
            archives = verify_archive_chain(paths, bundle, report, facts)
    if archives:
        last_seq = max(last_seq, archives[-1].header.last_seq)
    _check_witnessed(report, witnessing, facts, last_seq, 0)
    if kept.reports is not None:
        report.problems += office_reports(facts, kept.reports)
    carried: list[tuple[str, Callable[[], bytes]]] = [
        (f"{a.path.name}:{name}", _const(data)) for a in archives for name, data in a.manifests.items()
    ]
    if manifests is not None:
        carried = manifest_files(manifests, manifests.parent) + carried
    if report.entries == 0 and not report.problems:
        report.problems.append(Mismatch(f"provenance {provenance}", "no provenance entries found (wrong path?)",
                                        expected="archives or a log.jsonl", found="nothing"))
    settings = ExchangeSettings(home=lake, lake_catalog=str(lake / "catalog.ducklake"),
                                lake_data=str(lake / "data") + "/")
    if not lake_exists(settings):
        report.problems.append(Mismatch(f"lake copy {lake}", "no catalog.ducklake (wrong path?)",
                                        expected=str(lake / "catalog.ducklake"), found="no file"))
        return
    src = Sources(bundle, settings, carried, extract_dirs(extracts), account_extracts=extracts is not None)
    verify_store(src, facts, report)


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data
