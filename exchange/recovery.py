"""Recovery: reconcile what a crash left, before any stage runs and on demand (`exchange recover`).

Every stage entry (pull, validate, commit, `exchange run`, the DAG tasks, replay, extracts) calls
:func:`reconcile` first. It settles every commit a dead writer left half-way (exchange/lake/protocol.py):

- intent marker, no snapshot: the data files that attempt wrote are removed and the marker dropped: the batch
  is "not committed", its staged files stay for the re-run;
- intent marker and a snapshot: the missing manifest and/or commit entry are written from the staged files
  (checked against the intent's signed digests first), with a ``recovered`` entry: "committed";

and removes partial files: temporary files of writers that died (staging, landing, manifests, the log's
folder and archives), extract folders never published, and a torn last line of the log. What it removes is
logged in a signed ``cleanup`` entry with names and sizes. Locks need no release: they are flocks, which the
kernel drops with their holder. A batch another live process holds is left alone.

At a stage's entry only the places a crash can leave something are looked at (staging, the log's folder,
the extracts folder's top level, the batch's own landing and manifest folders), so the common case costs a
few directory listings; `exchange recover` also sweeps the whole home and every Parquet file in the lake
data path the catalog does not know.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exchange import atomic
from exchange.atomic import Leftover
from exchange.lake import files as lake_files
from exchange.lake import protocol
from exchange.lake.commit import snapshot_of
from exchange.lake.connect import catalog_and_data, connect, is_postgres
from exchange.lake.retry import catalog_batch_lock, catalog_file_names, uncommitted_files
from exchange.provenance import events
from exchange.provenance.events import HUB
from exchange.provenance.log import ProvenanceLog
from exchange.provenance.manifest import landing_dir, manifest_path
from exchange.signing.signers import Signer

if TYPE_CHECKING:
    from exchange.hub import Hub

log = logging.getLogger(__name__)

PARTIAL_EXTRACT = ".partial-"


@dataclass(frozen=True)
class Removed:
    """A file recovery removed (or, in a dry run, would remove)."""

    path: str
    size: int
    why: str


@dataclass(frozen=True)
class Left:
    """A lake object recovery would remove but cannot: DuckDB deletes no single object from object storage."""

    path: str
    why: str


@dataclass
class RecoveryReport:
    """What one reconcile did."""

    dry_run: bool = False
    completed: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    removed: list[Removed] = field(default_factory=list)
    left: list[Left] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)
    torn_log_bytes: int = 0

    @property
    def acted(self) -> bool:
        """Whether anything was (or, in a dry run, would be) changed."""
        return bool(self.completed or self.abandoned or self.published or self.removed or self.torn_log_bytes)

    def lines(self) -> list[str]:
        """One line per thing done, for people."""
        verb = "would " if self.dry_run else ""
        out = [f"{verb}complete batch {b}: in the lake without its manifest/commit entry" for b in self.completed]
        out += [f"{verb}settle batch {b} as not committed (its commit was interrupted before the lake)"
                for b in self.abandoned]
        out += [f"{verb}publish extract {e} (signed and logged, not yet moved into place)" for e in self.published]
        out += [f"{verb}remove {r.path} ({r.size} bytes): {r.why}" for r in self.removed]
        out += [f"LEFT IN PLACE: {r.path}: {r.why}; DuckDB cannot delete an object: delete it with your storage "
                "tool (docs/operators.md)" for r in self.left]
        if self.torn_log_bytes:
            out.append(f"{verb}cut a torn last line of {self.torn_log_bytes} bytes off the provenance log")
        out += [f"left alone: batch {b} is being run by a live process" for b in self.busy]
        out += [f"NEEDS AN OPERATOR: {u}" for u in self.unrecoverable]
        return out

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report of `exchange recover --json`."""
        return {"dry_run": self.dry_run, "completed": self.completed, "abandoned": self.abandoned,
                "published": self.published, "removed": [r.__dict__ for r in self.removed],
                "left": [r.__dict__ for r in self.left], "busy": self.busy,
                "unrecoverable": self.unrecoverable, "torn_log_bytes": self.torn_log_bytes}


def reconcile(hub: Hub, *, batch_id: str | None = None, full: bool = False, dry_run: bool = False) -> RecoveryReport:
    """Settle what crashed writers left (see the module docstring); `full` also sweeps the whole home and lake."""
    report = RecoveryReport(dry_run=dry_run)
    _torn_log(hub, report)
    staging_root = hub.layout.staging
    if staging_root.is_dir():
        for folder in sorted(p for p in staging_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            intent = protocol.read_intent(folder)
            if intent is None:
                continue
            with ExitStack() as held:
                # Taking the lock is the check: a run that starts between a check and the lock must not abort
                # the whole recovery with BatchBusy; only a busy lock, not a failure inside _settle, is "busy".
                try:
                    held.enter_context(protocol.batch_lock(staging_root, folder.name))
                except protocol.BatchBusy:
                    report.busy.append(folder.name)
                    continue
                _settle(hub, folder, intent, report)
    _sweep(hub, report, batch_id, full)
    _extracts(hub, report, full)
    if full:
        _orphan_lake_files(hub, report)
    if report.removed and not dry_run:
        log_cleanup(hub.log, hub.signer, report.removed)
    for line in report.lines():
        log.warning("recovery: %s", line)
    return report


def log_cleanup(log: ProvenanceLog, signer: Signer, removed: list[Removed]) -> None:
    """The signed `cleanup` entry naming what recovery removed, with sizes and why."""
    log.append(signer, events.Cleanup(removed=[{"path": r.path, "size": r.size, "why": r.why} for r in removed]),
               actor=HUB, subject="recovery")


def remove_leftovers(log: ProvenanceLog, signer: Signer, found: list[Leftover], home: Path) -> list[Removed]:
    """Remove partial files a caller holding the folder's lock found, and log them (e.g. the archive writer).
    A file gone meanwhile was removed, and logged, by another recovery: it is not logged twice."""
    removed = [Removed(_under(home, item.path), item.size, item.why) for item in found if _unlinked(item.path)]
    if removed:
        log_cleanup(log, signer, removed)
    return removed


def _torn_log(hub: Hub, report: RecoveryReport) -> None:
    torn = hub.log.torn_tail()
    if not torn:
        return
    report.torn_log_bytes = torn
    if not report.dry_run:
        cut = hub.log.cut_torn_tail()
        # The cut bytes were never an entry (no newline, never acknowledged): say what they were.
        hub.log.append(hub.signer, events.Recovered(outcome="torn_line_removed", bytes=len(cut)), actor=HUB,
                       subject="provenance")


def _relative(hub: Hub, path: Path | str) -> str:
    return _under(hub.layout.home, path)


def _under(home: Path, path: Path | str) -> str:
    try:
        return str(Path(path).relative_to(home))
    except ValueError:
        return str(path)


def _settle(hub: Hub, staging: Path, intent: protocol.Intent, report: RecoveryReport) -> None:
    """Bring one interrupted commit to "not committed" or "committed and fully recorded"."""
    batch_id = staging.name
    root = catalog_and_data(hub.settings)[1]
    with catalog_batch_lock(hub.settings, batch_id), connect(hub.settings) as con:
        snapshot = snapshot_of(con, batch_id)
        stray, left = _remove_stray(hub, report, con, root, batch_id)
    if snapshot is None:
        report.abandoned.append(batch_id)
        if not report.dry_run:
            protocol.drop_intent(staging)
            hub.log.append(hub.signer, events.Recovered(outcome="not_committed", removed=stray, left=left),
                           actor=HUB, subject=batch_id)
        return
    changed = intent.mismatches(staging)
    missing = [n for n in ("pull.json", "validation.json") if not (staging / n).exists()]
    if changed or missing:
        # A file gone since a signed intent is among `changed`; a legacy marker promised no files, only `missing`.
        how = (f"changed since the signed commit_intent: {', '.join(changed)}" if changed
               else f"are gone: {', '.join(missing)}")
        report.unrecoverable.append(f"batch {batch_id} is in the lake (snapshot {snapshot}) without its manifest, "
                                    f"and its staged files {how}; it cannot be signed after the fact")
        return
    province, dataset = batch_id.split(".")[:2]
    path = manifest_path(hub.layout.manifests, province, dataset, batch_id)
    what = "commit entry" if path.exists() else "manifest and commit entry"
    report.completed.append(batch_id)
    if report.dry_run:
        return
    with connect(hub.settings, read_only=True) as con:
        hashed = protocol.hashed_files(con, snapshot, root)
    protocol.finish(hub, batch_id, snapshot, hashed, recovered=what)


def _remove(hub: Hub, report: RecoveryReport, found: list[Leftover]) -> None:
    for item in found:
        if report.dry_run or _unlinked(item.path):
            report.removed.append(Removed(_relative(hub, item.path), item.size, item.why))


def _unlinked(path: Path) -> bool:
    """Unlink `path`; False when another recovery (a stage starting beside this one) removed, and logged, it first."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _sweep(hub: Hub, report: RecoveryReport, batch_id: str | None, full: bool) -> None:
    layout = hub.layout
    if full:
        # Only folders whose writers all use exchange/atomic.py's pid-named temporary files (reports, keys and
        # the access registry have writers of their own, whose liveness recovery could not tell).
        roots = [(layout.staging, True), (layout.landing, True), (layout.manifests, True),
                 (layout.provenance, True), (layout.extracts, True)]
    else:
        roots = [(layout.staging, True), (layout.provenance, False), (layout.provenance / "archives", False)]
        if batch_id is not None:
            province, dataset = batch_id.split(".")[:2]
            roots += [(landing_dir(layout.landing, province, dataset, batch_id), False),
                      (manifest_path(layout.manifests, province, dataset, batch_id).parent, False)]
    for root, recursive in roots:
        found = atomic.leftovers(root, recursive=recursive)
        # A live batch's staging folder belongs to its writer.
        found = [f for f in found if not _in_live_batch(hub, f.path)]
        _remove(hub, report, found)


def _in_live_batch(hub: Hub, path: Path) -> bool:
    try:
        batch = path.relative_to(hub.layout.staging).parts[0]
    except (ValueError, IndexError):
        return False
    return protocol.batch_locked_elsewhere(hub.layout.staging, batch)


def partial_extract_name(pid: int, token: str) -> str:
    """The folder an extract is cut into before it is published (the pid tells recovery if its writer lives)."""
    return f"{PARTIAL_EXTRACT}{pid}-{token}"


def _partial_pid(name: str) -> int | None:
    rest = name.removeprefix(PARTIAL_EXTRACT)
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _extracts(hub: Hub, report: RecoveryReport, full: bool) -> None:
    """Extract folders cut but never published: publish the ones the log recorded, remove the others."""
    root = hub.layout.extracts
    if not root.is_dir():
        return
    for department in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(department.glob(PARTIAL_EXTRACT + "*")):
            pid = _partial_pid(folder.name)
            if pid is None and not full:
                continue  # a legacy name without a pid: only `exchange recover` decides about it
            if pid is not None and atomic.writer_alive(pid):
                continue
            extract_id = _logged_extract(hub, folder)
            if report.dry_run:
                if extract_id is None:
                    report.removed += _extract_files(hub, folder, folder)
                else:
                    report.published.append(extract_id)
                continue
            # Two recoveries (stages starting side by side) can meet one folder: whichever renames it acts and
            # logs, the other finds it gone. A folder to remove is first renamed to this process's own partial
            # name, so a recovery that dies before removing it leaves a folder the next one removes.
            target = department / (extract_id or partial_extract_name(os.getpid(), uuid.uuid4().hex))
            try:
                folder.rename(target)
            except FileNotFoundError:
                continue
            if extract_id is not None:
                report.published.append(extract_id)
                hub.log.append(hub.signer, events.Recovered(outcome="extract_published"), actor=HUB,
                               subject=extract_id)
                continue
            report.removed += _extract_files(hub, target, folder)
            shutil.rmtree(target, ignore_errors=True)


def _extract_files(hub: Hub, folder: Path, named: Path) -> list[Removed]:
    """The files of an unpublished extract folder, named as under `named` (the folder's name when found)."""
    return [Removed(_relative(hub, named / file.relative_to(folder)), file.stat().st_size,
                    "file of an extract that was never published")
            for file in sorted(p for p in folder.rglob("*") if p.is_file())]


def _logged_extract(hub: Hub, folder: Path) -> str | None:
    """The extract id if the folder holds a signed extract manifest the log recorded, else None."""
    from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest, extract_digest

    path = folder / EXTRACT_MANIFEST
    if not path.is_file():
        return None
    try:
        signed = SignedExtractManifest.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None
    digest = extract_digest(signed)
    for entry in hub.log.since(signed.manifest.extract_id, events.Kind.EXTRACT):
        if entry.action == events.Kind.EXTRACT and entry.digests.get("extract_manifest") == digest:
            return signed.manifest.extract_id
    return None


def _orphan_lake_files(hub: Hub, report: RecoveryReport) -> None:
    """Every Parquet file in the data path the catalog does not know (where that is safe, see _stray_files)."""
    catalog, root = catalog_and_data(hub.settings)
    if not is_postgres(catalog) and not Path(catalog).exists():
        return
    with connect(hub.settings) as con:
        _remove_stray(hub, report, con, root, None)


def _stray_files(hub: Hub, con: Any, root: str, batch_id: str | None) -> list[tuple[str, str]]:
    """(relative path, why) of lake files no snapshot references that are safe to remove now.

    A DuckDB-file catalog on a local folder admits one writer process at a time and we hold its lock: every file
    it does not know is an orphan, readable or not (a write cut short by a full disk is not). Elsewhere
    (PostgreSQL catalog, object storage) live writers may have files in flight: only files whose every row
    carries `batch_id`, whose lock the caller holds, qualify.
    """
    catalog = catalog_and_data(hub.settings)[0]
    if not is_postgres(catalog) and not lake_files.is_remote(root):
        known = catalog_file_names(con)
        return [(r, "lake file no snapshot references (left by an interrupted write)")
                for r in lake_files.parquet_files(con, root) if Path(r).name not in known]
    if batch_id is None:
        return []
    return [(r, f"data file of batch {batch_id} written by an interrupted commit")
            for r in uncommitted_files(con, root, batch_id)]


def _remove_stray(
    hub: Hub, report: RecoveryReport, con: Any, root: str, batch_id: str | None
) -> tuple[list[str], list[str]]:
    """Remove the stray lake files (see _stray_files); return those removed and those left, relative to `root`.
    Objects in a bucket are left and reported: DuckDB cannot delete one, and the log must not say it did."""
    removed: list[str] = []
    left: list[str] = []
    for relative, why in _stray_files(hub, con, root, batch_id):
        location = lake_files.join(root, relative)
        if lake_files.is_remote(location):
            report.left.append(Left(location, why))
            left.append(relative)
            continue
        try:
            size = Path(location).stat().st_size
        except OSError:
            size = 0  # gone since it was listed
        report.removed.append(Removed(_relative(hub, location), size, why))
        if not report.dry_run:
            lake_files.remove(location)
        removed.append(relative)
    return removed, left


def settle_now(hub: Hub, batch_id: str) -> RecoveryReport:
    """Settle one batch's interrupted commit right away (the caller holds its lock and saw its attempt fail)."""
    report = RecoveryReport()
    staging = hub.staging(batch_id)
    intent = protocol.read_intent(staging)
    if intent is not None:
        _settle(hub, staging, intent, report)
    if report.removed:
        log_cleanup(hub.log, hub.signer, report.removed)
    return report


def recover_before_stage(hub: Hub, batch_id: str | None = None) -> RecoveryReport:
    """What every stage runs first: reconcile, and refuse to go on when something needs an operator."""
    report = reconcile(hub, batch_id=batch_id)
    if batch_id is not None and any(batch_id in u for u in report.unrecoverable):
        from exchange.errors import TerminalError

        raise TerminalError(next(u for u in report.unrecoverable if batch_id in u))
    return report


def intents_pending(staging_root: Path) -> list[str]:
    """Batches with an intent marker in staging (commits begun and not settled)."""
    if not staging_root.is_dir():
        return []
    return sorted(p.name for p in staging_root.iterdir() if p.is_dir() and protocol.read_intent(p) is not None)


__all__ = ["RecoveryReport", "Removed", "intents_pending", "partial_extract_name", "reconcile",
           "recover_before_stage"]
