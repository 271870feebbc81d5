"""Dataset ordering, the lake-commit pool and deadlines, as province.yaml declares them and the factory builds."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from exchange.airflow.errors import dataset_of, province_of, record_deadline_miss, record_failure
from exchange.airflow.factory import deadline_alert, province_dag
from exchange.airflow.pools import LAKE_COMMIT_POOL, PoolSettings, lake_commit_slots
from exchange.config import ExchangeSettings
from exchange.datasets import PROVINCES
from exchange.province_config import ProvinceConfig, format_duration, load_province, parse_duration

BASE = {"province": "jiangsu", "name": "江苏", "schedule": "0 2 * * *", "start_date": "2026-11-01",
        "datasets": ["e_license", "enterprise_registration", "administrative_penalty"]}


def _config(**extra: object) -> ProvinceConfig:
    return ProvinceConfig.model_validate({**BASE, **extra})


@pytest.mark.parametrize("province", PROVINCES)
def test_penalties_start_after_registrations_commit_and_the_rest_run_in_parallel(province: str) -> None:
    dag = province_dag(province)
    cfg = load_province(province)
    assert cfg.depends_on == {"administrative_penalty": ["enterprise_registration"]}
    pull = dag.task_dict["pull_administrative_penalty"]
    assert pull.upstream_task_ids == {"commit_enterprise_registration"}
    # A registration commit skipped for want of new rows must not skip the penalties; a failed one must.
    assert pull.trigger_rule == "none_failed"
    for dataset in cfg.datasets:
        if dataset != "administrative_penalty":
            assert dag.task_dict[f"pull_{dataset}"].upstream_task_ids == set(), dataset
            assert dag.task_dict[f"pull_{dataset}"].trigger_rule == "all_success"
    assert "administrative_penalty starts after enterprise_registration committed" in (dag.doc_md or "")


def test_ordering_is_read_from_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "jiangsu").mkdir()
    (tmp_path / "jiangsu" / "province.yaml").write_text(yaml.safe_dump(
        {**BASE, "depends_on": {"e_license": ["enterprise_registration", "administrative_penalty"]}}))
    cfg = load_province("jiangsu", tmp_path)
    assert cfg.depends_on == {"e_license": ["enterprise_registration", "administrative_penalty"]}
    assert _config().depends_on == {}


@pytest.mark.parametrize(("depends_on", "message"), [
    ({"administrative_penalty": ["enterprise_registrations"]},
     "'enterprise_registrations' is not one of this province's datasets"),
    ({"provident_fund_transfer": ["e_license"]}, "'provident_fund_transfer' is not one of this province's datasets"),
    ({"e_license": ["e_license"]}, "cycle: e_license -> e_license"),
    ({"e_license": ["administrative_penalty"], "administrative_penalty": ["enterprise_registration"],
      "enterprise_registration": ["e_license"]}, "cycle: e_license -> administrative_penalty -> "
                                                 "enterprise_registration -> e_license"),
])
def test_unknown_datasets_and_cycles_are_refused_with_a_clear_error(depends_on: dict[str, list[str]],
                                                                    message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        _config(depends_on=depends_on)
    assert "province.yaml depends_on" in str(err.value)


@pytest.mark.parametrize("province", PROVINCES)
def test_commits_and_only_commits_take_a_lake_commit_pool_slot(province: str) -> None:
    dag = province_dag(province)
    for task in dag.tasks:
        assert (task.pool == LAKE_COMMIT_POOL) == task.task_id.startswith("commit_"), task.task_id


def test_pool_size_follows_the_catalog_unless_the_operator_sets_it() -> None:
    assert lake_commit_slots(ExchangeSettings(), PoolSettings()) == 1
    assert lake_commit_slots(ExchangeSettings(lake_catalog="catalog.ducklake"), PoolSettings()) == 1
    assert lake_commit_slots(ExchangeSettings(lake_catalog="postgres:dbname=lake"), PoolSettings()) == 4
    assert lake_commit_slots(ExchangeSettings(), PoolSettings(lake_commit_slots=2)) == 2


def test_pool_size_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_LAKE_COMMIT_SLOTS", "3")
    assert lake_commit_slots(ExchangeSettings()) == 3
    monkeypatch.setenv("EXCHANGE_LAKE_COMMIT_SLOTS", "0")
    with pytest.raises(ValidationError):
        lake_commit_slots(ExchangeSettings())


@pytest.mark.parametrize(("text", "minutes"), [("2h", 120), ("90m", 90), ("1h30m", 90), ("45min", 45)])
def test_deadlines_are_written_as_hours_and_minutes(text: str, minutes: int) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)
    assert parse_duration(format_duration(timedelta(minutes=minutes))) == timedelta(minutes=minutes)
    assert _config(deadline=text).deadline == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["2", "soon", "2d", "0m"])
def test_a_malformed_or_empty_deadline_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="duration|deadline must be positive"):
        _config(deadline=text)


@pytest.mark.parametrize("province", PROVINCES)
def test_the_deadline_is_measured_from_the_end_of_the_data_interval(province: str) -> None:
    cfg = load_province(province)
    assert cfg.deadline == timedelta(hours=2)
    alerts = province_dag(province).deadline
    assert isinstance(alerts, list) and len(alerts) == 1
    alert = alerts[0]
    # Measured from the data interval's end (the hub's own reference), so the UI shows "2 hours of ...".
    assert alert.reference.reference_name == "数据区间结束 data interval end"
    assert alert.interval == timedelta(hours=2)
    assert alert.callback.path == "exchange.airflow.errors.record_deadline_miss"
    assert alert.callback.kwargs == {"province": province, "deadline": "2h"}


def test_an_irregular_schedule_is_measured_from_its_interval_end_too() -> None:
    alert = deadline_alert(_config(schedule="0 1 * * 1-5", deadline="2h"))  # Friday's interval runs to Monday
    assert alert is not None and alert.reference.reference_name == "数据区间结束 data interval end"
    assert alert.interval == timedelta(hours=2)
    assert deadline_alert(_config()) is None


def test_the_deadline_reference_survives_airflows_serialization() -> None:
    """What the dag-processor stores and the scheduler and UI read back: the reference and its class path."""
    from airflow.serialization.encoders import encode_deadline_reference

    from exchange.airflow.deadlines import DATA_INTERVAL_END, DataIntervalEndDeadline
    from exchange.airflow.ui_plugin import ExchangeUiPlugin

    encoded = encode_deadline_reference(DATA_INTERVAL_END)
    assert encoded == {"reference_type": "数据区间结束 data interval end",
                       "__class_path": "exchange.airflow.deadlines.DataIntervalEndDeadline"}
    assert DataIntervalEndDeadline in ExchangeUiPlugin.deadline_references  # how the scheduler finds the class
    assert DataIntervalEndDeadline.required_kwargs == {"dag_id", "run_id"}


def _airflow_context(run_type: str) -> dict[str, object]:
    # The shape Airflow's scheduler passes (Deadline.handle_miss: the run as DAGRunResponse JSON).
    return {"dag_run": {"dag_id": "exchange_jiangsu", "dag_run_id": f"{run_type}__2026-11-09T18:00:00+00:00",
                        "run_type": run_type, "state": "running",
                        "data_interval_start": "2026-11-09T18:00:00Z", "data_interval_end": "2026-11-10T18:00:00Z"},
            "deadline": {"id": "d1", "deadline_time": "2026-11-10T20:00:00+00:00"}}


def test_a_missed_deadline_writes_an_alert_naming_province_dag_interval_and_lateness(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = record_deadline_miss(province="jiangsu", deadline="2h", context=_airflow_context("scheduled"),
                                now=datetime(2026, 11, 10, 20, 45, tzinfo=UTC))
    assert path is not None and path.parent == home.resolve() / "reports" / "alerts"
    alert = json.loads(path.read_text(encoding="utf-8"))
    assert alert["province"] == "jiangsu" and alert["dag_id"] == "exchange_jiangsu"
    assert alert["data_interval_end"] == "2026-11-10T18:00:00Z"
    assert alert["deadline"] == "2h after the data interval end"
    assert alert["late_by_minutes"] == 45.0
    assert "missed its deadline" in alert["summary"] and "late by 45.0 min" in caplog.text


def test_a_backfill_run_is_late_by_construction_and_raises_no_alert(home: Path) -> None:
    assert record_deadline_miss(province="jiangsu", deadline="2h", context=_airflow_context("backfill")) is None
    assert not (home / "reports" / "alerts").exists()


class _TI:
    dag_id, task_id, run_id, try_number = "exchange_anhui", "commit_administrative_penalty", "scheduled__x", 2


def test_a_failure_summary_names_province_dataset_interval_and_error(home: Path) -> None:
    path = record_failure({"ti": _TI(), "exception": ValueError("boom"),
                           "data_interval_start": date(2026, 11, 9), "data_interval_end": date(2026, 11, 10)})
    summary = json.loads(path.read_text(encoding="utf-8"))
    assert summary["province"] == "anhui" and summary["dataset"] == "administrative_penalty"
    assert summary["error"] == "ValueError: boom" and summary["try_number"] == 2
    assert summary["data_interval_start"] == "2026-11-09"
    assert (province_of("exchange_publish"), dataset_of("refresh_standing_extracts")) == (None, None)


def test_a_failed_task_closes_its_batch_lineage_run_with_fail(home: Path) -> None:
    from exchange import lineage
    from exchange.config import settings

    start, end = datetime(2026, 11, 9, 16, tzinfo=UTC), datetime(2026, 11, 10, 16, tzinfo=UTC)
    record_failure({"ti": _TI(), "exception": ValueError("boom"), "data_interval_start": start,
                    "data_interval_end": end})
    (event,) = [json.loads(line) for line in lineage.events_file(settings()).read_text().splitlines()]
    assert event["eventType"] == "FAIL" and event["job"]["name"] == "exchange_anhui.administrative_penalty"
    assert event["run"]["facets"]["errorMessage"]["message"] == "ValueError: boom"


BAD_CRONS = ["0 2 * *", "61 * * * *", "0 25 * * *", "every day", "0 2 * * 8"]


@pytest.mark.parametrize("cron", BAD_CRONS)
def test_a_bad_cron_is_refused_naming_province_yaml_not_the_dag_file(cron: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """F9: the error names adapters/<p>/province.yaml and its field, wherever the config is read."""
    from exchange.province_config import ProvinceConfigError

    adapters = tmp_path / "adapters"
    (adapters / "jiangsu").mkdir(parents=True)
    (adapters / "jiangsu" / "province.yaml").write_text(yaml.safe_dump({**BASE, "schedule": cron}))
    with pytest.raises(ProvinceConfigError, match=r"^adapters/jiangsu/province\.yaml: schedule: .* not a cron"):
        load_province("jiangsu", adapters)
    monkeypatch.setattr("exchange.airflow.factory.load_province", lambda p: load_province(p, adapters))
    with pytest.raises(ProvinceConfigError, match=r"adapters/jiangsu/province\.yaml: schedule"):
        province_dag("jiangsu")


@pytest.mark.parametrize("cron", BAD_CRONS)
def test_backfill_dry_run_reads_the_current_schedule_and_refuses_a_bad_one(cron: str, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """F9: before, Airflow kept the previously serialized schedule and the dry run listed its intervals."""
    from typer.testing import CliRunner

    from exchange.cli import app

    adapters = tmp_path / "adapters"
    (adapters / "jiangsu").mkdir(parents=True)
    (adapters / "jiangsu" / "province.yaml").write_text(yaml.safe_dump({**BASE, "schedule": cron}))
    monkeypatch.setattr("exchange.province_config.ADAPTERS_DIR", adapters)
    monkeypatch.setattr("exchange.province_config.load_province.__defaults__", (adapters,))

    def no_airflow(*_: object) -> str:
        raise AssertionError("airflow must not run")

    monkeypatch.setattr("exchange.cli.backfill.run_airflow", no_airflow)
    result = CliRunner().invoke(app, ["backfill", "--province", "jiangsu", "--start", "2026-11-10",
                                      "--end", "2026-11-12", "--dry-run"])
    assert result.exit_code == 2
    assert "adapters/jiangsu/province.yaml: schedule" in " ".join(result.output.replace("│", "").split())


@pytest.mark.parametrize(("cron", "intervals"), [("0 2 * * *", 3), ("0 */6 * * *", 12), ("30 1 * * 6,0", 0)])
def test_backfill_dry_run_lists_the_intervals_of_the_current_schedule(
    cron: str, intervals: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F9: the dry run says what province.yaml's schedule gives now, not only what Airflow serialized before."""
    from typer.testing import CliRunner

    from exchange.cli import app

    adapters = tmp_path / "adapters"
    (adapters / "jiangsu").mkdir(parents=True)
    (adapters / "jiangsu" / "province.yaml").write_text(yaml.safe_dump({**BASE, "schedule": cron}))
    monkeypatch.setattr("exchange.province_config.load_province.__defaults__", (adapters,))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))  # an operator's deployment: nothing prepared
    monkeypatch.setenv("EXCHANGE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("exchange.cli.backfill.run_airflow", lambda args, env: "airflow: dry run\n")
    # 2026-11-10 (Tuesday) .. 2026-11-12 (Thursday) in Asia/Shanghai
    result = CliRunner().invoke(app, ["backfill", "--province", "jiangsu", "--start", "2026-11-10",
                                      "--end", "2026-11-12", "--dry-run"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"adapters/jiangsu/province.yaml schedule '{cron}' (Asia/Shanghai): {intervals} interval(s)" in text
