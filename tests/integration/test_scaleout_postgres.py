"""The lake catalog on PostgreSQL: four provinces committing at once from separate processes, a catalog
server restarted during a commit, and a writer killed with SIGKILL mid-commit."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.base import sandbox_for
from exchange.config import ExchangeSettings
from exchange.errors import TransientError
from exchange.faults import CRASH_ENV, CRASH_EXIT
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from exchange.provenance.log import ProvenanceLog
from exchange.provenance.verify import verify_home
from exchange.recovery import reconcile
from exchange.synthetic import generate
from tests.integration.scaleout_servers import postgres_database, private_cluster
from tests.unit.crash_harness import child_process

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 2, tzinfo=UTC)  # the recovery test's two windows
END = datetime(2026, 11, 4, tzinfo=UTC)
PROVINCES = ("shanghai", "jiangsu", "zhejiang", "anhui")


def _settings(env: dict[str, str]) -> ExchangeSettings:
    return ExchangeSettings(**{k.removeprefix("EXCHANGE_").lower(): v for k, v in env.items()})  # type: ignore[arg-type]


def _exchange(env: dict[str, str], province: str) -> None:
    result = run_exchange(province, "e_license", START, END, Hub(_settings(env)))
    assert result.status == "committed", result


def _count(settings: ExchangeSettings, sql: str) -> int:
    with connect(settings, read_only=True) as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _orphans(settings: ExchangeSettings) -> set[str]:
    """Parquet files in the data path the catalog does not know."""
    data = settings.home / "lake" / "data"
    on_disk = {p.name for p in data.rglob("*.parquet")}
    with connect(settings, read_only=True) as con:
        known = {Path(str(p)).name for (p,) in con.execute(f"SELECT path FROM __ducklake_metadata_{LAKE}"
                                                           ".ducklake_data_file").fetchall()}
    return on_disk - known


@contextmanager
def _sandboxes(home: Path, records: int) -> Iterator[dict[str, str]]:
    """Every province's sandbox seeded (Shanghai's API served from this process); their settings."""
    env: dict[str, str] = {}
    started = []
    try:
        for province in PROVINCES:
            sandbox = sandbox_for(province, home / "sandboxes" / province)
            sandbox.seed("e_license", generate("e_license", province, records, seed=11, start=START, end=END))
            sandbox.start()
            started.append(sandbox)
            env.update(sandbox.env())
        yield env
    finally:
        for sandbox in started:
            sandbox.stop()


@pytest.mark.slow
def test_four_provinces_commit_concurrently_from_separate_processes(home: Path) -> None:
    with postgres_database() as catalog, _sandboxes(home, 1500) as env:
        env = {**env, "EXCHANGE_HOME": str(home), "EXCHANGE_LAKE_CATALOG": catalog}
        ctx = multiprocessing.get_context("spawn")
        workers = [ctx.Process(target=_exchange, args=(env, p), name=p) for p in PROVINCES]
        for w in workers:
            w.start()
        for w in workers:
            w.join(600)
        assert [(w.name, w.exitcode) for w in workers] == [(p, 0) for p in PROVINCES]

        settings = _settings(env)
        ledger = f"SELECT count(*) FROM {LAKE}.exchange_batches"
        assert _count(settings, ledger) == 4
        assert _count(settings, f"SELECT count(DISTINCT batch_id) FROM {LAKE}.exchange_batches") == 4
        # Every batch's rows exactly once: accepted + quarantined per batch equals what was pulled.
        with connect(settings, read_only=True) as con:
            per_batch = con.execute(
                f"SELECT b.batch_id, b.pulled, b.accepted, "
                f"(SELECT count(*) FROM {LAKE}.e_license e WHERE e.batch_id = b.batch_id), "
                f"(SELECT count(*) FROM {LAKE}.quarantine q WHERE q.batch_id = b.batch_id) "
                f"FROM {LAKE}.exchange_batches b"
            ).fetchall()
        for batch, pulled, accepted, in_lake, in_quarantine in per_batch:
            assert (in_lake, in_lake + in_quarantine) == (accepted, pulled), batch
        entries = ProvenanceLog(home / "provenance").read()
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))  # one chain, no fork
        assert sorted(e.subject for e in entries if e.action == "commit") == sorted(b for b, *_ in per_batch)
        report = verify_home(settings)
        assert report.ok, report.problems
        assert not _orphans(settings)


class _Intercept:
    """A lake connection that runs `hook` just before the first statement containing `marker`."""

    def __init__(self, con: Any, marker: str, hook: Any) -> None:
        self._con, self._marker, self._hook = con, marker, hook

    def execute(self, sql: str, *args: Any) -> Any:
        if self._marker in sql and self._hook is not None:
            hook, self._hook = self._hook, None
            hook()
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _intercept(monkeypatch: pytest.MonkeyPatch, marker: str, hook: Any) -> None:
    import exchange.lake.retry as retry

    real = retry.connect
    pending = [hook]  # once per test, not once per connection: the retry must find the server back

    def once() -> None:
        if pending:
            pending.pop()()

    @contextmanager
    def wrapped(settings: ExchangeSettings, **kw: Any) -> Iterator[Any]:
        with real(settings, **kw) as con:
            yield _Intercept(con, marker, once)

    monkeypatch.setattr(retry, "connect", wrapped)


def _staged(env: dict[str, str], province: str) -> tuple[Hub, str]:
    import exchange.pipeline as pipeline

    hub = Hub(_settings(env))
    pulled = pipeline.pull(province, "e_license", START, END, hub)
    pipeline.validate(pulled.batch_id, hub)
    return hub, str(pulled.batch_id)


def test_catalog_restarted_during_commit_fails_cleanly_and_the_retry_commits_once(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exchange.pipeline as pipeline

    with private_cluster() as cluster, _sandboxes(home, 600) as env:
        catalog = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        env = {**env, "EXCHANGE_HOME": str(home), "EXCHANGE_LAKE_CATALOG": catalog}
        hub, batch = _staged(env, "jiangsu")
        no_retry = Hub(hub.settings.model_copy(update={"lake_commit_retries": 0}))
        _intercept(monkeypatch, "COMMIT", cluster.restart)  # the data files are written; the catalog goes away

        with pytest.raises(TransientError, match="a retry is safe"):
            pipeline.commit(batch, no_retry)
        assert _count(hub.settings, f"SELECT count(*) FROM {LAKE}.exchange_batches") == 0
        assert not list((home / "manifests").rglob("*.json"))
        assert not [e for e in ProvenanceLog(home / "provenance").read() if e.action == "commit"]

        result = pipeline.commit(batch, hub)  # the task's retry
        assert result.status == "committed"
        assert _count(hub.settings, f"SELECT count(*) FROM {LAKE}.exchange_batches") == 1
        assert _count(hub.settings, f"SELECT count(*) FROM {LAKE}.e_license") == result.accepted
        assert not _orphans(hub.settings)
        report = verify_home(hub.settings)
        assert report.ok, report.problems


def test_an_internal_retry_rides_out_a_catalog_restart(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import exchange.pipeline as pipeline

    with private_cluster() as cluster, _sandboxes(home, 300) as env:
        env = {**env, "EXCHANGE_HOME": str(home),
               "EXCHANGE_LAKE_CATALOG": f"postgres:dbname=postgres host=127.0.0.1 port={cluster.port} user=postgres",
               "EXCHANGE_LAKE_COMMIT_BACKOFF_SECONDS": "0.2"}
        hub, batch = _staged(env, "anhui")
        _intercept(monkeypatch, "COMMIT", cluster.restart)
        assert pipeline.commit(batch, hub).status == "committed"
        assert _count(hub.settings, f"SELECT count(*) FROM {LAKE}.exchange_batches") == 1
        assert not _orphans(hub.settings)
        assert verify_home(hub.settings).ok


def _commits_once(hub: Hub, batch: str) -> None:
    """The task's retry commits the batch, once, with nothing stray left and verify intact."""
    import exchange.pipeline as pipeline

    result = pipeline.commit(batch, hub)
    assert result.status == "committed"
    assert _count(hub.settings, f"SELECT count(*) FROM {LAKE}.exchange_batches") == 1
    assert not _orphans(hub.settings)
    report = verify_home(hub.settings)
    assert report.ok, report.problems


def _killed_mid_commit(env: dict[str, str], batch: str) -> None:
    import exchange.lake.retry as retry
    import exchange.pipeline as pipeline

    real = retry.connect

    @contextmanager
    def wrapped(settings: ExchangeSettings, **kw: Any) -> Iterator[Any]:
        with real(settings, **kw) as con:
            # After the INSERTs wrote their Parquet files, before COMMIT: the worst moment to die.
            yield _Intercept(con, "set_commit_message", lambda: os.kill(os.getpid(), signal.SIGKILL))

    retry.connect = wrapped  # type: ignore[assignment]
    pipeline.commit(batch, Hub(_settings(env)))


def test_a_writer_killed_mid_commit_leaves_lake_and_chain_consistent_and_the_retry_completes(home: Path) -> None:

    with postgres_database() as catalog, _sandboxes(home, 600) as env:
        env = {**env, "EXCHANGE_HOME": str(home), "EXCHANGE_LAKE_CATALOG": catalog}
        hub, batch = _staged(env, "zhejiang")
        writer = multiprocessing.get_context("spawn").Process(target=_killed_mid_commit, args=(env, batch))
        writer.start()
        writer.join(300)
        assert writer.exitcode == -signal.SIGKILL

        assert _count(hub.settings, f"SELECT count(*) FROM {LAKE}.snapshots() "
                      "WHERE commit_extra_info IS NOT NULL") == 0
        assert _orphans(hub.settings), "the killed writer left its data files behind (what the retry must clean)"
        report = verify_home(hub.settings)
        assert report.entries and not [p for p in report.problems if "provenance" in str(p)], report.problems

        _commits_once(hub, batch)


def test_the_hubs_backend_terminated_mid_commit_leaves_the_lake_as_it_was_and_the_rerun_commits_once(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_terminate_backend on the hub's catalog sessions while its COMMIT is on the way (the shared server
    keeps running): the failed snapshot is settled at once (its files removed, a `recovered` entry), the
    re-run commits once, verify is intact."""
    import psycopg

    import exchange.pipeline as pipeline

    with postgres_database() as catalog:
        sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
        sandbox.seed("e_license", generate("e_license", "jiangsu", 300, seed=11, start=START, end=END))
        env = {**sandbox.env(), "EXCHANGE_HOME": str(home), "EXCHANGE_LAKE_CATALOG": catalog}
        hub, batch = _staged(env, "jiangsu")
        no_retry = Hub(hub.settings.model_copy(update={"lake_commit_retries": 0}))

        def terminate() -> None:
            with psycopg.connect(catalog, autocommit=True) as pg:
                pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")

        _intercept(monkeypatch, "COMMIT", terminate)
        with pytest.raises(TransientError, match="a retry is safe"):
            pipeline.commit(batch, no_retry)
        monkeypatch.undo()
        assert _count(hub.settings, f"SELECT count(*) FROM {LAKE}.exchange_batches") == 0
        assert not _orphans(hub.settings)
        settled = [e for e in ProvenanceLog(home / "provenance").read() if e.action == "recovered"]
        assert settled and settled[-1].subject == batch and settled[-1].details["outcome"] == "not_committed"

        _commits_once(hub, batch)


def _second_window_dying_before_the_lake_commit(env: dict[str, str]) -> None:
    os.environ[CRASH_ENV] = "commit.before_lake_commit"  # data files written, the catalog never told
    run_exchange("jiangsu", "e_license", MID, END, Hub(_settings(env)))


@pytest.mark.mutation
def test_recovery_on_a_postgresql_catalog_removes_its_batchs_files_and_leaves_another_writers_in_flight(
    home: Path,
) -> None:
    """Beside a PostgreSQL catalog other hosts' writers may have files in flight in the shared data folder, which
    the catalog does not know yet: recovery removes only the files of the batch whose lock it holds."""
    with private_cluster() as cluster:  # a server this test starts: `make mutation` needs no loopback server
        sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
        sandbox.seed("e_license", generate("e_license", "jiangsu", 300, seed=11, start=START, end=END))
        env = {**sandbox.env(), "EXCHANGE_HOME": str(home),
               "EXCHANGE_LAKE_CATALOG": f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"}
        hub = Hub(_settings(env))
        assert run_exchange("jiangsu", "e_license", START, MID, hub).status == "committed"
        data = home / "lake" / "data"
        committed = set(data.rglob("*.parquet"))
        child = child_process(_second_window_dying_before_the_lake_commit, env)
        child.join(300)
        assert child.exitcode == CRASH_EXIT
        stray = set(data.rglob("*.parquet")) - committed
        assert stray, "the interrupted attempt wrote data files"
        # Another writer's file in flight: rows of another batch (the committed one's), unknown to the catalog.
        inflight = data / "main" / "e_license" / "in-flight-of-another-writer.parquet"
        shutil.copyfile(next(p for p in sorted(committed) if p.parent.name == "e_license"), inflight)

        report = reconcile(hub)
        assert len(report.abandoned) == 1
        assert sorted(r.path for r in report.removed) == sorted(str(p.relative_to(home)) for p in stray)
        assert inflight.exists() and not any(p.exists() for p in stray)
