"""Knowing the current snapshot without attaching, and advancing sandboxes to a new snapshot ahead of a query.

The invariants: a query never answers from an older snapshot than the catalog's current one, the warmed
sandbox equals a fresh copy at the new snapshot, and a changed or revoked grant is never warmed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exchange.access.lakeshare import SharedLake, lock_busy
from exchange.access.registry import Registry
from exchange.access.service import query_for_department
from exchange.access.viewcache import ViewCache
from exchange.access.warmer import SandboxWarmer, warm
from exchange.errors import AccessDenied
from exchange.hub import Hub
from tests.unit.access_lake import DEP, clean_e_licenses, granted_hub, region_grant, seed_lake

REPO = Path(__file__).resolve().parents[2]
COUNT = "SELECT count(*) AS n, count(DISTINCT holder_id) AS holders FROM e_license"
ROWS = "SELECT * FROM e_license ORDER BY ALL"


@pytest.fixture
def hub(home: Path) -> Hub:
    return granted_hub(home)


_WRITER = """
import sys
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from tests.unit.access_lake import clean_e_licenses, seed_lake
seed_lake(Hub(ExchangeSettings()), clean_e_licenses(40, seed=int(sys.argv[1])), batch_id="batch-" + sys.argv[1])
"""


def _commit_elsewhere(hub: Hub, seed: int) -> None:
    """A commit from another process (as Airflow's), which waits for the API's lease like a real one."""
    env = {**os.environ, "EXCHANGE_HOME": str(hub.settings.home), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _WRITER, str(seed)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]


def _wait_for(condition: Callable[[], bool], seconds: float = 120.0) -> bool:  # a hang guard
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_known_snapshot_saves_the_attach_and_never_goes_stale(hub: Hub) -> None:
    lake, views = SharedLake(hub.settings), ViewCache()
    try:
        first = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        lake.close()  # detached: only the catalog's stamp says nothing changed
        again = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        assert lake.attaches == 1 and again.snapshot_id == first.snapshot_id
        assert again.result_sha256 == first.result_sha256

        seed_lake(hub, clean_e_licenses(30, seed=8), batch_id="in-process")  # the lake is closed: it may write
        later = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        fresh = query_for_department(hub, DEP, COUNT)  # the CLI's path reads the catalog itself
        assert lake.attaches == 2 and later.snapshot_id == fresh.snapshot_id > first.snapshot_id
        assert later.result_sha256 == fresh.result_sha256
        # An explicit snapshot is always checked against the catalog, even when the stamp says nothing changed
        # (detached first: whether the idle timer already detached it would otherwise decide the count).
        lake.close()
        query_for_department(hub, DEP, COUNT, snapshot=first.snapshot_id, lake=lake, views=views)
        assert lake.attaches == 3
    finally:
        lake.close()
        views.clear()


def test_a_commit_from_another_process_is_warmed_and_the_next_query_needs_no_lake(hub: Hub) -> None:
    lake, views = SharedLake(hub.settings), ViewCache()
    warmer = SandboxWarmer(hub, lake, views, poll_seconds=0.02, settle_seconds=0.05)
    warmer.start()
    try:
        before = query_for_department(hub, DEP, ROWS, lake=lake, views=views)
        for seed in (11, 12):
            _commit_elsewhere(hub, seed)
            assert _wait_for(lambda: lake.changed() is False and warmer.caught_up()), "never warmed"
        assert warmer.warmed == 2 and views.advanced == 2 and not warmer.errors
        attaches = lake.attaches
        warmed = query_for_department(hub, DEP, ROWS, lake=lake, views=views)
        assert lake.attaches == attaches and views.builds == 3  # no attach, no build: the sandbox was ready
        fresh = query_for_department(hub, DEP, ROWS)
        assert warmed.snapshot_id == fresh.snapshot_id > before.snapshot_id
        assert warmed.result_sha256 == fresh.result_sha256  # masked and filtered exactly as a fresh copy
    finally:
        warmer.stop()
        lake.close()
        views.clear()


def test_a_changed_or_revoked_grant_is_never_warmed(hub: Hub) -> None:
    lake, views = SharedLake(hub.settings), ViewCache()
    registry = Registry(hub.layout.access)
    try:
        query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        lake.close()
        registry.add_grant(region_grant("g-1", "3201"), hub.signer)  # narrower, re-signed: another lineage
        seed_lake(hub, clean_e_licenses(30, seed=9), batch_id="after-change")
        assert warm(hub, lake, views) == 0 and views.advanced == 0
        narrow = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        lake.close()
        registry.revoke_grant("g-1", "jiangsu.data_office", "done", hub.signer)
        seed_lake(hub, clean_e_licenses(30, seed=10), batch_id="after-revoke")
        assert warm(hub, lake, views) == 0
        with pytest.raises(AccessDenied, match="revoked"):
            query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        assert narrow.table["n"][0].as_py() > 0
    finally:
        lake.close()
        views.clear()


def test_lock_busy_sees_holders_and_waiters_of_other_processes_only(tmp_path: Path) -> None:
    lock = tmp_path / "catalog.ducklake.lock"
    lock.touch()
    inode = lock.stat().st_ino
    locks = tmp_path / "locks"
    mine = f"1: FLOCK  ADVISORY  WRITE {os.getpid()} fd:01:{inode} 0 EOF\n"
    elsewhere = "2: FLOCK  ADVISORY  WRITE 333 fd:01:999999999 0 EOF\n"
    locks.write_text(mine + elsewhere)
    assert not lock_busy(lock, locks)
    locks.write_text(mine + elsewhere + f"3: FLOCK  ADVISORY  WRITE 111 fd:01:{inode} 0 EOF\n")
    assert lock_busy(lock, locks)
    locks.write_text(mine + f"3: -> FLOCK  ADVISORY  WRITE 222 fd:01:{inode} 0 EOF\n")
    assert lock_busy(lock, locks)
    assert not lock_busy(lock, tmp_path / "absent")
