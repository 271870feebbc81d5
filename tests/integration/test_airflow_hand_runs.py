"""A window an office ran by hand with `exchange run` is that window's run for Airflow's real scheduler: with
`exchange airflow up` started afterwards the window is not run again and raises no missed-deadline alert,
also for the datasets that brought nothing new (no manifest). The deadline the UI shows is province.yaml's
(2 h from the data interval end). `exchange airflow down` then stops everything `up` started, the task
processes the other provinces' runs had in flight included, and leaves no process behind."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from croniter import croniter

from exchange.airflow.launcher import COMPONENTS, alive, session_members
from exchange.province_config import load_province
from tests.integration.airflow_deployment import free_port, seed_jiangsu
from tests.integration.test_airflow_ui import _exchange, scheduler_settled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "exchange_jiangsu"


def _latest_window() -> tuple[datetime, datetime]:
    """The Jiangsu DAG's latest complete data interval: the one a scheduler started now has due."""
    cfg = load_province("jiangsu")
    fires = croniter(cfg.schedule, datetime.now(ZoneInfo(cfg.timezone)))
    end = fires.get_prev(datetime)
    return fires.get_prev(datetime), end


def test_a_window_run_by_hand_is_the_schedulers_run_and_down_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    start, end = _latest_window()
    seed_jiangsu(home, start, end, n=200)  # e-licences and registrations; penalties and transfers: nothing new
    for name in load_province("jiangsu").datasets:
        run = _exchange(home, "run", "--province", "jiangsu", "--dataset", name, "--start", start.isoformat(),
                        "--end", end.isoformat())
        assert run.returncode == 0, run.stdout + run.stderr
    statuses = {json.loads(p.read_text())["dataset"]: json.loads(p.read_text())["status"]
                for p in (home / "windows" / "jiangsu").glob("*.json")}
    assert statuses == {"e_license": "committed", "enterprise_registration": "committed",
                        "administrative_penalty": "empty", "provident_fund_transfer": "empty"}

    launched = datetime.now(UTC)
    up = _exchange(home, "airflow", "up", "--port", str(free_port()), timeout=600)
    sessions = {int(p.read_text()) for p in (home / "airflow" / "run").glob("*.pid")}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert re.search(rf"recorded a window run by hand \(exchange run\) as its scheduled run: {DAG} scheduled__",
                         up.stdout), up.stdout
        url = re.search(r"Airflow UI started: (http://127\.0\.0\.1:\d+)", up.stdout)
        assert url, up.stdout
        login = json.loads((home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        token = httpx.post(f"{url[1]}/auth/token", json={"username": "admin", "password": login["admin"]},
                           timeout=60).json()["access_token"]
        with httpx.Client(base_url=url[1], headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            def runs() -> list[dict[str, str]]:
                found: list[dict[str, str]] = client.get(f"/api/v2/dags/{DAG}/dagRuns").json()["dag_runs"]
                return found

            first = runs()
            settled = scheduler_settled(client, [DAG], launched)
            assert runs() == first and len(first) == 1, f"the window was run again: {runs()}"
            # What keeps it so: the scheduler's next window starts where the hand-run one ended.
            assert datetime.fromisoformat(settled[DAG]["next_dagrun_data_interval_start"]) >= end, settled[DAG]
            run = first[0]
            assert run["run_type"] == "scheduled" and run["state"] == "success", run
            assert datetime.fromisoformat(run["data_interval_end"]) == end
            assert "exchange run" in (run.get("note") or ""), run.get("note")
            quoted = urllib.parse.quote(run["dag_run_id"], safe="")
            tasks = {t["task_id"]: t["state"] for t in
                     client.get(f"/api/v2/dags/{DAG}/dagRuns/{quoted}/taskInstances").json()["task_instances"]}
            assert tasks["commit_e_license"] == "success" and tasks["commit_administrative_penalty"] == "skipped"
            # No deadline left to watch at all: one left pending would be raised once its time passes, whatever
            # the time of day the window was run at.
            deadlines = client.get(f"/ui/dags/{DAG}/dagRuns/{quoted}/deadlines").json()
            assert deadlines.get("deadlines") == [], deadlines
            # What the UI renders: "Must complete within 2 hours of 数据区间结束 data interval end".
            alerts = client.get(f"/ui/dags/{DAG}/deadlineAlerts").json()["deadline_alerts"]
            assert [(a["reference_type"], a["interval"]) for a in alerts] == [("数据区间结束 data interval end", 7200)]
        assert not list((home / "reports" / "alerts").glob(f"{DAG}.*.deadline.json"))
        members = session_members(sessions)
        assert len(members) > len(COMPONENTS), "the components' children (task processes among them) run"
    finally:
        down = _exchange(home, "airflow", "down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    left = [pid for pid in session_members(sessions) if alive(pid)]
    assert not left, subprocess.run(["ps", "-o", "pid,pgid,sid,stat,cmd", "-p", ",".join(map(str, left))],
                                    capture_output=True, text=True).stdout
