"""The crash harness's pieces: a small built home, the stage each crash point belongs to, a real child process
that dies at a named point, and the invariant checker every crash test ends with."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.process
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.base import sandbox_for
from exchange import atomic
from exchange.access.registry import Registry
from exchange.access.service import publish_extract
from exchange.config import ExchangeSettings
from exchange.demo import SAMPLE_DEPARTMENTS, sample_grant
from exchange.faults import CRASH_ENV
from exchange.hub import Hub
from exchange.lake import files as lake_files
from exchange.lake.commit import ledger_rows
from exchange.lake.connect import catalog_and_data, connect
from exchange.lake.protocol import read_intent
from exchange.lake.retry import catalog_file_names
from exchange.pipeline import run_exchange
from exchange.provenance.archive import write_archive
from exchange.provenance.checkpoint import append_checkpoint
from exchange.provenance.manifest import manifest_path, read_manifest
from exchange.provenance.verify import verify_home
from exchange.replay import replay
from exchange.synthetic import generate
from tests.hubs import relaxed_contracts

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
DEPARTMENT = "js.public_security"
DEAD_PID = 2**22 + 12345  # above the largest pid_max Linux allows (2**22): no process has it, nor will
ORIGIN = "jiangsu.e_license.20261101T000000Z-20261104T000000Z"


def hub_at(home: Path) -> Hub:
    """A hub under `home` reading the Jiangsu sandbox kept inside it (so a copied home is self-contained)."""
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    return Hub(ExchangeSettings(home=home, **env))


def build_home(root: Path, records: int = 120) -> Path:
    """One committed batch with quarantined records, the next window seeded but not run, a department with a
    grant, relaxed contracts beside the home: every stage the harness crashes has something to do."""
    home = root / "home"
    hub = hub_at(home)
    sandbox = sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu")
    sandbox.seed("e_license", generate("e_license", "jiangsu", records, seed=6, start=START, end=MID))
    first = run_exchange("jiangsu", "e_license", START, MID, hub)
    assert first.status == "committed" and first.quarantined >= 2, first  # seed 6: two checksum failures
    sandbox.seed("e_license", generate("e_license", "jiangsu", records, seed=8, start=MID, end=END))
    registry = Registry(hub.layout.access)
    registry.add_department(next(d for d in SAMPLE_DEPARTMENTS if d.id == DEPARTMENT))
    registry.add_grant(sample_grant(datetime.now(UTC).date()), hub.signer)
    relaxed_contracts(root / "contracts")
    return home


def copied_hub(built: Path, to: Path) -> Hub:
    """A hub on a copy of `build_home`'s result (with the relaxed contracts beside it) under `to`."""
    shutil.copytree(built.parent, to / "copy", symlinks=True)
    return hub_at(to / "copy" / "home")


def stage_action(point: str, contracts: Path) -> Callable[[Hub], Any]:
    """What to run for a crash point: the stage its name starts with, through its public entry."""
    stage = point.split(".", 1)[0]
    actions: dict[str, Callable[[Hub], Any]] = {
        "pull": lambda hub: run_exchange("jiangsu", "e_license", MID, END, hub),
        "validate": lambda hub: run_exchange("jiangsu", "e_license", MID, END, hub),
        "commit": lambda hub: run_exchange("jiangsu", "e_license", MID, END, hub),
        "replay": lambda hub: replay(ORIGIN, hub, contracts_dir=contracts),
        "extract": lambda hub: publish_extract(hub, DEPARTMENT, "e_license"),
        "archive": lambda hub: write_archive(hub.log, hub.signer, hub.layout.home, lake_snapshot=None, manifests=0),
        "checkpoint": lambda hub: append_checkpoint(hub.log, hub.signer, lake_snapshot=None, manifests=0),
    }
    return actions[stage]


def _forget_the_parents_fork_server() -> None:
    """In a forked child, drop the fork server the parent started: it is not this process's child, so
    multiprocessing fails to use it (os.waitpid: "No child processes"); the next child_process starts one of its
    own. mutmut forks every mutant's test run from a process that ran the tests once: without this, each test of
    this harness failed there whatever the mutant, and counted as a kill."""
    server: Any = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    if server._forkserver_alive_fd is not None:
        with suppress(OSError):
            os.close(server._forkserver_alive_fd)
    server._forkserver_address = server._forkserver_alive_fd = server._forkserver_pid = None
    server._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_the_parents_fork_server)


def child_process(target: Callable[..., object], *args: object) -> multiprocessing.process.BaseProcess:
    """A started child process running `target(*args)`, forked from a fork server that imported the stack once.

    Not a plain fork of the test process: that one has threads (hashing pools, DuckDB's), and a fork of a
    threaded process can inherit a lock some other thread held and crash in the child. The server is single
    threaded, so its children are clean and start without importing anything again.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.unit.crash_harness"])
    child = context.Process(target=target, args=args)
    child.start()
    return child


def _child(home: str, point: str, contracts: str) -> None:
    os.environ[CRASH_ENV] = point
    stage_action(point, Path(contracts))(hub_at(Path(home)))


def run_crashing(home: Path, point: str, contracts: Path) -> int:
    """Run the point's stage in a real child process that dies at the point; its exit code (faults.CRASH_EXIT
    when it died there)."""
    child = child_process(_child, str(home), point, str(contracts))
    child.join(120)
    assert child.exitcode is not None, f"child for {point} hung"
    return child.exitcode


def assert_settled(hub: Hub) -> None:
    """The invariant after any crash and a re-run: each batch committed once and fully recorded, nothing
    partial or unreferenced on disk, verify intact."""
    report = verify_home(hub.settings, record=False)
    assert report.ok, [str(p) for p in report.problems]
    log = hub.log.read()
    commits = Counter(e.subject for e in log if e.action == "commit")
    root = catalog_and_data(hub.settings)[1]
    with connect(hub.settings, read_only=True) as con:
        ledger = ledger_rows(con)
        known = catalog_file_names(con)
        on_disk = lake_files.parquet_files(con, root)
    batches = Counter(r.batch_id for r in ledger)
    assert all(n == 1 for n in batches.values()), batches
    for row in ledger:
        batch = row.batch_id
        assert commits[batch] == 1, f"{batch}: {commits[batch]} commit entries"
        signed = read_manifest(manifest_path(hub.layout.manifests, row.province, row.dataset, batch))
        c = signed.manifest.counts
        assert c.pulled == c.accepted + c.quarantined == row.pulled
    assert set(commits) == set(batches), "a commit entry without a batch in the lake, or the reverse"
    assert all(Path(f).name in known for f in on_disk), "a lake file no snapshot references"
    layout = hub.layout
    for folder in (layout.staging, layout.landing, layout.manifests, layout.provenance, layout.extracts,
                   layout.lake_data):
        assert not atomic.leftovers(folder), atomic.leftovers(folder)
        empty = [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size == 0 and not p.name.endswith(".lock")]
        assert not empty, empty
    assert not list(layout.extracts.rglob(".partial-*")), "an extract folder never published"
    assert not [p for p in layout.staging.iterdir() if p.is_dir() and read_intent(p)], "an unsettled intent"
