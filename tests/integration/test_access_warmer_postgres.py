"""The warmer on a lake catalogued in PostgreSQL: the catalog's newest snapshot id, read over a connection of
the API's own, stands in for the DuckDB file's stat (exchange/access/lakeshare.py `CatalogProbe`).

The invariants are the file catalog's (tests/unit/test_access_warmer.py): a query never answers from an
older snapshot than the catalog's current one, a commit from another process is warmed so the next query
needs no attach, a changed or revoked grant is never warmed; and a catalog server that goes away stops
nothing: the warmer keeps running and warms again once the server is back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.access.lakeshare import SharedLake
from exchange.access.registry import Registry
from exchange.access.service import query_for_department
from exchange.access.viewcache import ViewCache
from exchange.access.warmer import SandboxWarmer, warm
from exchange.errors import AccessDenied
from exchange.hub import Hub
from tests.integration.scaleout_servers import PG_HOST, PG_PORT, PG_USER, postgres_database, private_cluster
from tests.unit.access_lake import DEP, clean_e_licenses, granted_hub, region_grant, seed_lake
from tests.unit.test_access_warmer import (  # noqa: F401 - the file catalog's test, collected here too, runs
    COUNT,  # with this module's `hub` (a PostgreSQL catalog)
    REPO,
    ROWS,
    _commit_elsewhere,
    _wait_for,
    test_a_commit_from_another_process_is_warmed_and_the_next_query_needs_no_lake,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def hub(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    with postgres_database() as catalog:
        monkeypatch.setenv("EXCHANGE_LAKE_CATALOG", catalog)  # the writer subprocesses inherit it
        yield granted_hub(home)


def test_the_catalogs_snapshot_id_saves_the_attach_and_never_goes_stale(hub: Hub) -> None:
    lake, views = SharedLake(hub.settings), ViewCache()
    try:
        first = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        lake.close()  # detached: only the catalog's newest snapshot id says nothing changed
        again = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        assert lake.attaches == 1 and again.snapshot_id == first.snapshot_id
        assert again.result_sha256 == first.result_sha256

        seed_lake(hub, clean_e_licenses(30, seed=8), batch_id="in-process")
        later = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        fresh = query_for_department(hub, DEP, COUNT)  # the CLI's path reads the catalog itself
        assert later.snapshot_id == fresh.snapshot_id > first.snapshot_id
        assert later.result_sha256 == fresh.result_sha256
    finally:
        lake.close()
        views.clear()


def test_a_changed_or_revoked_grant_is_never_warmed(hub: Hub) -> None:
    lake, views = SharedLake(hub.settings), ViewCache()
    registry = Registry(hub.layout.access)
    try:
        query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        registry.add_grant(region_grant("g-1", "3201"), hub.signer)  # narrower, re-signed: another lineage
        seed_lake(hub, clean_e_licenses(30, seed=9), batch_id="after-change")
        assert lake.changed()
        assert warm(hub, lake, views) == 0 and views.advanced == 0
        assert not lake.changed()  # the new snapshot is noted: the warmer does not try again and again
        narrow = query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        registry.revoke_grant("g-1", "jiangsu.data_office", "done", hub.signer)
        seed_lake(hub, clean_e_licenses(30, seed=10), batch_id="after-revoke")
        assert warm(hub, lake, views) == 0
        with pytest.raises(AccessDenied, match="revoked"):
            query_for_department(hub, DEP, COUNT, lake=lake, views=views)
        assert narrow.table["n"][0].as_py() > 0
    finally:
        lake.close()
        views.clear()


def test_the_warmer_rides_out_a_catalog_server_outage(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with private_cluster() as cluster:  # ours to stop: the shared server stays up for everyone else
        monkeypatch.setenv("EXCHANGE_LAKE_CATALOG", f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres")
        hub = granted_hub(home)
        lake, views = SharedLake(hub.settings), ViewCache()
        assert lake.probe is not None
        warmer = SandboxWarmer(hub, lake, views, poll_seconds=0.02, settle_seconds=0.05)
        warmer.start()
        try:
            before = query_for_department(hub, DEP, ROWS, lake=lake, views=views)
            lake.close()
            cluster.stop()
            # The warmer polls (a sandbox is cached) and fails to read the catalog, without raising.
            assert _wait_for(lambda: lake.probe is not None and lake.probe.failures >= 2), "never polled"
            assert lake.known_current() is None and lake.stamp() is None and not lake.changed()

            cluster.start()  # the probe reconnects by itself, at most a retry delay later
            _commit_elsewhere(hub, 13)
            assert _wait_for(lambda: lake.changed() is False and warmer.caught_up() and warmer.warmed == 1)
            warmed = query_for_department(hub, DEP, ROWS, lake=lake, views=views)
            fresh = query_for_department(hub, DEP, ROWS)
            assert warmed.snapshot_id == fresh.snapshot_id > before.snapshot_id
            assert warmed.result_sha256 == fresh.result_sha256
        finally:
            warmer.stop()
            lake.close()
            views.clear()


def test_the_query_benchmark_runs_on_a_postgresql_catalog_and_drops_it(tmp_path: Path) -> None:
    import psycopg

    with postgres_database() as scratch:  # the server's URL as a user gives it; the run makes its own database
        command = [sys.executable, "-m", "benchmarks", "query", "--rows", "3000", "--chunk-rows", "1500",
                   "--repeat", "1", "--clients", "2", "--http-seconds", "1", "--json", str(tmp_path / "q.json"),
                   "--workdir", str(tmp_path), "--catalog", scratch]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads((tmp_path / "q.json").read_text())["results"]
    assert result["catalog"] == "postgresql" and "postgresql catalog" in done.stdout
    after = result["ours"]["after_snapshot"]
    assert after["warmed"] == 1 and not after["warmer_errors"]  # the warmer saw the commit and advanced
    assert result["http"]["requests"] > 0 and set(result["http"]["statuses"]) == {"200"}  # `exchange serve`
    assert result["catalog_database"].startswith("bench_query_")
    with psycopg.connect(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres") as pg:
        left = pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", [result["catalog_database"]]).fetchall()
    assert not left, "the benchmark must drop its catalog database"
