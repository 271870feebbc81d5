"""A real Airflow deployment: `airflow backfill` yields the same lake as the scheduled runs would have."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.airflow_deployment import Deployment, seed_jiangsu
from tests.integration.airflow_deployment import verify as _verify
from tests.integration.airflow_deployment import wait_parsed as _wait_parsed

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    deployment.unpause(dag_id)
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
