"""Build one exchange DAG per province from its province.yaml.

Parsing a DAG file imports only this module, Airflow and PyYAML: the pipeline, drivers, GX and DuckDB
are imported inside the tasks, and nothing touches a database or a connection at parse time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, dag, task
from airflow.sdk.exceptions import AirflowSkipException
from airflow.timetables.interval import CronDataIntervalTimetable

from exchange.airflow.errors import record_failure, run_stage
from exchange.province_config import load_province

log = logging.getLogger(__name__)


def lake_asset(dataset: str) -> Asset:
    """The Airflow Asset of one lake table: a commit to it is an Asset event."""
    return Asset(name=f"lake.{dataset}", uri=f"ducklake://lake/{dataset}")


def province_dag(province: str) -> DAG:
    """The DAG `exchange_<province>`: for each dataset, pull -> validate -> commit, datasets in parallel."""
    cfg = load_province(province)
    tz = pendulum.timezone(cfg.timezone)

    @dag(
        dag_id=f"exchange_{province}",
        description=f"Pull {cfg.name}'s datasets, check them against their contracts, commit them to the lake",
        schedule=CronDataIntervalTimetable(cfg.schedule, timezone=tz),
        start_date=pendulum.datetime(cfg.start_date.year, cfg.start_date.month, cfg.start_date.day, tz=tz),
        catchup=False,
        max_active_runs=1,
        tags=["exchange", province],
        default_args={"retries": cfg.retries, "retry_delay": timedelta(minutes=cfg.retry_delay_minutes),
                      "on_failure_callback": record_failure},
    )
    def exchange_province() -> None:
        for dataset in cfg.datasets:
            _dataset_chain(province, dataset, cfg.connection)

    built: DAG = exchange_province()
    built.doc_md = (
        f"**{cfg.name}** exchange. Each dataset ({', '.join(cfg.datasets)}) runs pull -> validate -> commit "
        "for the run's data interval; re-running an interval is a no-op."
    )
    return built


def _dataset_chain(province: str, dataset: str, connection_id: str) -> None:
    @task(task_id=f"pull_{dataset}")
    def pull(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None) -> dict[str, Any]:
        from exchange.airflow.connections import settings_overrides
        from exchange.config import ExchangeSettings
        from exchange.pipeline import Hub
        from exchange.pipeline import pull as pull_stage

        assert data_interval_start is not None and data_interval_end is not None
        hub = Hub(ExchangeSettings(**settings_overrides(province, connection_id)))
        log.info("pull %s %s for [%s, %s)", province, dataset, data_interval_start, data_interval_end)
        return run_stage(pull_stage, province, dataset, data_interval_start, data_interval_end, hub)

    @task(task_id=f"validate_{dataset}")
    def validate(pulled: dict[str, Any]) -> dict[str, Any]:
        from exchange.pipeline import validate as validate_stage

        if pulled["status"] != "pulled":
            return pulled
        return run_stage(validate_stage, pulled["batch_id"])

    @task(task_id=f"commit_{dataset}", outlets=[lake_asset(dataset)])
    def commit(checked: dict[str, Any]) -> dict[str, Any]:
        from exchange.pipeline import commit as commit_stage

        if checked.get("status") in ("empty", "already_committed"):
            # Skipped, not succeeded: no Asset event, so publishing only reacts to real new snapshots.
            raise AirflowSkipException(f"nothing new to commit for {checked['batch_id']}: {checked['status']}")
        result = run_stage(commit_stage, checked["batch_id"])
        if result["status"] != "committed":
            raise AirflowSkipException(f"{checked['batch_id']} was committed by an earlier attempt")
        log.info("committed %s: pulled %s, accepted %s, quarantined %s, snapshot %s", result["batch_id"],
                 result["pulled"], result["accepted"], result["quarantined"], result["snapshot_id"])
        return result

    # TaskFlow calls return XComArgs at parse time; Airflow resolves them to the dicts at run time.
    commit(validate(pull()))  # type: ignore[arg-type]
