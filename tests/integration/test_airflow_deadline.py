"""A real Airflow deployment: a province run still in flight at its deadline raises the hub's alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.airflow_deployment import Deployment, seed_jiangsu
from tests.integration.airflow_deployment import recent_window as _recent_window
from tests.integration.airflow_deployment import verify as _verify
from tests.integration.airflow_deployment import wait_parsed as _wait_parsed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DUE_AFTER = 20  # seconds from the trigger to the deadline (doubled on a machine too slow to trigger in time)


def test_a_run_still_in_flight_at_its_deadline_raises_the_alert(deployment: Deployment) -> None:
    """The real Deadline Alert of province.yaml (2h after the data interval ends), missed by a real run.

    The run is held in flight by giving the commit pool no slot; it is triggered through the REST API with a
    data interval whose end is chosen so that its deadline (interval end + 2h) falls `DUE_AFTER` seconds after
    the trigger, once the run exists. The scheduler notices the miss, the executor runs the hub's callback, and
    the alert names the run. Then the pool opens and the run finishes as usual.
    """
    from exchange.province_config import load_province

    dag_id = "exchange_jiangsu"
    cfg = load_province("jiangsu")
    assert cfg.deadline is not None
    home = Path(deployment.env["EXCHANGE_HOME"])
    seed_jiangsu(home, *_recent_window())
    deployment.commit_slots(0, "held: no commit may start")
    _wait_parsed(deployment, dag_id)
    due_after = DUE_AFTER
    while True:
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=due_after)
        end = due - cfg.deadline
        run_id = f"deadline_test_{end:%Y%m%dT%H%M%S}"
        body = {"dag_run_id": run_id, "logical_date": (end - timedelta(days=1)).isoformat(),
                "data_interval_start": (end - timedelta(days=1)).isoformat(), "data_interval_end": end.isoformat()}
        deployment.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if datetime.now(UTC) < due:  # the run (and its deadline's record) existed before the deadline
            break
        # A machine too slow for this margin: that run proves nothing; drop it and give the next one longer.
        deployment.api("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        due_after = max(2 * due_after, 1)
        assert due_after <= 640, "triggering a run takes minutes: hung"
    deployment.unpause(dag_id)
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
    deployment.commit_slots(1)
    runs = deployment.wait_for(dag_id, {"success", "failed"}, timeout=900)
    assert {r["state"] for r in runs} == {"success"}, runs
    _verify(deployment.env)

