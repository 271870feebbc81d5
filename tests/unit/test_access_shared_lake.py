"""The API's shared lake lease and sandbox cache: reused across requests, never stale, never starving writers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exchange.access.lakeshare import SharedLake, lock_waiters
from exchange.access.query import QueryLimits, current_snapshot_id
from exchange.access.registry import Registry
from exchange.access.service import check_licence_for_department, query_for_department
from exchange.access.viewcache import ViewCache
from exchange.errors import AccessDenied
from exchange.hub import Hub
from tests.unit.access_lake import DEP, clean_e_licenses, granted_hub, region_grant, seed_lake

REPO = Path(__file__).resolve().parents[2]
COUNT = "SELECT count(*) AS n, count(DISTINCT holder_id) AS holders FROM e_license"


@pytest.fixture
def hub(home: Path) -> Hub:
    return granted_hub(home)


def _frozen() -> float:
    """A clock that never moves: the lease's idle and hold limits never pass, however slow the requests are."""
    return 0.0


def _wait_for(condition: object, seconds: float = 120.0) -> bool:  # a hang guard: returns when condition holds
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False


def test_requests_share_one_attachment_and_one_sandbox_with_the_same_answers(hub: Hub) -> None:
    fresh = query_for_department(hub, DEP, COUNT)  # the CLI's path: own connection, own sandbox
    lake, views = SharedLake(hub.settings, idle_seconds=30, clock=_frozen), ViewCache()
    try:
        results = [query_for_department(hub, DEP, COUNT, lake=lake, views=views) for _ in range(5)]
        check = check_licence_for_department(hub, DEP, "NO-SUCH-LICENCE", "320102199001011237", lake=lake)
        assert lake.attaches == 1 and views.builds == 1
        assert {r.result_sha256 for r in results} == {fresh.result_sha256}
        assert check.check.answer == "not_valid"  # no such licence (the answer no longer says which)
        # Masked as on the uncached path: a masked ID keeps 6 + 4 digits around the stars.
        masked = query_for_department(hub, DEP, "SELECT holder_id FROM e_license LIMIT 1", lake=lake, views=views)
        assert "*" in masked.table["holder_id"][0].as_py()
    finally:
        lake.close()
    assert not lake.attached


def test_a_changed_or_revoked_grant_never_reuses_a_sandbox_and_a_new_snapshot_advances_it(hub: Hub) -> None:
    lake, views = SharedLake(hub.settings, idle_seconds=30, clock=_frozen), ViewCache()
    registry = Registry(hub.layout.access)
    try:
        wide = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        registry.add_grant(region_grant("g-1", "3201"), hub.signer)  # same id, narrower filter, re-signed
        narrow = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        assert views.builds == 2 and narrow.table["n"][0].as_py() < wide.table["n"][0].as_py()

        lake.close()  # a writer in this same process needs the catalog file to itself
        seed_lake(hub, clean_e_licenses(50, seed=4), batch_id="second")
        later = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        # The same grant's sandbox is advanced to the new snapshot (never the wide grant's older one).
        assert later.snapshot_id > narrow.snapshot_id and views.builds == 3 and views.advanced == 1
        again = query_for_department(hub, DEP, COUNT, snapshot=narrow.snapshot_id, lake=lake, views=views)
        # Time travel to the snapshot that was advanced copies it again; a second time hits the cache.
        assert again.result_sha256 == narrow.result_sha256 and views.builds == 4
        query_for_department(hub, DEP, COUNT, snapshot=narrow.snapshot_id, lake=lake, views=views)
        assert views.builds == 4

        registry.revoke_grant("g-1", "jiangsu.data_office", "done", hub.signer)
        with pytest.raises(AccessDenied, match="revoked"):
            query_for_department(hub, DEP, COUNT, lake=lake, views=views)
    finally:
        lake.close()


def test_the_cache_is_bounded_and_closes_what_it_drops(hub: Hub) -> None:
    lake, views = SharedLake(hub.settings, idle_seconds=30, clock=_frozen), ViewCache(max_entries=1)
    try:
        first = query_for_department(hub, DEP, COUNT, lake=lake, views=views, limits=QueryLimits(threads=1))
        query_for_department(hub, DEP, COUNT, lake=lake, views=views, limits=QueryLimits(threads=2))
        assert len(views) == 1
        tiny = ViewCache(max_rows=1)  # a view larger than the cache is built, used once and dropped
        assert query_for_department(hub, DEP, COUNT, lake=lake, views=tiny).result_sha256 == first.result_sha256
        assert len(tiny) == 0
    finally:
        lake.close()
        views.clear()


def test_an_idle_lease_releases_the_catalog(hub: Hub) -> None:
    now = [0.0]
    lake = SharedLake(hub.settings, idle_seconds=5, clock=lambda: now[0])
    with lake.cursor() as con:
        assert current_snapshot_id(con) >= 1
        assert lake.attached
    assert lake.attached  # released, but not idle for long yet
    now[0] += 6
    assert _wait_for(lambda: not lake.attached), "the lake stayed attached while idle"
    seed_lake(hub, clean_e_licenses(10, seed=5), batch_id="after-idle")  # the catalog is free again
    lake.close()


_WRITER = """
import sys
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from tests.unit.access_lake import DEP, clean_e_licenses, granted_hub, region_grant, seed_lake
seed_lake(Hub(ExchangeSettings()), clean_e_licenses(20, seed=6), batch_id="from-another-process")
print("committed")
"""


def test_a_writer_in_another_process_gets_the_catalog_while_requests_keep_coming(hub: Hub) -> None:
    if not Path("/proc/locks").exists():
        pytest.skip("waiting writers are seen through /proc/locks (Linux); elsewhere the hold limit frees them")
    # Neither the idle nor the hold limit would free the lock here: only seeing the writer wait can.
    lake = SharedLake(hub.settings, idle_seconds=600, hold_seconds=600)
    with lake.cursor() as con:
        before = current_snapshot_id(con)
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            with lake.cursor() as con:
                seen.append(current_snapshot_id(con))
            time.sleep(0.01)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        env = {**os.environ, "EXCHANGE_HOME": str(hub.settings.home), "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", _WRITER], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "committed" in done.stdout, done.stderr[-2000:]
        assert _wait_for(lambda: bool(seen) and seen[-1] > before), "readers never saw the writer's snapshot"
    finally:
        stop.set()
        for t in readers:
            t.join()
        lake.close()
    assert lake.attaches >= 2


def test_lock_waiters_reads_blocked_requests_of_other_processes(tmp_path: Path) -> None:
    lock = tmp_path / "catalog.ducklake.lock"
    lock.touch()
    inode = lock.stat().st_ino
    locks = tmp_path / "locks"
    locks.write_text(f"1: FLOCK  ADVISORY  WRITE 111 fd:01:{inode} 0 EOF\n"
                     f"1: -> FLOCK  ADVISORY  WRITE 222 fd:01:{inode} 0 EOF\n"
                     f"1: -> FLOCK  ADVISORY  WRITE {os.getpid()} fd:01:{inode} 0 EOF\n"
                     "2: -> FLOCK  ADVISORY  WRITE 333 fd:01:999999999 0 EOF\n")
    assert lock_waiters(lock, locks) == 1
    assert lock_waiters(lock, tmp_path / "absent") == 0
