"""Recovery's reports, removals and cleanup entries where test_recovery_outcomes.py left mutants of
exchange/recovery.py alive: a live batch's staging folder, leftovers already gone or outside home, an unreadable
lake file, a partial extract whose manifest the log does not vouch for, settle_now's own cleanup entry, and the
commit protocol's crash points fired in this process.

Recovery runs in this process (mutmut mutates only the in-process package); a child process only prepares a
crash state or holds a batch lock, as in test_recovery_outcomes.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

import pytest

from exchange import recovery
from exchange.atomic import Leftover
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.lake import protocol
from exchange.lake.connect import catalog_and_data
from exchange.pipeline import run_exchange
from exchange.provenance.events import HUB
from exchange.provenance.log import ProvenanceEntry
from exchange.provenance.manifest import landing_dir, manifest_path
from exchange.recovery import (
    PARTIAL_EXTRACT,
    Removed,
    reconcile,
    recover_before_stage,
    remove_leftovers,
    settle_now,
)
from tests.hubs import never_wait_for_outsiders, start_outside_reader
from tests.unit.crash_harness import END, MID, child_process, copied_hub, stage_action
from tests.unit.test_recovery_outcomes import BATCH, DEAD_PID, _crashed, built  # noqa: F401 - the shared module fixture

DIED = "temporary file of a writer that died"
ORPHAN = "lake file no snapshot references (left by an interrupted write)"
NEVER_PUBLISHED = "file of an extract that was never published"
CHILD_TIMEOUT = 120  # only a guard against a hung child: the wait ends as soon as the child answers


@pytest.fixture
def hub(built: Path, tmp_path: Path) -> Hub:  # noqa: F811
    return copied_hub(built, tmp_path)


def _cleanups(hub: Hub) -> list[ProvenanceEntry]:
    return [e for e in hub.log.read() if e.action == "cleanup"]


def _as_logged(removed: list[Removed]) -> list[dict[str, object]]:
    return [{"path": r.path, "size": r.size, "why": r.why} for r in removed]


def _assert_signed_cleanup(hub: Hub, entry: ProvenanceEntry, removed: list[Removed]) -> None:
    assert (entry.action, entry.actor, entry.subject) == ("cleanup", HUB, "recovery")
    assert entry.signature.key_id == hub.signer.key_id
    assert entry.details["removed"] == _as_logged(removed)


def _hold_batch_lock(staging_root: str, batch_id: str, ready: Connection) -> None:
    with protocol.batch_lock(Path(staging_root), batch_id):  # what a running stage holds
        ready.send("held")
        ready.recv()  # held until the test kills this process


def _reconcile_while_held(hub: Hub, batch_id: str) -> recovery.RecoveryReport:
    """reconcile() while another process holds `batch_id`'s lock, as a running stage does."""
    context = multiprocessing.get_context("forkserver")
    ours, theirs = context.Pipe()
    holder = child_process(_hold_batch_lock, str(hub.layout.staging), batch_id, theirs)
    try:
        assert ours.poll(CHILD_TIMEOUT) and ours.recv() == "held", "the holder did not take the batch lock"
        return reconcile(hub)
    finally:
        holder.kill()
        holder.join()


# --- the sweep leaves a batch a live process holds to its writer ---

def test_a_dead_helpers_temp_file_in_a_batch_another_process_runs_is_kept_and_others_removed(tmp_path: Path) -> None:
    # A temp file whose writer died may sit in a batch folder a live stage still runs: that stage owns it.
    hub = Hub(ExchangeSettings(home=tmp_path / "home"))
    live = hub.layout.staging / "jiangsu.e_license.live" / f".pull.json.{DEAD_PID}.tmp"
    free = hub.layout.staging / "jiangsu.e_license.free" / f".pull.json.{DEAD_PID}.tmp"
    for path in (live, free):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"abc")
    report = _reconcile_while_held(hub, "jiangsu.e_license.live")
    assert report.removed == [Removed(f"staging/jiangsu.e_license.free/.pull.json.{DEAD_PID}.tmp", 3, DIED)]
    assert live.exists() and not free.exists()
    _assert_signed_cleanup(hub, _cleanups(hub)[-1], report.removed)
    # Once its holder is gone the batch is no one's: the same file is removed.
    assert reconcile(hub).removed == [Removed(f"staging/jiangsu.e_license.live/.pull.json.{DEAD_PID}.tmp", 3, DIED)]
    assert not live.exists()


def test_a_stage_sweeps_its_own_batchs_landing_and_manifest_folders_and_no_others(tmp_path: Path) -> None:
    # Before a stage of batch B runs: a dead writer's temp file in B's landing and manifest folders is removed;
    # another batch's landing folder is swept only by that batch's stage (or a full recovery).
    hub = Hub(ExchangeSettings(home=tmp_path / "home"))
    mine, other = "jiangsu.e_license.20261101T000000Z-20261102T000000Z", "jiangsu.e_license.other"
    landing = landing_dir(hub.layout.landing, "jiangsu", "e_license", mine) / f".records.jsonl.{DEAD_PID}.tmp"
    manifest = manifest_path(hub.layout.manifests, "jiangsu", "e_license", mine).parent / f".m.json.{DEAD_PID}.tmp"
    theirs = landing_dir(hub.layout.landing, "jiangsu", "e_license", other) / f".records.jsonl.{DEAD_PID}.tmp"
    for path in (landing, manifest, theirs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"abcd")
    report = recover_before_stage(hub, mine)
    assert sorted(r.path for r in report.removed) == sorted(
        str(p.relative_to(hub.layout.home)) for p in (landing, manifest))
    assert theirs.exists() and not landing.exists() and not manifest.exists()


def test_recovery_settles_every_interrupted_batch_past_a_live_one_a_staged_one_and_a_hidden_folder(
    hub: Hub,
) -> None:
    # In name order: a hidden folder (never a batch, whatever it holds), the crashed batch a live process holds
    # (busy: left alone), a batch only staged (no intent: nothing to settle), then an interrupted attempt.
    hub = _crashed(hub, "commit.after_intent")
    staging = hub.layout.staging
    marker = (staging / BATCH / protocol.INTENT_FILE).read_bytes()
    hidden, staged, later = (staging / name for name in (
        ".jiangsu.e_license.copy", "jiangsu.e_license.only-staged", "jiangsu.e_license.zz-interrupted"))
    for folder in (hidden, staged, later):
        folder.mkdir()
    (hidden / protocol.INTENT_FILE).write_bytes(marker)
    (later / protocol.INTENT_FILE).write_bytes(marker)
    walked = sorted(p.name for p in staging.iterdir())
    assert walked.index(BATCH) < walked.index(staged.name) < walked.index(later.name)
    report = _reconcile_while_held(hub, BATCH)
    assert (report.busy, report.abandoned) == ([BATCH], [later.name])
    assert (hidden / protocol.INTENT_FILE).exists() and (staging / BATCH / protocol.INTENT_FILE).exists()
    assert not (later / protocol.INTENT_FILE).exists()


def test_a_full_recovery_sweeps_every_batchs_landing_folder_and_logs_each_line_it_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(ExchangeSettings(home=tmp_path / "home"))
    left = landing_dir(hub.layout.landing, "jiangsu", "e_license", "jiangsu.e_license.any") / f".r.jsonl.{DEAD_PID}.tmp"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"ab")
    assert reconcile(hub).removed == [] and left.exists()  # a stage's recovery sweeps only its own batch's folders
    with caplog.at_level("WARNING", logger=recovery.log.name):
        report = reconcile(hub, full=True)
    assert report.removed == [Removed(str(left.relative_to(hub.layout.home)), 2, DIED)] and not left.exists()
    assert [r.getMessage() for r in caplog.records if r.name == recovery.log.name] == [
        f"recovery: {line}" for line in report.lines()]


# --- remove_leftovers (the archive writer's own cleanup) ---

def test_leftovers_are_removed_named_sized_and_logged_once_also_outside_home(tmp_path: Path) -> None:
    hub = Hub(ExchangeSettings(home=tmp_path / "home"))
    archives = hub.layout.provenance / "archives"
    archives.mkdir(parents=True)
    present = archives / f".entries.jsonl.{DEAD_PID}.tmp"
    present.write_bytes(b"12345")
    gone = archives / f".header.json.{DEAD_PID}.tmp"  # listed, then removed by another recovery before us
    outside = tmp_path / "elsewhere" / "segment.part"
    outside.parent.mkdir()
    outside.write_bytes(b"xy")
    found = [Leftover(present, 5, DIED), Leftover(gone, 7, DIED),
             Leftover(outside, 2, "partial file left by an interrupted write")]
    removed = remove_leftovers(hub.log, hub.signer, found, hub.layout.home)
    # The one already gone was removed and logged by the other recovery: logging it here would say it twice.
    assert removed == [Removed(f"provenance/archives/.entries.jsonl.{DEAD_PID}.tmp", 5, DIED),
                       Removed(str(outside), 2, "partial file left by an interrupted write")]
    assert not present.exists() and not outside.exists()
    _assert_signed_cleanup(hub, _cleanups(hub)[-1], removed)
    assert remove_leftovers(hub.log, hub.signer, [], hub.layout.home) == [] and len(_cleanups(hub)) == 1


# --- settle_now: a failed commit settled at once by the process that holds the batch ---

def test_settle_now_completes_a_batch_in_the_lake_without_its_records(hub: Hub) -> None:
    hub = _crashed(hub, "commit.after_snapshot")
    report = settle_now(hub, BATCH)
    assert (report.completed, report.abandoned, report.removed, report.unrecoverable) == ([BATCH], [], [], [])
    path = manifest_path(hub.layout.manifests, "jiangsu", "e_license", BATCH)
    assert path.exists()
    entries = [e for e in hub.log.read() if e.subject == BATCH]
    assert [e.action for e in entries][-3:] == ["commit_intent", "recovered", "commit"]
    assert entries[-1].details["manifest"] == str(path.relative_to(hub.layout.home))  # where an auditor finds it
    assert entries[-2].details["missing"] == "manifest and commit entry"
    assert _cleanups(hub) == []


def test_a_staging_folder_that_cannot_be_removed_does_not_fail_the_completed_commit(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Removing staging is the last step, after the commit entry: a failure there must not turn a batch that is
    # committed and fully recorded into a failed stage (a retry would find it committed anyway).
    hub = _crashed(hub, "commit.after_snapshot")
    unlink = os.unlink

    def stuck(path: str, *args: object, **kwargs: object) -> None:
        if path == protocol.PULL_FILE:
            raise PermissionError(1, "Operation not permitted", path)
        unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", stuck)
    assert settle_now(hub, BATCH).completed == [BATCH]
    assert (hub.staging(BATCH) / protocol.PULL_FILE).exists()  # what could not be removed stays
    assert [e.action for e in hub.log.read() if e.subject == BATCH][-3:] == ["commit_intent", "recovered", "commit"]


def _lake_files(hub: Hub) -> dict[Path, int]:
    return {p: p.stat().st_size for p in sorted(Path(catalog_and_data(hub.settings)[1]).rglob("*.parquet"))}


def _crashed_in_lake_commit(hub: Hub) -> tuple[Hub, dict[Path, int]]:
    """The hub after a kill inside the lake commit, and the data files that attempt wrote (with their sizes)."""
    before = _lake_files(hub)
    hub = _crashed(hub, "commit.before_lake_commit")
    written = {p: size for p, size in _lake_files(hub).items() if p not in before}
    assert written, "the killed attempt wrote no data file"
    return hub, written


def test_settle_now_removes_the_failed_attempts_lake_files_and_logs_a_signed_cleanup(hub: Hub) -> None:
    hub, written = _crashed_in_lake_commit(hub)
    kept = set(_lake_files(hub)) - set(written)
    report = settle_now(hub, BATCH)
    expected = [Removed(str(p.relative_to(hub.settings.home)), size, ORPHAN) for p, size in written.items()]
    assert report.removed == expected and set(_lake_files(hub)) == kept
    assert report.abandoned == [BATCH] and protocol.read_intent(hub.staging(BATCH)) is None
    (cleanup,) = _cleanups(hub)
    _assert_signed_cleanup(hub, cleanup, expected)


# --- a lake file recovery cannot stat ---

def test_an_unreadable_orphan_lake_file_is_named_with_size_zero_and_removed(hub: Hub) -> None:
    data = Path(catalog_and_data(hub.settings)[1])
    dangling = data / "main" / "e_license" / "ducklake-0000-dangling.parquet"
    dangling.symlink_to(data / "gone.parquet")  # its target vanished: stat fails
    report = reconcile(hub, full=True)
    named = [Removed(str(dangling.relative_to(hub.settings.home)), 0, ORPHAN)]
    assert report.removed == named and not dangling.is_symlink()
    _assert_signed_cleanup(hub, _cleanups(hub)[-1], named)


# --- a partial extract is published only on the log's word for its exact manifest ---

def test_a_partial_extract_whose_manifest_differs_from_the_logged_one_is_removed_not_published(
    hub: Hub,
) -> None:
    hub = _crashed(hub, "extract.after_entry")
    (partial,) = [p for p in hub.layout.extracts.rglob(f"{PARTIAL_EXTRACT}*") if p.is_dir()]
    manifest = partial / "extract-manifest.json"
    signed = json.loads(manifest.read_text(encoding="utf-8"))
    extract_id = signed["manifest"]["extract_id"]
    signed["manifest"]["rows"] += 1  # not the manifest the extract entry's digest names
    manifest.write_text(json.dumps(signed), encoding="utf-8")
    files = {f: f.stat().st_size for f in sorted(p for p in partial.rglob("*") if p.is_file())}
    report = reconcile(hub)
    assert report.published == []
    assert report.removed == [Removed(str(f.relative_to(hub.settings.home)), size, NEVER_PUBLISHED)
                              for f, size in files.items()]
    assert not partial.exists() and not (partial.parent / extract_id).exists()
    assert not [e for e in hub.log.read() if e.subject == extract_id and e.action == "recovered"]


# --- the commit protocol's crash points, fired in this process ---

class _Died(BaseException):
    """Raised where a crash point would end the process: not an Exception, so no handler of the hub's takes it."""


def _where_the_commit_stopped(hub: Hub) -> tuple[bool, bool, bool, bool, bool, bool]:
    """(intent marker, commit_intent entry, lake files the catalog does not know, snapshot, manifest,
    commit entry) for BATCH."""
    from exchange.lake.commit import snapshot_of
    from exchange.lake.connect import connect
    from exchange.lake.retry import catalog_file_names

    actions = {e.action for e in hub.log.read() if e.subject == BATCH}
    with connect(hub.settings, read_only=True) as con:
        snapshot = snapshot_of(con, BATCH)
        unknown = set(p.name for p in _lake_files(hub)) - catalog_file_names(con)
    province, dataset = BATCH.split(".")[:2]
    return (protocol.read_intent(hub.staging(BATCH)) is not None, "commit_intent" in actions, bool(unknown),
            snapshot is not None, manifest_path(hub.layout.manifests, province, dataset, BATCH).exists(),
            "commit" in actions)


@pytest.mark.parametrize(("point", "where", "state"), [
    # state: (intent marker, commit_intent entry, unknown lake files, snapshot, manifest, commit entry)
    ("commit.after_intent_file", "declare_intent", (True, False, False, False, False, False)),
    ("commit.after_intent", "declare_intent", (True, True, False, False, False, False)),
    # A kill leaves the written data files (test_crash_recovery.py); an exception takes commit_batch's ROLLBACK.
    ("commit.before_lake_commit", "commit_batch", (True, True, False, False, False, False)),
    ("commit.after_snapshot", "write_snapshot", (True, True, False, True, False, False)),
    ("commit.after_manifest", "finish", (True, True, False, True, True, False)),
    ("commit.after_commit_entry", "finish", (True, True, False, True, True, True)),
])
def test_each_crash_point_of_the_commit_fires_at_its_own_write_boundary(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, point: str, where: str, state: tuple[bool, ...]
) -> None:
    # The crash tests kill a child process there; this runs the commit in this process (so a mutated protocol
    # is the one under test) and turns the exit into an exception that unwinds to here, through `where`.
    from exchange import faults

    def died(code: int) -> None:
        raise _Died(code)

    monkeypatch.setenv(faults.CRASH_ENV, point)
    monkeypatch.setattr(faults.os, "_exit", died)
    with pytest.raises(_Died) as stopped:
        stage_action(point, Path())(hub)
    assert stopped.value.args == (faults.CRASH_EXIT,)
    # (`make mutation` runs a function it mutates as x_NAME__mutmut_orig or __mutmut_N)
    frames = [entry.name.removeprefix("x_").split("__mutmut_")[0] for entry in stopped.traceback]
    assert frames[-3:] == [where, "crash_point", "died"]
    assert _where_the_commit_stopped(hub) == state


def test_a_commit_that_keeps_failing_names_its_batch_and_leaves_the_lake_as_it_was(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from exchange.errors import TransientError

    calls = []

    def connection_lost(con: object, **kwargs: object) -> object:
        calls.append(con)
        raise duckdb.IOException("connection to the catalog lost")

    monkeypatch.setattr(protocol, "commit_batch", connection_lost)
    hub = Hub(hub.settings.model_copy(update={"lake_commit_retries": 1, "lake_commit_backoff_seconds": 0.0}))
    with pytest.raises(TransientError) as failed:
        stage_action("commit", Path())(hub)
    assert str(failed.value).startswith(f"lake commit of batch {BATCH} failed after 2 attempt(s); nothing of it is "
                                        "visible in the lake and a retry is safe")
    assert len(calls) == 2
    assert _where_the_commit_stopped(hub)[3:] == (False, False, False)  # no snapshot, manifest or commit entry


def test_a_leftover_another_recovery_removed_first_is_neither_reported_nor_logged_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exchange import atomic

    hub = Hub(ExchangeSettings(home=tmp_path / "home"))
    staging = hub.layout.staging / "jiangsu.e_license.b"
    staging.mkdir(parents=True)
    mine, theirs = (staging / f".{n}.{DEAD_PID}.tmp" for n in ("pull.json", "records.parquet"))
    for path in (mine, theirs):
        path.write_bytes(b"abc")
    listed = atomic.leftovers

    def listed_then_raced(root: Path, recursive: bool = False) -> list[Leftover]:
        found = listed(root, recursive=recursive)
        theirs.unlink(missing_ok=True)  # a stage starting beside us swept it between our listing and our unlink
        return found

    monkeypatch.setattr(recovery.atomic, "leftovers", listed_then_raced)
    report = reconcile(hub)
    assert report.removed == [Removed(f"staging/jiangsu.e_license.b/.pull.json.{DEAD_PID}.tmp", 3, DIED)]
    (cleanup,) = _cleanups(hub)
    _assert_signed_cleanup(hub, cleanup, report.removed)


def test_completing_a_commit_reads_the_lake_beside_an_outside_duckdb_that_opened_it_meanwhile(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A department's stock duckdb (`exchange lake attach-sql`) may open the catalog while recovery settles a batch;
    # hashing the committed snapshot's files only reads, so it must not wait for that reader.
    hub = _crashed(hub, "commit.after_snapshot")
    readers: list[subprocess.Popen[str]] = []
    real_path = recovery.manifest_path

    def reader_arrives(*args: Any) -> Path:  # after the batch is settled, before its snapshot's files are hashed
        readers.append(start_outside_reader(catalog_and_data(hub.settings)[0]))
        return real_path(*args)

    monkeypatch.setattr(recovery, "manifest_path", reader_arrives)
    never_wait_for_outsiders(monkeypatch, "recovery")
    try:
        report = settle_now(hub, BATCH)
    finally:
        for reader in readers:
            reader.communicate("", timeout=60)
    assert readers and report.completed == [BATCH]
    assert manifest_path(hub.layout.manifests, "jiangsu", "e_license", BATCH).exists()


def test_settling_a_batch_holds_that_batchs_catalog_lock(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # On a PostgreSQL catalog this lock keeps a writer of the same batch on another host out while recovery
    # removes its files (tests/integration/test_scaleout_postgres.py); here: that recovery asks for it, by batch.
    from contextlib import contextmanager

    held: list[str] = []
    real = recovery.catalog_batch_lock

    @contextmanager
    def spied(settings: ExchangeSettings, batch_id: str) -> Iterator[None]:
        with real(settings, batch_id):
            held.append(batch_id)
            yield

    hub = _crashed(hub, "commit.after_intent")
    monkeypatch.setattr(recovery, "catalog_batch_lock", spied)
    assert reconcile(hub).abandoned == [BATCH]
    assert held == [BATCH]


# --- a snapshot that fails in this process (full disk, retries used up): settled at once, its error reported ---

def _no_space(hub: Hub, batch_id: str) -> NoReturn:
    raise OSError(28, "No space left on device")


def test_a_failed_snapshot_is_settled_by_the_process_that_saw_it_fail(
    hub: Hub, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "write_snapshot", _no_space)
    with pytest.raises(OSError, match="No space left on device"):
        run_exchange("jiangsu", "e_license", MID, END, hub)
    # settled before the error left commit_staged, not at the next stage's entry
    assert protocol.read_intent(hub.staging(BATCH)) is None
    assert [e.action for e in hub.log.read() if e.subject == BATCH][-2:] == ["commit_intent", "recovered"]


def test_when_settling_a_failed_snapshot_fails_too_the_snapshots_own_error_is_reported(
    hub: Hub, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def settle_fails(hub: Hub, batch_id: str) -> NoReturn:
        raise RuntimeError("settling failed as well")

    monkeypatch.setattr(protocol, "write_snapshot", _no_space)
    monkeypatch.setattr(recovery, "settle_now", settle_fails)
    with pytest.raises(OSError, match="No space left on device"):
        run_exchange("jiangsu", "e_license", MID, END, hub)
    assert protocol.read_intent(hub.staging(BATCH)) is not None  # left for the next stage's recovery
