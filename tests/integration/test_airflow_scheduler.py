"""A real Airflow deployment: PostgreSQL metadata DB, LocalExecutor, scheduler + dag-processor + api-server.

The test starts every process it needs, triggers the Jiangsu DAG with `airflow dags trigger`, waits for
success, checks the lake, and stops everything it started (and drops its database).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.airflow_deployment import Deployment, deployed, seed_jiangsu
from tests.integration.airflow_deployment import lake_batches as _lake_batches
from tests.integration.airflow_deployment import recent_window as _recent_window
from tests.integration.airflow_deployment import verify as _verify
from tests.integration.airflow_deployment import wait_parsed as _wait_parsed

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with deployed(tmp_path) as dep:
        yield dep


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


def test_a_scheduler_killed_mid_run_resumes_without_duplicates(deployment: Deployment) -> None:
    dag_id = "exchange_jiangsu"
    seed_jiangsu(Path(deployment.env["EXCHANGE_HOME"]), *_recent_window(), n=3000)
    _wait_parsed(deployment, dag_id)
    deployment.airflow("dags", "unpause", dag_id)
    # Evidence first: a task instance of the run is executing right now (read from the metadata DB, polled
    # every 50 ms), and only then the kill; the states seen at that moment are kept to check the claim.
    seen: dict[tuple[str, str], str] = {}

    def a_task_is_running() -> bool:
        seen.clear()
        seen.update(deployment.task_states(dag_id))
        return "running" in seen.values()

    deployment.wait_until("a running task of the scheduled run", a_task_is_running, timeout=600, poll=0.05)
    deployment.stop("scheduler", signal.SIGKILL)  # no clean shutdown: as if the host lost the process
    running = sorted(task for (_, task), state in seen.items() if state == "running")
    assert running and not {"success", "skipped"} >= set(seen.values()), seen  # the run was in flight
    deployment.start("scheduler")
    runs = deployment.wait_for(dag_id, {"success", "failed"}, timeout=900)
    assert {r["state"] for r in runs} == {"success"}, runs
    batches = _lake_batches(Path(deployment.env["EXCHANGE_HOME"]))
    assert sorted(b["dataset"] for b in batches) == ["e_license", "enterprise_registration"]
    assert all(b["counts"]["pulled"] == 3000 for b in batches)
    _verify(deployment.env)


def test_a_run_still_in_flight_at_its_deadline_raises_the_alert(deployment: Deployment) -> None:
    """The real Deadline Alert of province.yaml (2h after the data interval ends), missed by a real run.

    The run is held in flight by giving the commit pool no slot; it is triggered through the REST API with a
    data interval whose end is chosen so that its deadline (interval end + 2h) falls a minute after the
    trigger. The scheduler notices the miss, the executor runs the hub's callback, and the alert names the
    run. Then the pool opens and the run finishes as usual.
    """
    import httpx

    from exchange.province_config import load_province

    dag_id = "exchange_jiangsu"
    cfg = load_province("jiangsu")
    assert cfg.deadline is not None
    home = Path(deployment.env["EXCHANGE_HOME"])
    seed_jiangsu(home, *_recent_window())
    deployment.airflow("pools", "set", "lake_commits", "0", "held: no commit may start")
    _wait_parsed(deployment, dag_id)
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=60)
    end = due - cfg.deadline
    run_id = f"deadline_test_{end:%Y%m%dT%H%M%S}"
    api = deployment.env["AIRFLOW__API__BASE_URL"]
    deployment.wait_until("the api-server", lambda: _answers(api), timeout=300, poll=1)
    token = httpx.get(f"{api}/auth/token", timeout=30).json()["access_token"]  # all users are admins here
    body = {"dag_run_id": run_id, "logical_date": (end - timedelta(days=1)).isoformat(),
            "data_interval_start": (end - timedelta(days=1)).isoformat(), "data_interval_end": end.isoformat()}
    response = httpx.post(f"{api}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    deployment.airflow("dags", "unpause", dag_id)
    alert = home / "reports" / "alerts" / f"{dag_id}.{run_id}.deadline.json"
    deployment.wait_until(f"the deadline alert of {run_id}", alert.exists, timeout=600, poll=1)
    summary = json.loads(alert.read_text())
    assert (summary["province"], summary["dag_id"], summary["run_id"]) == ("jiangsu", dag_id, run_id)
    assert summary["run_type"] == "manual" and summary["state"] in {"queued", "running"}, summary
    assert summary["deadline"] == "2h after the data interval end"
    assert datetime.fromisoformat(summary["deadline_time"]) == due
    assert datetime.fromisoformat(summary["noticed_at"]) >= due and summary["late_by_minutes"] >= 0
    assert summary["summary"].startswith(f"jiangsu: {dag_id} run {run_id} for [") and "missed its deadline" in \
        summary["summary"]
    # The run really was unfinished when the alert was written: it finishes only once commits may start.
    assert {r["state"] for r in deployment.runs(dag_id) if r["run_id"] == run_id} <= {"queued", "running"}
    deployment.airflow("pools", "set", "lake_commits", "1", "lake commits")
    runs = deployment.wait_for(dag_id, {"success", "failed"}, timeout=900)
    assert {r["state"] for r in runs} == {"success"}, runs
    _verify(deployment.env)


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


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
    from exchange.hub import Hub
    from exchange.pipeline import run_exchange

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
