"""`exchange backfill`: argument handling, the airflow commands it runs, waiting and the report."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from exchange.cli import app
from exchange.cli.backfill import BackfillRange, Reprocess, backfill_runs, create_args, run_backfill, wait_for
from exchange.config import Layout

TZ = ZoneInfo("Asia/Shanghai")
RNG = BackfillRange("exchange_jiangsu", date(2026, 11, 10), date(2026, 11, 12), TZ)


def _run(logical: str, state: str, kind: str = "backfill") -> dict[str, str]:
    return {"run_id": f"{kind}__{logical}", "logical_date": logical, "state": state}


def test_the_range_covers_every_interval_starting_on_the_days_in_the_province_time_zone() -> None:
    assert RNG.from_date == datetime(2026, 11, 10, tzinfo=TZ)
    assert RNG.to_date == datetime(2026, 11, 13, tzinfo=TZ) - timedelta(seconds=1)
    assert create_args(RNG, 2, Reprocess.failed, dry_run=False) == [
        "backfill", "create", "--dag-id", "exchange_jiangsu", "--from-date", "2026-11-10T00:00:00+08:00",
        "--to-date", "2026-11-12T23:59:59+08:00", "--max-active-runs", "2", "--reprocess-behavior", "failed"]
    assert create_args(RNG, 1, Reprocess.none, dry_run=True)[-1] == "--dry-run"


def test_only_the_backfills_runs_in_the_range_are_watched() -> None:
    runs = [_run("2026-11-11T18:00:00+00:00", "running"), _run("2026-11-09T18:00:00+00:00", "success"),
            _run("2026-11-09T15:59:00+00:00", "success"),  # 23:59 on the 9th in Shanghai: before the range
            _run("2026-11-12T18:00:00+00:00", "queued"),  # the 13th in Shanghai: after it
            _run("2026-11-10T18:00:00+00:00", "success", kind="scheduled")]
    assert [r["logical_date"] for r in backfill_runs(runs, RNG)] == ["2026-11-09T18:00:00+00:00",
                                                                     "2026-11-11T18:00:00+00:00"]


@pytest.mark.parametrize(("args", "message"), [
    (["--province", "hubei", "--start", "2026-11-10", "--end", "2026-11-12"], "unknown province 'hubei'"),
    (["--province", "jiangsu", "--start", "2026-11-12", "--end", "2026-11-10"], "is before --start"),
    (["--province", "jiangsu", "--start", "2026-10-01", "--end", "2026-11-10"], "starts on 2026-11-01"),
    (["--province", "jiangsu", "--start", "10/11/2026", "--end", "2026-11-10"], "Invalid value for '--start'"),
    (["--province", "jiangsu", "--start", "2026-11-10", "--end", "2026-11-12", "--reprocess", "all"],
     "Invalid value for '--reprocess'"),
    (["--province", "jiangsu", "--start", "2026-11-10", "--end", "2026-11-12", "--max-active-runs", "0"],
     "Invalid value for '--max-active-runs'"),
])
def test_bad_arguments_are_refused_before_airflow_is_touched(args: list[str], message: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def no_airflow(*_: object) -> str:
        raise AssertionError("airflow must not run")

    monkeypatch.setattr("exchange.cli.backfill.run_airflow", no_airflow)
    result = CliRunner().invoke(app, ["backfill", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()).replace("│", "").replace("  ", " ")


class FakeAirflow:
    """Records the airflow commands; list-runs answers from a script of successive states."""

    def __init__(self, *polls: list[dict[str, str]]) -> None:
        self.calls: list[list[str]] = []
        self.polls = list(polls)

    def __call__(self, args: list[str], env: dict[str, str]) -> str:
        self.calls.append(args)
        if args[:2] == ["dags", "list-runs"]:
            import json

            return "some log line\n" + json.dumps(self.polls.pop(0) if len(self.polls) > 1 else self.polls[0])
        return "created\n"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Layout:
    """An operator's own Airflow deployment: the command must not prepare or start anything."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setattr("exchange.cli.backfill.POLL_SECONDS", 0.0)

    def no_prepare(*_: object) -> None:
        raise AssertionError("a configured deployment is not migrated by exchange backfill")

    monkeypatch.setattr("exchange.airflow.env.init_metadata_db", no_prepare)
    return Layout(tmp_path / "home")


def test_a_configured_deployment_gets_the_backfill_and_is_watched_until_done(configured: Layout) -> None:
    day1, day2 = "2026-11-09T18:00:00+00:00", "2026-11-10T18:00:00+00:00"
    airflow = FakeAirflow([], [_run(day1, "running"), _run(day2, "queued")],
                          [_run(day1, "success"), _run(day2, "success")])
    code = run_backfill(RNG, 1, Reprocess.none, False, True, 60, None, configured, airflow)
    assert code == 0
    assert airflow.calls[0][:2] == ["backfill", "create"]
    assert [c[:2] for c in airflow.calls[1:]] == [["dags", "list-runs"]] * 3


def test_a_failed_run_or_a_timeout_is_a_nonzero_exit(configured: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    day1 = "2026-11-09T18:00:00+00:00"
    assert run_backfill(RNG, 1, Reprocess.none, False, True, 60, None, configured,
                        FakeAirflow([_run(day1, "failed")])) == 1
    assert run_backfill(RNG, 1, Reprocess.none, False, True, 0, None, configured,
                        FakeAirflow([_run(day1, "queued")])) == 1
    assert "is a scheduler running" in capsys.readouterr().out


def test_dry_run_and_no_wait_only_create(configured: Layout) -> None:
    for dry_run, wait in ((True, True), (False, False)):
        airflow = FakeAirflow([])
        assert run_backfill(RNG, 1, Reprocess.none, dry_run, wait, 60, None, configured, airflow) == 0
        assert [c[:2] for c in airflow.calls] == [["backfill", "create"]]


def test_the_embedded_deployment_is_prepared_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        monkeypatch.delenv(name, raising=False)
    prepared: list[dict[str, str]] = []
    monkeypatch.setattr("exchange.airflow.env.init_metadata_db", lambda _settings, env: prepared.append(env))
    layout = Layout(tmp_path / "home")
    airflow = FakeAirflow([])
    assert run_backfill(RNG, 1, Reprocess.none, True, True, 60, None, layout, airflow) == 0
    assert prepared[0]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{layout.airflow / 'airflow.db'}"
    assert [c[:2] for c in airflow.calls] == [["dags", "reserialize"], ["dags", "pause"], ["dags", "unpause"],
                                              ["backfill", "create"]]
    assert airflow.calls[1][-1] == "^exchange_(shanghai|zhejiang|anhui)$"
    assert airflow.calls[2][-1] == "exchange_jiangsu"


def test_waiting_gives_up_at_the_timeout() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += 10

    runs = wait_for(FakeAirflow([_run("2026-11-09T18:00:00+00:00", "running")]), {}, RNG, 25, sleep=sleep,
                    clock=lambda: now[0])
    assert runs[0]["state"] == "running" and now[0] == 30
