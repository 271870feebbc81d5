"""A real Airflow deployment: PostgreSQL metadata DB, LocalExecutor, scheduler + dag-processor + api-server.

The test starts every process it needs, triggers the Jiangsu DAG with `airflow dags trigger`, waits for
success, checks the lake, and stops everything it started (and drops its database). The scheduler's other
scenarios on the same kind of deployment (the `deployment` fixture, tests/integration/conftest.py) each have
a file of their own, so `make test`'s workers (one file each, --dist loadfile) run them side by side:
test_airflow_scheduler_kill.py, test_airflow_deadline.py, test_airflow_backfill.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.airflow.preload import TASK_MODULES
from tests.integration.airflow_deployment import Deployment, seed_jiangsu
from tests.integration.airflow_deployment import lake_batches as _lake_batches
from tests.integration.airflow_deployment import recent_window as _recent_window
from tests.integration.airflow_deployment import verify as _verify
from tests.integration.airflow_deployment import wait_parsed as _wait_parsed

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_triggered_province_dag_runs_on_a_real_scheduler(deployment: Deployment) -> None:
    dag_id = "exchange_jiangsu"
    seed_jiangsu(Path(deployment.env["EXCHANGE_HOME"]), *_recent_window())
    _wait_parsed(deployment, dag_id)
    deployment.unpause(dag_id)
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
    # The scheduler imported what the tasks import once, before forking its workers (exchange/airflow/preload.py).
    log = (deployment.tmp / "scheduler.log").read_text(errors="replace")
    assert f"preloaded {len(TASK_MODULES)} task modules for the LocalExecutor's forks" in log
