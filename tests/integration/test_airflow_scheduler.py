"""A real Airflow deployment: PostgreSQL metadata DB, LocalExecutor, scheduler + dag-processor + api-server.

The test starts every process it needs, triggers the Jiangsu DAG with `airflow dags trigger`, waits for
success, checks the lake, and stops everything it started (and drops its database).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.servers import require_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_HOST = os.environ.get("EXCHANGE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("EXCHANGE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("EXCHANGE_TEST_PG_USER", "postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _psql(sql: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as con:
        con.execute(sql)  # type: ignore[arg-type]


@dataclass
class Deployment:
    """An Airflow deployment made of subprocesses, with the environment to talk to it."""

    tmp: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def airflow(self, *args: str, timeout: int = 180) -> str:
        out = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"airflow {' '.join(args)} failed:\n{out.stderr[-3000:]}"
        return out.stdout

    def start(self, name: str) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([str(BIN / "airflow"), name], env=self.env, stdout=log, stderr=log,
                                            start_new_session=True)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)

    def runs(self, dag_id: str) -> list[dict[str, str]]:
        text = self.airflow("dags", "list-runs", dag_id, "-o", "json")
        line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("[")), "[]")
        runs: list[dict[str, str]] = json.loads(line)
        return runs

    def wait_for(self, dag_id: str, states: set[str], timeout: float) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if runs and all(r["state"] in states for r in runs):
                return runs
            time.sleep(5)
        logs = "\n".join(f"== {p.name}\n{p.read_text()[-2000:]}" for p in self.tmp.glob("*.log"))
        raise AssertionError(f"{dag_id} runs did not reach {states} within {timeout}s: {self.runs(dag_id)}\n{logs}")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    require_server(PG_HOST, PG_PORT, "PostgreSQL")
    db = f"exchange_af_{uuid.uuid4().hex[:10]}"
    _psql(f"CREATE DATABASE {db}")
    port = _free_port()
    url = f"{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXCHANGE_", "AIRFLOW"))}
    env.update({
        "EXCHANGE_HOME": str(tmp_path / "home"),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{url}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg_async://{url}",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__API__PORT": str(port),
        # Every port of its own: several deployments (parallel test sessions) may share the machine.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(_free_port()),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Notice a task whose scheduler (and worker) died within a minute rather than the default five.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    })
    dep = Deployment(tmp_path, env)
    try:
        dep.airflow("db", "migrate", timeout=300)
        dep.airflow("pools", "set", "lake_commits", "1", "lake commits")  # commit tasks wait on this pool
        for name in ("api-server", "scheduler", "dag-processor"):
            dep.start(name)
        yield dep
    finally:
        for name in list(dep.procs):
            dep.stop(name)
        _psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def seed_jiangsu(home: Path, start: datetime, end: datetime, n: int = 600) -> None:
    """Seed the Jiangsu drop folder under `home` with `n` records per dataset updated in [start, end)."""
    from adapters.base import sandbox_for
    from exchange.config import Layout
    from exchange.synthetic import generate

    sandbox = sandbox_for("jiangsu", Layout(home).ensure().sandboxes / "jiangsu")
    for dataset in ("e_license", "enterprise_registration"):
        sandbox.seed(dataset, generate(dataset, "jiangsu", n, seed=5, start=start, end=end))


def _wait_parsed(dep: Deployment, dag_id: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dag_id in dep.airflow("dags", "list", "-o", "plain"):
            return
        time.sleep(3)
    raise AssertionError(f"{dag_id} was not parsed within {timeout}s")


def _lake_batches(home: Path) -> list[dict[str, object]]:
    manifests = sorted((home / "manifests").rglob("*.json"))
    return [json.loads(p.read_text())["manifest"] for p in manifests]


def _recent_window() -> tuple[datetime, datetime]:
    from exchange.demo import DemoWindow

    window = DemoWindow.around(datetime.now(UTC))
    return window.start, window.end


def test_a_triggered_province_dag_runs_on_a_real_scheduler(deployment: Deployment) -> None:
    dag_id = "exchange_jiangsu"
    seed_jiangsu(Path(deployment.env["EXCHANGE_HOME"]), *_recent_window())
    _wait_parsed(deployment, dag_id)
    deployment.airflow("dags", "unpause", dag_id)
    deployment.airflow("dags", "trigger", dag_id, "--logical-date", datetime.now(UTC).isoformat())
    runs = deployment.wait_for(dag_id, {"success", "failed"}, timeout=420)
    assert {r["state"] for r in runs} == {"success"}, runs
    home = Path(deployment.env["EXCHANGE_HOME"])
    batches = _lake_batches(home)
    # The scheduled run and the triggered run cover the same data interval: one batch per dataset, not two.
    assert sorted(b["dataset"] for b in batches) == ["e_license", "enterprise_registration"]
    for b in batches:
        counts = b["counts"]
        assert counts["pulled"] == 600 and counts["pulled"] == counts["accepted"] + counts["quarantined"]
    _verify(deployment.env)


def _verify(env: dict[str, str]) -> None:
    out = subprocess.run([str(BIN / "exchange"), "verify"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_scheduler_killed_mid_run_resumes_without_duplicates(deployment: Deployment) -> None:
    dag_id = "exchange_jiangsu"
    seed_jiangsu(Path(deployment.env["EXCHANGE_HOME"]), *_recent_window(), n=3000)
    _wait_parsed(deployment, dag_id)
    deployment.airflow("dags", "unpause", dag_id)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(r["state"] == "running" for r in deployment.runs(dag_id)):
        time.sleep(2)
    deployment.stop("scheduler", signal.SIGKILL)  # no clean shutdown: as if the host lost the process
    time.sleep(5)
    deployment.start("scheduler")
    runs = deployment.wait_for(dag_id, {"success", "failed"}, timeout=480)
    assert {r["state"] for r in runs} == {"success"}, runs
    batches = _lake_batches(Path(deployment.env["EXCHANGE_HOME"]))
    assert sorted(b["dataset"] for b in batches) == ["e_license", "enterprise_registration"]
    assert all(b["counts"]["pulled"] == 3000 for b in batches)
    _verify(deployment.env)


def _lake_tables(home: Path) -> dict[str, list[dict[str, object]]]:
    from exchange.config import ExchangeSettings
    from exchange.lake.connect import LAKE, connect

    tables = {}
    with connect(ExchangeSettings(home=home), read_only=True) as con:
        for table in ("e_license", "enterprise_registration", "quarantine", "exchange_batches"):
            rows = con.execute(f"SELECT * FROM {LAKE}.{table}").to_arrow_table().to_pylist()
            tables[table] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return tables


def test_backfill_yields_the_lake_scheduled_runs_would_have(deployment: Deployment, tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    from exchange.config import ExchangeSettings
    from exchange.pipeline import Hub, run_exchange

    tz = ZoneInfo("Asia/Shanghai")
    start, end = datetime(2026, 11, 10, tzinfo=tz), datetime(2026, 11, 14, tzinfo=tz)
    home = Path(deployment.env["EXCHANGE_HOME"])
    dag_id = "exchange_jiangsu"
    _wait_parsed(deployment, dag_id)
    # Backfills run only for unpaused DAGs; unpausing first schedules the latest interval, which finds the
    # province's drop still empty and commits nothing.
    (home / "sandboxes" / "jiangsu" / "drop").mkdir(parents=True)
    deployment.airflow("dags", "unpause", dag_id)
    deployment.wait_for(dag_id, {"success", "failed"}, timeout=300)
    seed_jiangsu(home, start, end, n=1200)
    deployment.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", "2026-11-10",
                       "--to-date", "2026-11-13", "--max-active-runs", "1")
    runs = deployment.wait_for(dag_id, {"success", "failed"}, timeout=600)
    assert {r["state"] for r in runs} == {"success"} and len(runs) >= 4, runs
    runs = [r for r in runs if datetime.fromisoformat(r["logical_date"]) < end]

    # The same intervals, one after the other, as the scheduler would have run them day by day.
    reference = tmp_path / "reference"
    seed_jiangsu(reference, start, end, n=1200)
    hub = Hub(ExchangeSettings(home=reference, jiangsu_drop_dir=reference / "sandboxes" / "jiangsu" / "drop"))
    for run in sorted(runs, key=lambda r: r["logical_date"]):
        interval_start = datetime.fromisoformat(run["logical_date"])
        for dataset in ("e_license", "enterprise_registration"):
            run_exchange("jiangsu", dataset, interval_start, interval_start + timedelta(days=1), hub)
    assert _lake_tables(home) == _lake_tables(reference)
    _verify(deployment.env)
