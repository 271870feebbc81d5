"""Build one exchange DAG per province from its province.yaml.

Parsing a DAG file imports only this module, Airflow and PyYAML: the pipeline, drivers, GX and DuckDB
are imported inside the tasks, and nothing touches a database or a connection at parse time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, TaskGroup, TriggerRule, dag, task
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert
from airflow.sdk.exceptions import AirflowSkipException
from airflow.timetables.interval import CronDataIntervalTimetable

from exchange.airflow.deadlines import DATA_INTERVAL_END
from exchange.airflow.display import dag_display_name, dag_doc, deadline_text, group_display_name, task_display_name
from exchange.airflow.errors import record_deadline_miss, record_failure, run_stage
from exchange.airflow.pools import LAKE_COMMIT_POOL
from exchange.province_config import ProvinceConfig, format_duration, load_province

log = logging.getLogger(__name__)


def lake_asset(dataset: str) -> Asset:
    """The Airflow Asset of one lake table: a commit to it is an Asset event."""
    return Asset(name=f"lake.{dataset}", uri=f"ducklake://lake/{dataset}")


def province_dag(province: str) -> DAG:
    """The DAG `exchange_<province>`: for each dataset, pull -> validate -> commit.

    Datasets run in parallel except where province.yaml's `depends_on` orders them; commits share the
    `lake_commits` pool; `deadline` becomes a Deadline Alert.
    """
    cfg = load_province(province)
    tz = pendulum.timezone(cfg.timezone)
    start = pendulum.datetime(cfg.start_date.year, cfg.start_date.month, cfg.start_date.day, tz=tz)

    @dag(
        dag_id=f"exchange_{province}",
        dag_display_name=dag_display_name(province),
        description=f"{cfg.name}: 拉取、校验、入湖 · pull, check against the contracts, commit to the lake",
        schedule=CronDataIntervalTimetable(cfg.schedule, timezone=tz),
        start_date=start,
        catchup=False,
        max_active_runs=1,
        tags=["exchange", province, "数据交换"],
        # The office that answers for the exchange, as the grid's owner column shows it.
        default_args={"owner": cfg.name, "retries": cfg.retries,
                      "retry_delay": timedelta(minutes=cfg.retry_delay_minutes),
                      "on_failure_callback": record_failure},
        deadline=deadline_alert(cfg),
        doc_md=dag_doc(cfg),
    )
    def exchange_province() -> None:
        chains = {}
        for dataset in cfg.datasets:
            # One group per dataset so the grid reads by dataset; task ids stay `pull_<dataset>` (no prefix),
            # which failure summaries, backfills and the lake's batch ids are keyed by.
            with TaskGroup(group_id=dataset, prefix_group_id=False, group_display_name=group_display_name(dataset)):
                chains[dataset] = _dataset_chain(province, dataset, cfg.connection,
                                                 bool(cfg.depends_on.get(dataset)))
        for dataset, upstream in cfg.depends_on.items():
            for name in upstream:
                chains[name][1] >> chains[dataset][0]

    built: DAG = exchange_province()
    return built


def asset_extra(commit: dict[str, Any]) -> dict[str, Any]:
    """The `extra` of a lake table's Asset event: the batch, its snapshot, counts and manifest digest."""
    return {"batch_id": commit["batch_id"], "snapshot_id": commit["snapshot_id"],
            "counts": {k: commit[k] for k in ("pulled", "accepted", "quarantined")},
            "manifest_sha256": commit["manifest_sha256"]}


def _report_path(province: str, batch_id: str) -> str:
    from exchange.config import Layout, settings
    from exchange.report.rejections import html_path

    return str(html_path(Layout(settings().home).reports, province, batch_id))


def deadline_alert(cfg: ProvinceConfig) -> DeadlineAlert | None:
    """The province's `deadline` as a Deadline Alert measured from the end of the run's data interval.

    The reference is the hub's own (exchange/airflow/deadlines.py): Airflow 3.3 has none for the interval end.
    """
    if cfg.deadline is None:
        return None
    text = deadline_text(cfg)
    assert text is not None
    return DeadlineAlert(
        reference=DATA_INTERVAL_END,
        interval=cfg.deadline,
        callback=SyncCallback(record_deadline_miss,
                              kwargs={"province": cfg.province, "deadline": format_duration(cfg.deadline)}),
        # The UI shows "within 2 hours of <reference>" and then this name: the deadline as province.yaml has it.
        name=f"{text[0]} · {text[1]}",
    )


def _dataset_chain(province: str, dataset: str, connection_id: str,
                   has_upstream: bool) -> tuple[Any, Any]:
    """pull -> validate -> commit for one dataset; returns (pull, commit) so datasets can be ordered."""
    where = f"province={province} dataset={dataset}"

    # An upstream dataset's commit is skipped when its interval brought nothing new; that must not skip
    # this chain, but an upstream failure must stop it (its records could reference unregistered entities).
    @task(task_id=f"pull_{dataset}", task_display_name=task_display_name(dataset, "pull"),
          trigger_rule=TriggerRule.NONE_FAILED if has_upstream else TriggerRule.ALL_SUCCESS)
    def pull(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None) -> dict[str, Any]:
        from exchange.airflow.connections import settings_overrides
        from exchange.config import ExchangeSettings
        from exchange.hub import Hub
        from exchange.pipeline import pull as pull_stage

        assert data_interval_start is not None and data_interval_end is not None
        hub = Hub(ExchangeSettings(**settings_overrides(province, connection_id)))
        log.info("pull %s window=[%s, %s)", where, data_interval_start, data_interval_end)
        result = run_stage(pull_stage, province, dataset, data_interval_start, data_interval_end, hub)
        log.info("pulled %s window=[%s, %s): batch %s, %s, pulled=%s", where, data_interval_start, data_interval_end,
                 result.batch_id, result.status, result.pulled)
        return result.model_dump(mode="json")  # XCom holds JSON; the next task reads it back as the record

    @task(task_id=f"validate_{dataset}", task_display_name=task_display_name(dataset, "validate"))
    def validate(pulled: dict[str, Any], data_interval_start: datetime | None = None,
                 data_interval_end: datetime | None = None) -> dict[str, Any]:
        from exchange.pipeline import validate as validate_stage
        from exchange.stages import PullResult

        pull_result = PullResult.model_validate(pulled)
        if pull_result.status != "pulled":
            log.info("validate %s window=[%s, %s): nothing to check (%s)", where, data_interval_start,
                     data_interval_end, pull_result.status)
            return pulled
        result = run_stage(validate_stage, pull_result.batch_id)
        log.info("validated %s window=[%s, %s): batch %s, pulled=%s accepted=%s quarantined=%s warned=%s held=%s",
                 where, data_interval_start, data_interval_end, result.batch_id, result.pulled, result.accepted,
                 result.quarantined, result.warned, result.held)
        for rule in result.rules:
            if rule.unexpected:
                log.info("rule %s (%s): %s record(s)", rule.rule_id, rule.severity, rule.unexpected)
        log.info("rejection report: %s", _report_path(province, result.batch_id))
        return result.model_dump(mode="json")

    @task(task_id=f"commit_{dataset}", task_display_name=task_display_name(dataset, "commit"),
          outlets=[lake_asset(dataset)], pool=LAKE_COMMIT_POOL)
    def commit(checked: dict[str, Any], data_interval_start: datetime | None = None,
               data_interval_end: datetime | None = None, outlet_events: Any = None) -> dict[str, Any]:
        from exchange.pipeline import commit as commit_stage
        from exchange.stages import PullResult, ValidationRecord

        # validate hands on its verdict, or the pull's result when there was nothing to check.
        if "status" in checked:
            skipped = PullResult.model_validate(checked)
            # Skipped, not succeeded: no Asset event, so publishing only reacts to real new snapshots.
            raise AirflowSkipException(f"nothing new to commit for {where} window=[{data_interval_start}, "
                                       f"{data_interval_end}) ({skipped.batch_id}: {skipped.status})")
        batch_id = ValidationRecord.model_validate(checked).batch_id
        result = run_stage(commit_stage, batch_id)
        if result.status != "committed":
            raise AirflowSkipException(f"{batch_id} was committed by an earlier attempt")
        log.info("committed %s window=[%s, %s): batch %s, pulled=%s accepted=%s quarantined=%s snapshot=%s", where,
                 data_interval_start, data_interval_end, result.batch_id, result.pulled, result.accepted,
                 result.quarantined, result.snapshot_id)
        log.info("manifest %s sha256=%s; rejection report: %s", result.manifest, result.manifest_sha256,
                 _report_path(province, result.batch_id))
        if outlet_events is not None:
            # Who reads the lake's Asset event (the publish DAG, an office in the UI) sees which batch it was.
            outlet_events[lake_asset(dataset)].extra = asset_extra(result.model_dump(mode="json"))
        return result.model_dump(mode="json")

    # TaskFlow calls return XComArgs at parse time; Airflow resolves them to the dicts at run time.
    first = pull()
    last = commit(validate(first))  # type: ignore[arg-type]
    return first, last
