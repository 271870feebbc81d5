"""Issue 16's failures F1-F5, each as an operator met it: a kill at the wrong moment, a full disk, a log that
cannot be written, two runs at once, an outside DuckDB reader. The commit protocol and recovery must leave the
hub "not committed" or "committed and fully recorded", and every failure must end in one line, not a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.base import Window
from exchange import atomic
from exchange.access.service import publish_extract
from exchange.cli import app
from exchange.errors import TerminalError
from exchange.faults import CRASH_ENV, CRASH_EXIT
from exchange.hub import Hub, batch_id_for
from exchange.lake import connect as lake_connect
from exchange.lake import protocol
from exchange.lake.commit import snapshot_of
from exchange.lake.connect import LAKE, catalog_and_data, connect
from exchange.lake.protocol import batch_lock
from exchange.pipeline import run_exchange
from exchange.provenance.events import Event
from exchange.provenance.log import LogUnavailable, ProvenanceLog
from exchange.provenance.manifest import manifest_path, read_manifest
from exchange.provenance.verify import verify_home
from exchange.recovery import reconcile
from tests.capability import unavailable
from tests.conftest import REPO
from tests.hubs import start_outside_reader
from tests.unit.crash_harness import (
    DEAD_PID,
    DEPARTMENT,
    END,
    MID,
    assert_settled,
    build_home,
    child_process,
    copied_hub,
    hub_at,
    run_crashing,
)

BATCH = batch_id_for("jiangsu", "e_license", Window(MID, END))
RUN = ["run", "--province", "jiangsu", "--dataset", "e_license", "--start", MID.isoformat(), "--end", END.isoformat()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_home(tmp_path_factory.mktemp("f"), records=80)


@pytest.fixture
def hub(built: Path, tmp_path: Path) -> Hub:
    return copied_hub(built, tmp_path)


def _env(hub: Hub, extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    return {**base, "PYTHONPATH": str(REPO), "EXCHANGE_HOME": str(hub.settings.home),
            "EXCHANGE_JIANGSU_DROP_DIR": str(hub.settings.jiangsu_drop_dir), **(extra or {})}


def _cli(hub: Hub, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `exchange` command in this process (CliRunner): what an operator sees, without a second import."""
    extra = {"EXCHANGE_HOME": str(hub.settings.home), "EXCHANGE_JIANGSU_DROP_DIR": str(hub.settings.jiangsu_drop_dir),
             **(env or {})}
    out = CliRunner().invoke(app, list(args), env=extra)
    if out.exception is not None and not isinstance(out.exception, SystemExit):
        raise out.exception
    return subprocess.CompletedProcess(list(args), out.exit_code, out.stdout, out.stderr if out.stderr_bytes else "")


def _noop() -> None:
    pass


def test_a_process_forked_after_the_fork_server_started_still_starts_crash_children() -> None:
    # mutmut forks each mutant's test run from a process that ran the tests once, fork server started: crash
    # children must start there too, or every crash test fails whatever the mutant and counts as a kill.
    first = child_process(_noop)
    first.join(60)
    assert first.exitcode == 0
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked test process
        code = 3
        try:
            again = child_process(_noop)
            again.join(60)
            code = again.exitcode if again.exitcode is not None else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _snapshots(hub: Hub) -> int:
    with connect(hub.settings, read_only=True) as con:
        row = con.execute(f"SELECT count(*) FROM {LAKE}.snapshots()").fetchone()
    return int(row[0]) if row else 0


def _one_line_error(out: subprocess.CompletedProcess[str], *words: str) -> None:
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "Traceback" not in text, text
    assert all(w in text for w in words), text


def test_f1_a_kill_inside_the_lake_commit_is_cleaned_up_by_the_rerun_and_verify_calls_it_interrupted(
    hub: Hub,
) -> None:
    assert run_crashing(hub.settings.home, "commit.before_lake_commit", Path()) == CRASH_EXIT
    root = catalog_and_data(hub.settings)[1]
    with connect(hub.settings, read_only=True) as con:
        assert snapshot_of(con, BATCH) is None
    stray = [p for p in Path(root).rglob("*.parquet") if BATCH in p.read_bytes().decode("latin-1")]
    assert stray, "the killed commit left its data files behind (the F1 state)"
    report = verify_home(hub.settings, record=False)
    assert report.verdict == "INTERRUPTED" and report.recoverable, [str(p) for p in report.problems]
    verdict = _cli(hub, "verify", "--json")
    assert verdict.returncode == 4, verdict.stdout
    assert '"verdict": "INTERRUPTED"' in verdict.stdout and "exchange recover" in verdict.stdout
    page = hub.settings.home / "report.html"
    assert _cli(hub, "report", "--out", str(page)).returncode == 4  # the auditor's page says the same as verify
    assert 'id="verdict-value">INTERRUPTED<' in page.read_text(encoding="utf-8")
    result = run_exchange("jiangsu", "e_license", MID, END, hub)  # the operator's re-run
    assert result.status == "committed"
    assert not any(p.exists() for p in stray)
    assert_settled(hub)
    cleanup = [e for e in hub.log.read() if e.action == "recovered" and e.subject == BATCH]
    assert cleanup and cleanup[-1].details["outcome"] == "not_committed"


def test_f1_tampering_beside_an_interrupted_commit_is_still_broken(hub: Hub) -> None:
    assert run_crashing(hub.settings.home, "commit.before_lake_commit", Path()) == CRASH_EXIT
    root = Path(catalog_and_data(hub.settings)[1])
    first = read_manifest(next(hub.layout.manifests.rglob("*.json")))
    committed = root / first.manifest.files[0].name  # a committed batch's file: not in flight
    shutil.copy(committed, committed.with_name("ducklake-planted.parquet"))  # slipped in by hand
    report = verify_home(hub.settings, record=False)
    assert report.verdict == "BROKEN" and not report.recoverable, [str(p) for p in report.problems]


def test_f2_partial_files_everywhere_are_removed_and_logged_with_names_and_sizes(hub: Hub) -> None:
    pid = DEAD_PID  # a writer that is gone: no process can have this pid (an exited child's could be reused)
    layout = hub.layout
    root = Path(catalog_and_data(hub.settings)[1])
    planted = {
        layout.staging / BATCH / f".pulled.parquet.{pid}.tmp": b"PAR1 half",
        layout.landing / "jiangsu" / "e_license" / BATCH / f".drop.csv.{pid}.tmp": b"",
        layout.manifests / "jiangsu" / "e_license" / f".{BATCH}.json.{pid}.tmp": b"{",
        layout.provenance / "archives" / f".entries.jsonl.{pid}.tmp": b"{}\n",
        layout.extracts / "js.public_security" / f".partial-{pid}-abc" / "part-0.parquet": b"PAR1",
        root / "main" / "e_license" / "ducklake-0000-orphan.parquet": b"",  # empty, unknown to the catalog
    }
    for path, data in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    dry = _cli(hub, "recover", "--dry-run")
    assert dry.returncode == 0 and "would remove" in dry.stdout and all(p.exists() for p in planted)
    done = _cli(hub, "recover")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [p for p in planted if p.exists()], done.stdout
    logged = [e for e in hub.log.read() if e.action == "cleanup"][-1].details["removed"]
    names = {Path(r["path"]).name: r["size"] for r in logged}
    assert all(names.get(p.name) == len(d) for p, d in planted.items()), names
    assert_settled(hub)


def test_f2_a_full_disk_during_the_commit_leaves_the_lake_as_it_was(hub: Hub, tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        unavailable("cannot mount a small tmpfs here (not root?)")
    try:
        data = mount / "data"
        shutil.copytree(catalog_and_data(hub.settings)[1], data)
        (mount / "filler").write_bytes(b"\0" * (os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize - 8192))
        settings = hub.settings.model_copy(update={"lake_data": str(data) + "/", "lake_commit_retries": 0})
        small = Hub(settings)
        before = _snapshots(small)
        with pytest.raises(Exception, match="(?i)space|write"):
            run_exchange("jiangsu", "e_license", MID, END, small)
        assert _snapshots(small) == before
        (mount / "filler").unlink()  # the operator frees space; the re-run commits once
        assert run_exchange("jiangsu", "e_license", MID, END, small).status == "committed"
        assert_settled(small)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_f3_a_kill_between_snapshot_and_manifest_is_completed_not_reported_already_committed(hub: Hub) -> None:
    assert run_crashing(hub.settings.home, "commit.after_snapshot", Path()) == CRASH_EXIT
    assert not manifest_path(hub.layout.manifests, "jiangsu", "e_license", BATCH).exists()
    result = run_exchange("jiangsu", "e_license", MID, END, hub)
    assert result.status in {"committed", "already_committed"}
    assert manifest_path(hub.layout.manifests, "jiangsu", "e_license", BATCH).exists()
    entries = [e for e in hub.log.read() if e.subject == BATCH]
    actions = [e.action for e in entries]
    assert actions.count("commit") == 1 and "recovered" in actions
    assert actions.index("commit_intent") < actions.index("recovered") < actions.index("commit")
    assert_settled(hub)


def _eio_on(action: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ProvenanceLog.append

    def failing(self: ProvenanceLog, signer: object, event: Event, **kw: object) -> object:
        if event.kind == action:
            raise LogUnavailable(self.path, os.strerror(errno.EIO))
        return real(self, signer, event, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ProvenanceLog, "append", failing)


def test_f4_the_hub_refuses_to_commit_when_the_log_cannot_take_the_intent(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshots(hub)
    _eio_on("commit_intent", monkeypatch)
    with pytest.raises(LogUnavailable, match=str(hub.log.path)):
        run_exchange("jiangsu", "e_license", MID, END, hub)
    assert _snapshots(hub) == before  # nothing irreversible happened
    monkeypatch.undo()
    assert run_exchange("jiangsu", "e_license", MID, END, hub).status == "committed"
    assert_settled(hub)


def test_f4_a_log_lost_after_the_snapshot_is_completed_once_it_works_again(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    _eio_on("commit", monkeypatch)
    with pytest.raises(LogUnavailable):
        run_exchange("jiangsu", "e_license", MID, END, hub)
    assert not verify_home(hub.settings, record=False).ok
    monkeypatch.undo()
    assert reconcile(hub).completed == [BATCH]
    assert_settled(hub)


def test_f4_an_immutable_log_file_refuses_run_and_extract_in_one_line(hub: Hub) -> None:
    if subprocess.run(["chattr", "+i", str(hub.log.path)], capture_output=True).returncode:
        unavailable("chattr +i is not available here")
    try:
        before = _snapshots(hub)
        _one_line_error(_cli(hub, *RUN), "provenance log", str(hub.log.path.name))
        assert _snapshots(hub) == before
        with pytest.raises(TerminalError, match="provenance log"):
            hub.log.ensure_writable()
        with pytest.raises(LogUnavailable):  # nor is an extract served that the log could not record
            publish_extract(hub, DEPARTMENT, "e_license")
        assert not list(hub.layout.extracts.rglob("*.parquet"))
    finally:
        subprocess.run(["chattr", "-i", str(hub.log.path)], check=False)


def _hold_lock(home: Path, ready: Path) -> None:
    with batch_lock(hub_at(home).layout.staging, BATCH):
        ready.touch()
        threading.Event().wait()  # held until the test kills this process, however long the other run takes


def test_f5_recovery_leaves_a_batch_a_live_run_holds_and_settles_it_once_free(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery takes each batch's lock itself: a held one is reported busy (no BatchBusy aborting the sweep)."""
    # The race: a look that saw the batch free just before a run took its lock must not be what decides.
    monkeypatch.setattr(protocol, "batch_locked_elsewhere", lambda *_: False)
    assert run_crashing(hub.settings.home, "commit.before_lake_commit", Path()) == CRASH_EXIT
    ready = tmp_path / "ready"
    holder = child_process(_hold_lock, hub.settings.home, ready)
    try:
        while not ready.exists():
            assert holder.is_alive(), "the lock holder died before taking the lock"
            time.sleep(0.05)
        held = reconcile(hub)
        assert held.busy == [BATCH] and not held.completed and not held.removed
    finally:
        holder.kill()
        holder.join()
    free = reconcile(hub)
    assert free.busy == [] and free.removed, free.lines()
    assert verify_home(hub.settings, record=False).verdict != "INTERRUPTED"


def _run_cli_into(home: Path, out: Path) -> None:
    result = _cli(hub_at(home), *RUN)
    out.write_text(f"{result.returncode}\n{result.stdout}{result.stderr}")
    os._exit(0)


def test_f5_a_second_run_of_a_running_batch_gets_one_line_and_the_batch_commits_once(
    hub: Hub, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    holder = child_process(_hold_lock, hub.settings.home, ready)  # a live run of the same window, in another process
    try:
        while not ready.exists():
            assert holder.is_alive(), "the lock holder died before taking the lock"
            time.sleep(0.05)
        _one_line_error(_cli(hub, *RUN), BATCH, "another process")
    finally:
        holder.kill()
        holder.join()
    outs = [tmp_path / f"run{i}.txt" for i in range(2)]
    runs = [child_process(_run_cli_into, hub.settings.home, o) for o in outs]  # two runs of one window at once
    for child in runs:
        child.join(300)
    texts = [o.read_text() for o in outs]
    assert all("Traceback" not in t for t in texts), texts
    assert sum('"status": "committed"' in t for t in texts) == 1, texts
    assert all(t.startswith("0\n") or "another process" in t for t in texts), texts
    assert_settled(hub)


def test_f5_a_commit_beside_an_outside_read_only_duckdb_waits_or_says_so_in_one_line(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_and_data(hub.settings)[0]
    reader = start_outside_reader(catalog)  # holds the catalog for as long as the run takes
    try:
        out = _cli(hub, *RUN, env={"EXCHANGE_LAKE_LOCK_WAIT_SECONDS": "1"})
        _one_line_error(out, "held open by another process", catalog)
    finally:
        reader.kill()
        reader.wait()
    # The commit waits for the reader: the reader leaves only once the commit has been seen waiting for it.
    reader = start_outside_reader(catalog)
    waits: list[float] = []

    def reader_leaves(seconds: float) -> None:
        waits.append(seconds)
        if reader.poll() is None:
            reader.kill()
            reader.wait()

    monkeypatch.setattr(lake_connect, "wait_for_outsider", reader_leaves)
    try:
        assert run_exchange("jiangsu", "e_license", MID, END, hub).status == "committed"  # waited for the reader
    finally:
        reader.kill()
        reader.wait()
    assert waits, "the commit never met the outside reader"
    assert_settled(hub)


def test_temporary_files_of_live_writers_are_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / f".x.parquet.{os.getpid()}.tmp"
    mine.write_bytes(b"being written")
    legacy = tmp_path / "y.json.tmp"
    legacy.write_bytes(b"{")
    assert [f.path for f in atomic.leftovers(tmp_path)] == [legacy]


def test_a_torn_last_log_line_is_interrupted_not_broken_and_recovery_cuts_it_and_says_so(hub: Hub) -> None:
    intact = hub.log.path.read_bytes()
    with hub.log.path.open("ab") as log:
        log.write(b'{"seq": 999, "at": "2026-12-0')  # a writer killed in the middle of its append
    report = verify_home(hub.settings, record=False)
    assert report.verdict == "INTERRUPTED", [str(p) for p in report.problems]
    done = reconcile(hub)
    assert done.torn_log_bytes == len(b'{"seq": 999, "at": "2026-12-0')
    assert hub.log.path.read_bytes().startswith(intact)
    last = hub.log.read()[-1]
    assert last.action == "recovered" and last.details["outcome"] == "torn_line_removed"
    assert verify_home(hub.settings, record=False).ok
