"""What recovery and the commit protocol do, checked in this process (exchange/recovery.py, exchange/lake/protocol.py).

The crash tests run the hub in a child process and check the settled hub at the end; here a child only prepares
the state a crash point leaves (a real process dying there), and recovery then runs in this process, so its
report, its words, the entries it logs and the files it keeps or removes are asserted one by one (and a mutated
recovery is the one under test when `make mutation` runs these). Written against the mutants it found unchecked.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from adapters.base import Window
from exchange import recovery
from exchange.config import ExchangeSettings
from exchange.errors import TerminalError
from exchange.faults import CRASH_EXIT
from exchange.hub import Hub, batch_id_for
from exchange.lake import protocol
from exchange.lake.connect import catalog_and_data
from exchange.provenance.log import ProvenanceEntry
from exchange.provenance.manifest import manifest_path, read_manifest
from exchange.recovery import (
    PARTIAL_EXTRACT,
    Left,
    RecoveryReport,
    Removed,
    intents_pending,
    partial_extract_name,
    reconcile,
    recover_before_stage,
    settle_now,
)
from exchange.signing.canonical import file_sha256
from tests.fixture_cache import built_once
from tests.unit.crash_harness import DEAD_PID, END, MID, build_home, child_process, copied_hub, hub_at, run_crashing

BATCH = batch_id_for("jiangsu", "e_license", Window(MID, END))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("outcomes", lambda root: build_home(root, records=40), tmp_path_factory) / "home"


@pytest.fixture
def hub(built: Path, tmp_path: Path) -> Hub:
    return copied_hub(built, tmp_path)


def _crashed(hub: Hub, point: str) -> Hub:
    assert run_crashing(hub.settings.home, point, Path()) == CRASH_EXIT, f"{point} was not reached"
    return hub_at(hub.settings.home)


def _entries(hub: Hub, subject: str) -> list[ProvenanceEntry]:
    return [e for e in hub.log.read() if e.subject == subject]


# --- the intent and its marker (pure, on a folder) ---

def test_an_intent_names_the_staged_files_that_changed_appeared_or_went_since_it(tmp_path: Path) -> None:
    for name in ("pull.json", "validation.json", "accepted.parquet"):
        (tmp_path / name).write_text(name, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a staged file", encoding="utf-8")
    digests = protocol.staged_digests(tmp_path)
    assert digests == {n: file_sha256(tmp_path / n) for n in ("pull.json", "validation.json", "accepted.parquet")}
    intent = protocol.Intent("b", digests)
    assert intent.mismatches(tmp_path) == []
    (tmp_path / "accepted.parquet").write_text("edited", encoding="utf-8")
    (tmp_path / "quarantined.parquet").write_text("added", encoding="utf-8")
    (tmp_path / "validation.json").unlink()
    assert intent.mismatches(tmp_path) == ["accepted.parquet", "quarantined.parquet", "validation.json"]
    assert protocol.Intent("b").mismatches(tmp_path) == []  # a legacy marker promised nothing


def test_the_marker_is_read_as_written_and_a_legacy_or_unreadable_one_still_counts(tmp_path: Path) -> None:
    staging = tmp_path / "jiangsu.e_license.x"
    staging.mkdir()
    assert protocol.read_intent(staging) is None
    (staging / protocol.INTENT_FILE).write_text(json.dumps({"batch_id": "b1", "files": {"pull.json": "ab"}}),
                                                encoding="utf-8")
    assert protocol.read_intent(staging) == protocol.Intent("b1", {"pull.json": "ab"})
    (staging / protocol.INTENT_FILE).write_text('{"batch_id": "b2"}', encoding="utf-8")  # no digests
    assert protocol.read_intent(staging) == protocol.Intent("b2", {})
    (staging / protocol.INTENT_FILE).write_text('{"files": {}}', encoding="utf-8")  # no batch id
    assert protocol.read_intent(staging) == protocol.Intent(staging.name, {})
    (staging / protocol.INTENT_FILE).write_text("{torn", encoding="utf-8")
    assert protocol.read_intent(staging) == protocol.Intent(staging.name, {})
    (staging / protocol.INTENT_FILE).unlink()
    (staging / protocol.LEGACY_MARKER).write_text("", encoding="utf-8")
    assert protocol.read_intent(staging) == protocol.Intent(staging.name, {})
    (staging / protocol.INTENT_FILE).write_text("{}", encoding="utf-8")
    protocol.drop_intent(staging)
    (staging / protocol.INTENT_FILE).write_text("{}", encoding="utf-8")  # the usual case: no legacy marker
    protocol.drop_intent(staging)
    protocol.drop_intent(staging)  # nothing left to drop: no error
    assert not (staging / protocol.INTENT_FILE).exists() and not (staging / protocol.LEGACY_MARKER).exists()
    assert protocol.read_intent(staging) is None
    assert intents_pending(tmp_path) == [] and intents_pending(tmp_path / "absent") == []


def test_a_batch_lock_lives_beside_the_staging_folders_and_this_process_is_not_elsewhere(tmp_path: Path) -> None:
    assert protocol.lock_path(tmp_path, "b") == tmp_path / ".locks" / "b.lock"
    assert protocol.batch_locked_elsewhere(tmp_path, "b") is False  # no lock file yet
    with protocol.batch_lock(tmp_path, "b"):
        assert protocol.lock_path(tmp_path, "b").exists()
        assert protocol.batch_locked_elsewhere(tmp_path, "b") is False  # held here, by the caller
    assert protocol.batch_locked_elsewhere(tmp_path, "b") is False


def _hold(lock: str, ready: Connection) -> None:
    with open(lock, "a") as handle:  # the flock a running stage holds (protocol.batch_lock), taken by hand
        fcntl.flock(handle, fcntl.LOCK_EX)
        ready.send("held")
        ready.recv()  # held until the test kills this process


def test_a_batch_another_live_process_holds_is_locked_elsewhere_until_it_dies(tmp_path: Path) -> None:
    lock = protocol.lock_path(tmp_path, "b")
    lock.parent.mkdir()
    ours, theirs = multiprocessing.get_context("forkserver").Pipe()
    holder = child_process(_hold, str(lock), theirs)
    try:
        # Only a guard against a hung child: the wait ends as soon as the holder answers.
        assert ours.poll(120) and ours.recv() == "held", "the holder did not take the lock"
        assert protocol.batch_locked_elsewhere(tmp_path, "b") is True
        assert protocol.batch_locked_elsewhere(tmp_path, "other") is False
        with pytest.raises(protocol.BatchBusy), protocol.batch_lock(tmp_path, "b"):
            pass
    finally:
        holder.kill()
        holder.join()
    assert protocol.batch_locked_elsewhere(tmp_path, "b") is False  # the kernel dropped the dead holder's lock


def test_a_partial_extract_folder_names_its_writers_pid() -> None:
    name = partial_extract_name(4321, "tok-en")
    assert name == f"{PARTIAL_EXTRACT}4321-tok-en" == ".partial-4321-tok-en"


def test_a_report_says_what_it_did_in_one_line_each_and_as_json() -> None:
    report = RecoveryReport(completed=["b1"], abandoned=["b2"], published=["e1"],
                            removed=[Removed("lake/x.parquet", 12, "why")],
                            left=[Left("s3://b/y.parquet", "data file of batch b2")], busy=["b3"],
                            unrecoverable=["u"], torn_log_bytes=7)
    assert report.acted
    assert report.lines() == [
        "complete batch b1: in the lake without its manifest/commit entry",
        "settle batch b2 as not committed (its commit was interrupted before the lake)",
        "publish extract e1 (signed and logged, not yet moved into place)",
        "remove lake/x.parquet (12 bytes): why",
        "LEFT IN PLACE: s3://b/y.parquet: data file of batch b2; DuckDB cannot delete an object: delete it with your "
        "storage tool (docs/operators.md)",
        "cut a torn last line of 7 bytes off the provenance log",
        "left alone: batch b3 is being run by a live process",
        "NEEDS AN OPERATOR: u",
    ]
    assert RecoveryReport(dry_run=True, abandoned=["b2"]).lines() == [
        "would settle batch b2 as not committed (its commit was interrupted before the lake)"]
    assert report.to_json() == {
        "dry_run": False, "completed": ["b1"], "abandoned": ["b2"], "published": ["e1"],
        "removed": [{"path": "lake/x.parquet", "size": 12, "why": "why"}],
        "left": [{"path": "s3://b/y.parquet", "why": "data file of batch b2"}], "busy": ["b3"],
        "unrecoverable": ["u"], "torn_log_bytes": 7}
    assert not RecoveryReport(busy=["b"], unrecoverable=["u"]).acted
    for one in (RecoveryReport(completed=["b"]), RecoveryReport(published=["e"]), RecoveryReport(torn_log_bytes=1),
                RecoveryReport(removed=[Removed("p", 0, "w")])):
        assert one.acted


# --- recovery of a real crash, in this process ---

def test_an_intent_promises_the_batch_and_every_staged_files_digest_in_its_marker_and_its_entry(hub: Hub) -> None:
    # Declared in this process (the crash child only stages the batch), so a mutated declare_intent is what runs.
    hub = _crashed(hub, "commit.after_intent")
    settle_now(hub, BATCH)  # the child's attempt, settled as not committed: the staged files stay
    staging = hub.staging(BATCH)
    intent = protocol.declare_intent(hub, BATCH)
    files = protocol.staged_digests(staging)
    assert {"pull.json", "accepted.parquet"} <= set(files)
    assert intent == protocol.Intent(BATCH, files) == protocol.read_intent(staging)
    last = _entries(hub, BATCH)[-1]
    assert (last.action, last.details["staged"], last.digests) == ("commit_intent", sorted(files), files)


def test_an_intent_without_a_snapshot_is_settled_as_not_committed_keeping_the_staged_files(hub: Hub) -> None:
    hub = _crashed(hub, "commit.after_intent")
    staging = hub.staging(BATCH)
    assert intents_pending(hub.layout.staging) == [BATCH]
    dry = reconcile(hub, dry_run=True)
    assert dry.abandoned == [BATCH] and dry.completed == [] and protocol.read_intent(staging) is not None
    assert not [e for e in _entries(hub, BATCH) if e.action == "recovered"]
    report = settle_now(hub, BATCH)
    assert report.abandoned == [BATCH] and report.removed == []
    assert protocol.read_intent(staging) is None and intents_pending(hub.layout.staging) == []
    assert (staging / "pull.json").exists() and (staging / "accepted.parquet").exists()
    last = _entries(hub, BATCH)[-1]
    assert (last.action, last.details["outcome"], last.details["removed"]) == ("recovered", "not_committed", [])
    assert reconcile(hub).abandoned == []  # settled once


def test_a_kill_inside_the_lake_commit_has_its_data_files_removed_named_sized_and_logged(hub: Hub) -> None:
    hub = _crashed(hub, "commit.before_lake_commit")
    report = reconcile(hub, batch_id=BATCH)
    assert report.abandoned == [BATCH]
    stray = [r for r in report.removed if r.why == "lake file no snapshot references (left by an interrupted write)"]
    assert stray and all(r.size > 0 and r.path.endswith(".parquet") for r in stray)
    assert not any((hub.settings.home / r.path).exists() for r in stray)
    settled = [e for e in _entries(hub, BATCH) if e.action == "recovered"][-1]
    assert settled.details["outcome"] == "not_committed"
    assert sorted(Path(p).name for p in settled.details["removed"]) == sorted(Path(r.path).name for r in stray)
    cleanup = [e for e in hub.log.read() if e.action == "cleanup"][-1]
    assert cleanup.subject == "recovery"
    assert cleanup.details["removed"] == [{"path": r.path, "size": r.size, "why": r.why} for r in report.removed]


def test_a_lake_file_no_snapshot_references_is_named_then_removed_by_exchange_recover(hub: Hub) -> None:
    # No intent names it (a write cut short outside any batch's commit): only the sweep of the whole data path
    # finds it, which a file catalog on a local folder allows (the hub holds its only writer's lock).
    orphan = Path(catalog_and_data(hub.settings)[1]) / "main" / "e_license" / "ducklake-0000-orphan.parquet"
    orphan.write_bytes(b"PAR1 cut short")
    named = [Removed(str(orphan.relative_to(hub.settings.home)), 14,
                     "lake file no snapshot references (left by an interrupted write)")]
    assert reconcile(hub).removed == [] and orphan.exists()  # what each stage runs first leaves the lake alone
    dry = reconcile(hub, full=True, dry_run=True)  # exchange recover --dry-run
    assert dry.removed == named and orphan.exists()
    report = reconcile(hub, full=True)
    assert report.removed == named and not orphan.exists()
    cleanup = [e for e in hub.log.read() if e.action == "cleanup"][-1]
    assert cleanup.details["removed"] == [{"path": named[0].path, "size": 14, "why": named[0].why}]
    assert reconcile(hub, full=True).removed == []


def test_recovering_a_hub_that_has_no_lake_yet_creates_none(tmp_path: Path) -> None:
    hub = Hub(ExchangeSettings(home=tmp_path / "home"))
    catalog = Path(catalog_and_data(hub.settings)[0])
    assert reconcile(hub, full=True).removed == []
    assert not catalog.exists(), "recovery created an empty lake catalog"


@pytest.mark.parametrize(("point", "missing"), [("commit.after_snapshot", "manifest and commit entry"),
                                                ("commit.after_manifest", "commit entry")])
def test_a_snapshot_without_its_records_is_completed_saying_what_was_missing(
    hub: Hub, point: str, missing: str
) -> None:
    hub = _crashed(hub, point)
    path = manifest_path(hub.layout.manifests, "jiangsu", "e_license", BATCH)
    dry = reconcile(hub, dry_run=True)
    assert dry.completed == [BATCH] and dry.lines()[0] == f"would complete batch {BATCH}: in the lake without its " \
                                                          "manifest/commit entry"
    assert path.exists() == (missing == "commit entry")
    report = recover_before_stage(hub, BATCH)
    assert report.completed == [BATCH] and report.unrecoverable == []
    assert path.exists() and not hub.staging(BATCH).exists()
    entries = _entries(hub, BATCH)
    actions = [e.action for e in entries]
    assert actions[-3:] == ["commit_intent", "recovered", "commit"]
    recovered, commit = entries[-2], entries[-1]
    assert recovered.details["outcome"] == "committed" and recovered.details["missing"] == missing
    assert recovered.details["snapshot_id"] == commit.details["snapshot_id"]
    assert recovered.digests == commit.digests == {"manifest": read_manifest(path).digest()}
    assert reconcile(hub).completed == []


def test_a_commit_entry_logged_before_the_kill_is_not_logged_again(hub: Hub) -> None:
    hub = _crashed(hub, "commit.after_commit_entry")
    before = [e.action for e in _entries(hub, BATCH)]
    report = reconcile(hub)
    assert report.completed == [BATCH]
    after = [e.action for e in _entries(hub, BATCH)]
    assert after == before and after.count("commit") == 1 and "recovered" not in after[after.index("commit_intent"):]
    assert not hub.staging(BATCH).exists()


def test_staged_files_changed_after_the_intent_need_an_operator_and_stop_the_stage(hub: Hub) -> None:
    hub = _crashed(hub, "commit.after_snapshot")
    (hub.staging(BATCH) / "accepted.parquet").write_bytes(b"edited after the intent")
    (hub.staging(BATCH) / "validation.json").unlink()
    report = reconcile(hub)
    assert report.completed == [] and len(report.unrecoverable) == 1
    text = report.unrecoverable[0]
    assert text.startswith(f"batch {BATCH} is in the lake (snapshot ")
    assert text.endswith("without its manifest, and its staged files changed since the signed commit_intent: "
                         "accepted.parquet, validation.json; it cannot be signed after the fact")
    assert report.lines()[-1] == f"NEEDS AN OPERATOR: {text}"
    with pytest.raises(TerminalError) as caught:
        recover_before_stage(hub, BATCH)
    assert str(caught.value) == text
    recover_before_stage(hub)  # another batch's stage is not stopped by it
    assert not manifest_path(hub.layout.manifests, "jiangsu", "e_license", BATCH).exists()


def test_a_legacy_marker_whose_staged_records_are_gone_needs_an_operator(hub: Hub) -> None:
    hub = _crashed(hub, "commit.after_snapshot")
    staging = hub.staging(BATCH)
    (staging / protocol.INTENT_FILE).unlink()
    (staging / protocol.LEGACY_MARKER).write_text("", encoding="utf-8")
    (staging / "validation.json").unlink()
    (staging / "pull.json").unlink()
    report = reconcile(hub)
    assert report.unrecoverable and report.unrecoverable[0].endswith(
        "without its manifest, and its staged files are gone: pull.json, validation.json; it cannot be signed after "
        "the fact")


def test_temporary_files_of_dead_writers_are_removed_and_logged_and_live_ones_kept(hub: Hub) -> None:
    dead = hub.layout.provenance / f".log.jsonl.{DEAD_PID}.tmp"
    dead.write_bytes(b"x" * 5)
    live = hub.layout.provenance / f".log.jsonl.{os.getpid()}.tmp"
    live.write_bytes(b"y")
    staged = hub.layout.staging / "some.batch" / f".pull.json.{DEAD_PID}.tmp"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"zz")
    report = reconcile(hub)
    assert sorted((r.path, r.size, r.why) for r in report.removed) == [
        (f"provenance/.log.jsonl.{DEAD_PID}.tmp", 5, "temporary file of a writer that died"),
        (f"staging/some.batch/.pull.json.{DEAD_PID}.tmp", 2, "temporary file of a writer that died"),
    ]
    assert not dead.exists() and not staged.exists() and live.exists()
    cleanup = hub.log.read()[-1]
    assert cleanup.action == "cleanup" and len(cleanup.details["removed"]) == 2
    assert reconcile(hub).removed == [] and not reconcile(hub).acted


def test_a_torn_last_log_line_is_cut_and_its_size_logged(hub: Hub) -> None:
    with hub.log.path.open("ab") as handle:
        handle.write(b'{"seq": 99, "torn')
    dry = reconcile(hub, dry_run=True)
    assert dry.torn_log_bytes == 17 and dry.lines() == ["would cut a torn last line of 17 bytes off the provenance log"]
    assert hub.log.torn_tail() == 17  # a dry run changes nothing
    report = reconcile(hub)
    assert report.torn_log_bytes == 17 and hub.log.torn_tail() == 0
    last = hub.log.read()[-1]
    assert (last.action, last.subject, last.details["outcome"], last.details["bytes"]) == (
        "recovered", "provenance", "torn_line_removed", 17)


@pytest.mark.parametrize("point", ["extract.after_cut", "extract.after_entry"])
def test_an_extract_cut_but_not_published_is_published_if_logged_else_removed(hub: Hub, point: str) -> None:
    assert run_crashing(hub.settings.home, point, Path()) == CRASH_EXIT
    hub = hub_at(hub.settings.home)
    partial = [p for p in hub.layout.extracts.rglob(f"{PARTIAL_EXTRACT}*") if p.is_dir()]
    assert len(partial) == 1
    files = sorted(p for p in partial[0].rglob("*") if p.is_file())
    report = reconcile(hub)
    assert not partial[0].exists()
    if point == "extract.after_entry":
        assert len(report.published) == 1 and report.removed == []
        assert (partial[0].parent / report.published[0]).is_dir()
        last = hub.log.read()[-1]
        assert (last.action, last.subject, last.details["outcome"]) == (
            "recovered", report.published[0], "extract_published")
    else:
        assert report.published == []
        assert sorted(r.path for r in report.removed) == sorted(
            str(f.relative_to(hub.settings.home)) for f in files)
        assert {r.why for r in report.removed} == {"file of an extract that was never published"}


@pytest.mark.parametrize("point", ["extract.after_cut", "extract.after_entry"])
def test_two_recoveries_meeting_one_unpublished_extract_act_and_log_once(
        hub: Hub, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_crashing(hub.settings.home, point, Path()) == CRASH_EXIT
    hub = hub_at(hub.settings.home)
    [partial] = [p for p in hub.layout.extracts.rglob(f"{PARTIAL_EXTRACT}*") if p.is_dir()]
    files = sorted(str(p.relative_to(hub.settings.home)) for p in partial.rglob("*") if p.is_file())
    before = len(hub.log.read())
    decide = recovery._logged_extract
    inner: list[RecoveryReport] = []

    def other_recovery_first(hub_: Hub, folder: Path) -> str | None:
        """This recovery has decided; another one (a stage starting beside it) settles the folder meanwhile."""
        answer = decide(hub_, folder)
        monkeypatch.setattr(recovery, "_logged_extract", decide)  # the other recovery runs unhindered
        inner.append(reconcile(hub_at(hub.settings.home)))
        return answer

    monkeypatch.setattr(recovery, "_logged_extract", other_recovery_first)
    outer = reconcile(hub)
    assert outer.published == [] and outer.removed == [] and not partial.exists()
    new = hub.log.read()[before:]
    if point == "extract.after_entry":
        assert len(inner[0].published) == 1 and (partial.parent / inner[0].published[0]).is_dir()
        assert [(e.action, e.details["outcome"]) for e in new] == [("recovered", "extract_published")]
    else:
        assert sorted(r.path for r in inner[0].removed) == files and files
        assert [e.action for e in new] == ["cleanup"] and len(new[0].details["removed"]) == len(files)
        assert not [p for p in partial.parent.iterdir() if p.name.startswith(PARTIAL_EXTRACT)]


def test_a_recovery_dying_while_removing_an_extract_leaves_a_folder_the_next_one_removes(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_crashing(hub.settings.home, "extract.after_cut", Path()) == CRASH_EXIT
    hub = hub_at(hub.settings.home)
    [partial] = [p for p in hub.layout.extracts.rglob(f"{PARTIAL_EXTRACT}*") if p.is_dir()]

    def dies(path: Path, ignore_errors: bool = False) -> None:
        raise SystemExit("killed before removing")

    monkeypatch.setattr(recovery.shutil, "rmtree", dies)
    monkeypatch.setattr(recovery.os, "getpid", lambda: DEAD_PID)
    with pytest.raises(SystemExit):
        reconcile(hub)
    [claimed] = [p for p in partial.parent.iterdir() if p.name.startswith(PARTIAL_EXTRACT)]
    assert claimed.name.startswith(partial_extract_name(DEAD_PID, "")) and not partial.exists()
    monkeypatch.undo()
    report = reconcile(hub_at(hub.settings.home))
    assert report.removed and not claimed.exists()
    assert {r.why for r in report.removed} == {"file of an extract that was never published"}


def test_extract_folders_of_live_writers_and_legacy_names_are_left_to_their_owners(hub: Hub) -> None:
    department = hub.layout.extracts / "js.public_security"
    live = department / partial_extract_name(os.getpid(), "t1")
    legacy = department / f"{PARTIAL_EXTRACT}legacy"
    for folder in (live, legacy):
        folder.mkdir(parents=True)
        (folder / "part.parquet").write_bytes(b"1234")
    assert reconcile(hub).removed == []
    assert live.exists() and legacy.exists()
    full = reconcile(hub, full=True)
    assert live.exists() and not legacy.exists()
    assert [(r.path, r.size) for r in full.removed] == [(str((legacy / "part.parquet").relative_to(
        hub.settings.home)), 4)]


def test_only_partial_extracts_of_dead_writers_are_removed_at_a_stage_entry(tmp_path: Path) -> None:
    hub = Hub(ExchangeSettings(home=tmp_path / "home"))
    department = hub.layout.extracts / "js.public_security"
    folders = {name: department / name for name in (
        partial_extract_name(DEAD_PID, "t-1"), partial_extract_name(os.getpid(), "t-2"),
        f"{PARTIAL_EXTRACT}legacy", f"{PARTIAL_EXTRACT}12ab-t3")}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "data.parquet").write_bytes(b"123")
    report = reconcile(hub)
    assert [r.path for r in report.removed] == [f"extracts/js.public_security/.partial-{DEAD_PID}-t-1/data.parquet"]
    assert sorted(p.name for p in department.iterdir()) == sorted(n for n in folders if str(DEAD_PID) not in n)
