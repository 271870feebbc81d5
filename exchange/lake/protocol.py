"""The commit protocol: the order of writes that makes a crash anywhere leave a batch either "not committed" or
"committed and fully recorded" once recovery (exchange/recovery.py) has run.

    staged ──intent──▶ intended ──snapshot──▶ in lake ──manifest──▶ signed ──commit entry──▶ committed
      (staging files)   (commit.intent in        (DuckLake          (manifest     (log entry naming    (staging
                         staging + signed         snapshot named     file)         manifest digest)     removed)
                         commit_intent entry)     by the batch)

1. The log is checked appendable (LogUnavailable otherwise): nothing irreversible starts that cannot be logged.
2. ``commit.intent`` is written to the batch's staging folder (atomically), then a signed ``commit_intent``
   entry names the batch and the SHA-256 of every staged file. The marker is what recovery looks for; the
   signed entry is what lets verify tell "interrupted" from "tampered" and recovery check the staged files.
3. The DuckLake snapshot (one transaction; its commit info names the batch): the irreversible step.
4. The signed manifest (atomic write), then the ``commit`` entry carrying its digest.
5. The staging folder (with the marker) is removed: the batch is committed.

Recovery, for a marker whose writer is gone: no snapshot -> remove the data files the attempt wrote, drop the
marker (not committed; the staged files stay for a re-run); snapshot but no manifest or no commit entry ->
write what is missing from the staged files (which must still match the intent's digests) with a
``recovered`` entry saying so, then remove staging (committed).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow.parquet as pq

from exchange import atomic, lineage
from exchange.datasets import dataset as canonical_dataset
from exchange.errors import TerminalError, TransientError
from exchange.faults import crash_point
from exchange.lake import files as lake_files
from exchange.lake.commit import CommitResult, commit_batch, files_added
from exchange.lake.connect import catalog_and_data
from exchange.lake.retry import commit_retrying
from exchange.locking import ProcessHold
from exchange.provenance import events
from exchange.provenance.events import HUB
from exchange.provenance.manifest import (
    BatchManifest,
    Counts,
    LakeFile,
    SignedManifest,
    manifest_path,
    read_manifest,
    sign_manifest,
    write_manifest,
)
from exchange.signing.canonical import file_sha256
from exchange.stages import PULL_FILE, VALIDATION_FILE, LedgerRow, PullRecord, ValidationRecord, read_record

if TYPE_CHECKING:
    from exchange.hub import Hub

INTENT_FILE = "commit.intent"
LEGACY_MARKER = "committing"  # the marker before the protocol: treated as an intent without digests
DELETIONS_FILE = "deleted.parquet"
STAGED_FILES = (PULL_FILE, VALIDATION_FILE, "accepted.parquet", "quarantined.parquet", DELETIONS_FILE)


class BatchBusy(TransientError):
    """Another process is running a stage of the same batch: this one does nothing (a retry finds the result)."""


_held: dict[str, ProcessHold] = {}
_held_guard = threading.Lock()


def lock_path(staging_root: Path, batch_id: str) -> Path:
    """The per-batch lock file (beside the staging folders, so removing a batch's staging keeps it)."""
    return staging_root / ".locks" / f"{batch_id}.lock"


@contextmanager
def batch_lock(staging_root: Path, batch_id: str) -> Iterator[None]:
    """Hold the batch's lock for a stage: re-entrant in a process, BatchBusy if another process holds it.

    An flock: the kernel releases it when its holder dies (kill -9 included), so no lock is ever stale.
    """
    path = lock_path(staging_root, batch_id)
    with _held_guard:
        held = _held.setdefault(str(path), ProcessHold())
        if held.holders == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise BatchBusy(f"batch {batch_id} is being run by another process right now; nothing was done "
                                "here. It is committed once; run again later to see its result") from None
            held.handle = handle
        held.holders += 1
    try:
        yield
    finally:
        with _held_guard:
            held.leave()


def batch_locked_elsewhere(staging_root: Path, batch_id: str) -> bool:
    """Whether another process holds the batch's lock now (its staging folder is live: leave it alone)."""
    path = lock_path(staging_root, batch_id)
    if not path.exists():
        return False
    with _held_guard:
        if _held.get(str(path), ProcessHold()).holders:
            return False  # this process: the caller is the holder
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@dataclass(frozen=True)
class Intent:
    """What a commit attempt promised before touching the lake: the batch and its staged files' digests."""

    batch_id: str
    files: dict[str, str] = field(default_factory=dict)

    def mismatches(self, staging: Path) -> list[str]:
        """Staged files that no longer match the intent (changed, added or gone after it was logged)."""
        if not self.files:
            return []  # a legacy marker promised nothing to check against
        current = staged_digests(staging)
        return sorted(n for n in set(current) | set(self.files) if current.get(n) != self.files.get(n))


def staged_digests(staging: Path) -> dict[str, str]:
    """SHA-256 of every staged file the commit reads."""
    return {name: file_sha256(staging / name) for name in STAGED_FILES if (staging / name).exists()}


def read_intent(staging: Path) -> Intent | None:
    """The intent marker in a staging folder (a legacy `committing` marker counts, without digests)."""
    path = staging / INTENT_FILE
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return Intent(str(doc["batch_id"]), dict(doc.get("files", {})))
        except (ValueError, KeyError):
            return Intent(staging.name)  # unreadable: still a marker that an attempt began
    if (staging / LEGACY_MARKER).exists():
        return Intent(staging.name)
    return None


def drop_intent(staging: Path) -> None:
    """Remove the marker: the attempt it announced is settled (not committed)."""
    for name in (INTENT_FILE, LEGACY_MARKER):
        (staging / name).unlink(missing_ok=True)


def declare_intent(hub: Hub, batch_id: str) -> Intent:
    """Steps 1-2: check the log can be appended, write the marker, log the signed commit_intent entry."""
    hub.log.ensure_writable()
    staging = hub.staging(batch_id)
    intent = Intent(batch_id, staged_digests(staging))
    atomic.write_text(staging / INTENT_FILE, json.dumps({"batch_id": batch_id, "files": intent.files}, indent=2))
    crash_point("commit.after_intent_file")
    hub.log.append(hub.signer, events.CommitIntent(staged=sorted(intent.files)), actor=HUB, subject=batch_id,
                   digests=intent.files)
    crash_point("commit.after_intent")
    return intent


def ledger_row(info: PullRecord, checked: ValidationRecord) -> LedgerRow:
    """The batch's ledger row from its staged pull and validation records."""
    return LedgerRow(
        **info.model_dump(include={"batch_id", "province", "dataset", "window_start", "window_end", "watermark"}),
        **checked.model_dump(include={"pulled", "accepted", "quarantined", "contract_id", "contract_version"}),
    )


def staged_records(staging: Path) -> tuple[PullRecord, ValidationRecord]:
    """pull.json and validation.json of a staged batch."""
    return read_record(staging / PULL_FILE, PullRecord), read_record(staging / VALIDATION_FILE, ValidationRecord)


def write_snapshot(hub: Hub, batch_id: str) -> tuple[int, list[LakeFile]]:
    """Step 3: the DuckLake snapshot (retried on conflicts and lost connections), and its files hashed."""
    staging = hub.staging(batch_id)
    info, checked = staged_records(staging)
    ds = canonical_dataset(info.dataset)
    row = ledger_row(info, checked)
    # Paths, not tables: DuckDB streams the staged files into the lake without loading the batch.
    accepted, quarantined = staging / "accepted.parquet", staging / "quarantined.parquet"
    deletions = pq.read_table(staging / DELETIONS_FILE) if (staging / DELETIONS_FILE).exists() else None
    lake_root = catalog_and_data(hub.settings)[1]

    def attempt(con: duckdb.DuckDBPyConnection) -> tuple[CommitResult, list[LakeFile]]:
        result = commit_batch(con, dataset=ds.name, dataset_schema=ds.schema, ledger_row=row,
                              accepted=accepted, quarantined=quarantined, deletions=deletions)
        return result, hashed_files(con, result.snapshot_id, lake_root)

    # What a killed earlier attempt left was removed by recovery at the stage's entry; a failed attempt here is
    # cleaned up by commit_retrying before the next one.
    result, hashed = commit_retrying(hub.settings, batch_id, attempt)
    crash_point("commit.after_snapshot")
    return result.snapshot_id, hashed


def hashed_files(con: duckdb.DuckDBPyConnection, snapshot_id: int, root: str) -> list[LakeFile]:
    """The snapshot's data files with their SHA-256, read where they live (a folder or object storage)."""
    listed = []
    for f in files_added(con, snapshot_id, root):
        found = lake_files.digest(con, f.location)
        if found is None:
            raise TerminalError(f"lake file {f.location} of snapshot {snapshot_id} is missing right after its commit")
        listed.append(LakeFile(table=f.table, name=f.relative, sha256=found[0], size=f.size, rows=f.rows,
                               kind=f.kind))
    return listed


def build_manifest(info: PullRecord, checked: ValidationRecord, snapshot_id: int,
                   hashed: list[LakeFile]) -> BatchManifest:
    """The batch's manifest from its staged records and the snapshot's hashed files."""
    return BatchManifest(
        batch_id=info.batch_id,
        province=info.province,
        dataset=info.dataset,
        window_start=info.window_start,
        window_end=info.window_end,
        since=info.since,
        watermark=info.watermark,
        contract_id=checked.contract_id,
        contract_version=checked.contract_version,
        contract_sha256=checked.contract_sha256,
        landing=info.landing,
        counts=Counts(
            pulled=checked.pulled, accepted=checked.accepted,
            quarantined=checked.quarantined, warned=checked.warned,
            deleted=sum(f.rows for f in hashed if f.kind == "delete"),
        ),
        rules=checked.rules,
        gx_success=checked.gx_success,
        snapshot_id=snapshot_id,
        files=hashed,
        created_at=datetime.now(UTC),
    )


def commit_logged(hub: Hub, batch_id: str) -> dict[str, str] | None:
    """The digests of the batch's commit entry logged since its newest intent, None if there is none."""
    for entry in hub.log.since(batch_id, events.Kind.COMMIT_INTENT):
        if entry.action == events.Kind.COMMIT:
            return entry.digests
    return None


def finish(hub: Hub, batch_id: str, snapshot_id: int, hashed: list[LakeFile],
           recovered: str | None = None) -> tuple[SignedManifest, Path]:
    """Steps 4-5: manifest, commit entry, staging removed. Also what recovery runs to complete a snapshot.

    Idempotent: a manifest already written for this snapshot is kept, a commit entry already logged since the
    intent is not logged again. `recovered` (what was missing) adds a `recovered` entry before the commit entry.
    """
    staging = hub.staging(batch_id)
    info, checked = staged_records(staging)
    province, dataset = info.province, info.dataset
    path = manifest_path(hub.layout.manifests, province, dataset, batch_id)
    signed = read_manifest(path) if path.exists() else None
    if signed is None or signed.manifest.snapshot_id != snapshot_id:
        signed = sign_manifest(build_manifest(info, checked, snapshot_id, hashed), hub.signer)
        write_manifest(path, signed)
    crash_point("commit.after_manifest")
    if commit_logged(hub, batch_id) != {"manifest": signed.digest()}:
        if recovered is not None:
            hub.log.append(hub.signer, events.Recovered(outcome="committed", snapshot_id=snapshot_id,
                                                        missing=recovered),
                           actor=HUB, subject=batch_id, digests={"manifest": signed.digest()})
        hub.log.append(
            hub.signer,
            events.Commit(snapshot_id=snapshot_id, accepted=checked.accepted, quarantined=checked.quarantined,
                          manifest=str(path.relative_to(hub.layout.home))),
            actor=HUB, subject=batch_id, digests={"manifest": signed.digest()},
        )
    crash_point("commit.after_commit_entry")
    # The lake, landing copy and manifest now hold everything; the marker goes with the folder.
    shutil.rmtree(staging, ignore_errors=True)
    atomic.fsync_dir(staging.parent)
    lineage.completed(
        hub.settings, batch_id, province, dataset, pulled=checked.pulled, accepted=checked.accepted,
        quarantined=checked.quarantined, rules=checked.rule_counts(),
        contract=checked.model_dump(include={"contract_id", "contract_version", "contract_sha256"}),
        manifest_sha256=signed.digest(), snapshot_id=snapshot_id,
    )
    return signed, path


def commit_staged(hub: Hub, batch_id: str) -> tuple[SignedManifest, Path]:
    """Run the whole protocol for a validated, staged batch (the caller holds the batch lock)."""
    declare_intent(hub, batch_id)
    try:
        snapshot_id, hashed = write_snapshot(hub, batch_id)
    except Exception:
        # A failed snapshot (full disk, retries used up) is settled at once, not at the next stage's entry:
        # the lake is left as it was, with no file of the failed attempt.
        from exchange.recovery import settle_now

        with suppress(Exception):  # the original error is the one to report
            settle_now(hub, batch_id)
        raise
    return finish(hub, batch_id, snapshot_id, hashed)


__all__ = ["BatchBusy", "Intent", "batch_lock", "commit_staged", "declare_intent", "finish", "read_intent",
           "write_snapshot"]
