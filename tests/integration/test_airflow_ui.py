"""A province office's day in the Airflow UI, on a copy of the demo's home (tests/demo_home.py, built once per
test run): `exchange airflow up`, log in with what it printed, read the DAGs in Chinese, a validate task's log
with the counts, its link to the rejection report, no false alarms from the scheduler, and the grid in headless
Chromium with a Chinese browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.datasets import DATASETS, PROVINCE_NAMES, PROVINCES, dataset
from tests.demo_home import RECORDS, DemoHome, copy_home
from tests.integration.airflow_deployment import free_port
from tests.integration.test_report_in_chromium import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXCHANGE = Path(sys.executable).with_name("exchange")
SCHEDULED = tuple(f"exchange_{p}" for p in (*PROVINCES, "audit", "sharing"))  # the DAGs with a schedule of their own


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXCHANGE_", "AIRFLOW"))}
    return {**env, "EXCHANGE_HOME": str(home), "PYTHONPATH": str(REPO)}


def _exchange(home: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXCHANGE), *args], env=_env(home), capture_output=True, text=True, timeout=timeout,
                          cwd=home.parent)


def scheduler_settled(client: httpx.Client, dag_ids: Iterable[str], since: datetime,
                      timeout: float = 300) -> dict[str, dict[str, Any]]:
    """Wait for evidence, not for time, that the scheduler has made every run it was going to make of `dag_ids`:
    each DAG parsed after `since` (its next window computed from the runs as they are by then), then two scheduler
    heartbeats after the last of those parses. The scheduler heartbeats at the end of a loop that creates the
    runs due and handles missed deadlines, so the loop ended by the second heartbeat ran entirely after the parse.
    Returns each DAG's details as the API shows them (next_dagrun_* fields); `timeout` is a hang guard."""
    deadline, wanted = time.monotonic() + timeout, tuple(dag_ids)
    dags: dict[str, dict[str, Any]] = {}
    parsed: datetime | None = None
    first_beat: datetime | None = None
    while time.monotonic() < deadline:
        if parsed is None:
            found = {d: client.get(f"/api/v2/dags/{d}") for d in wanted}
            dags = {d: r.json() for d, r in found.items() if r.status_code == 200}  # 404 until first parsed
            stamps = [datetime.fromisoformat(d["last_parsed_time"]) for d in dags.values() if d["last_parsed_time"]]
            if len(stamps) == len(wanted) and min(stamps) > since:
                parsed = max(stamps)
        else:
            jobs = client.get("/api/v2/jobs", params={"job_type": "SchedulerJob", "is_alive": True}).json()["jobs"]
            beat = max((datetime.fromisoformat(j["latest_heartbeat"]) for j in jobs), default=None)
            if beat is not None and beat > parsed:
                if first_beat is not None and beat > first_beat:
                    return dags
                first_beat = first_beat or beat
        time.sleep(0.5)
    raise AssertionError(f"the scheduler did not settle within {timeout}s: parsed {parsed}, heartbeat {first_beat}, "
                         f"{ {d: v.get('last_parsed_time') for d, v in dags.items()} }")


@dataclass
class Ui:
    home: Path
    url: str
    client: httpx.Client
    token: str
    printed: str
    demo_built: datetime
    launched: datetime  # when `exchange airflow up` was called

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()


@pytest.fixture(scope="module")
def ui(shared_demo: DemoHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    # `airflow up` writes into the home (its DB, logs, password file): a copy, never the run's shared original.
    home = copy_home(shared_demo.home, tmp_path_factory.mktemp("office"))
    launched = datetime.now(UTC)
    up = _exchange(home, "airflow", "up", "--port", str(free_port()), timeout=400)
    try:
        # The Airflow started is the copy's, not the original's the copy was made from.
        assert not (shared_demo.home / "airflow" / "logs" / "ui").exists()
        assert (home / "airflow" / "logs" / "ui" / "api-server.log").exists()
        assert up.returncode == 0, up.stdout + up.stderr
        url = re.search(r"Airflow UI started: (http://127\.0\.0\.1:\d+)", up.stdout)
        where = re.search(r"password in (\S+)", up.stdout)
        assert url and where, up.stdout
        password_file = Path(where[1])
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert password_file.is_relative_to(home)
        login = json.loads(password_file.read_text())
        assert login["admin"] not in up.stdout, "the password itself is never printed"
        token = httpx.post(f"{url[1]}/auth/token", json={"username": "admin", "password": login["admin"]},
                           timeout=30).json()["access_token"]
        with httpx.Client(base_url=url[1], headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            yield Ui(home, url[1], client, token, up.stdout, shared_demo.built, launched)
    finally:
        down = _exchange(home, "airflow", "down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr


def _runs(ui: Ui, dag_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = ui.get(f"/api/v2/dags/{dag_id}/dagRuns", limit=100)["dag_runs"]
    return runs


def _runs_due_by(ui: Ui, when: datetime) -> dict[str, list[str]]:
    """Each scheduled DAG's runs that were due by `when` (a window that comes due later is the next one's run)."""
    return {d: [r["dag_run_id"] for r in _runs(ui, d) if datetime.fromisoformat(r["run_after"]) <= when]
            for d in SCHEDULED}


def _demo_run(ui: Ui, dag_id: str) -> dict[str, Any]:
    """The run of `dag_id` the demo made."""
    return next(r for r in _runs(ui, dag_id) if datetime.fromisoformat(r["run_after"]) <= ui.demo_built)


def test_the_office_reads_its_day_in_the_ui(ui: Ui, tmp_path: Path) -> None:
    started = datetime.now(UTC)
    before = _runs_due_by(ui, started)
    dags = {d["dag_id"]: d for d in ui.get("/api/v2/dags", limit=100)["dags"]}
    assert set(dags) == {*(f"exchange_{p}" for p in (*PROVINCES, "publish", "audit", "sharing"))}
    assert all(any("\u4e00" <= c <= "\u9fff" for c in d["dag_display_name"]) for d in dags.values()), dags
    assert ui.get("/api/v2/importErrors")["total_entries"] == 0
    for province in PROVINCES:
        dag = dags[f"exchange_{province}"]
        assert dag["dag_display_name"] == f"{PROVINCE_NAMES[province]} 数据交换"
        assert dag["owners"] and all("省" in o or "市" in o for o in dag["owners"]), dag["owners"]
        detail = ui.get(f"/api/v2/dags/exchange_{province}/details")
        assert "Asia/Shanghai" in detail["doc_md"] and "2h after the data interval ends" in detail["doc_md"]
        # One task group per dataset, pull -> validate -> commit inside it.
        nodes = ui.get("/ui/structure/structure_data", dag_id=f"exchange_{province}")["nodes"]
        groups = {n["id"]: n for n in nodes if n.get("children")}
        assert set(groups) == set(DATASETS), nodes
        for name, group in groups.items():
            labels = {c["label"] for c in group["children"]}
            assert labels == {f"{dataset(name).title} {s}" for s in ("拉取", "校验", "入湖")}, labels

    # Jiangsu's run of the demo: the validate log has the counts, its link opens the batch's rejection report.
    run = _demo_run(ui, "exchange_jiangsu")
    assert run["state"] == "success" and run["run_type"] == "scheduled"
    assert "pulled" in (run.get("note") or ""), run.get("note")
    quoted = urllib.parse.quote(run["dag_run_id"], safe="")
    log = ui.client.get(f"/api/v2/dags/exchange_jiangsu/dagRuns/{quoted}/taskInstances/validate_e_license/logs/1",
                        headers={"Accept": "application/json"}).json()
    text = "\n".join(str(line.get("event", line)) if isinstance(line, dict) else str(line)
                     for line in log["content"])
    counts = re.search(r"pulled=(\d+) accepted=(\d+) quarantined=(\d+)", text)
    assert counts, text[-2000:]
    assert int(counts[1]) == RECORDS and int(counts[1]) == int(counts[2]) + int(counts[3])
    assert "rejection report:" in text and re.search(r"rule \S+ \(error\): \d+ record", text)
    links = ui.get(f"/api/v2/dags/exchange_jiangsu/dagRuns/{quoted}/taskInstances/validate_e_license/links")
    link = links["extra_links"]["拒收报告 Rejection report"]
    assert link and link.startswith(ui.url + "/exchange/reports/jiangsu/jiangsu.e_license."), link
    page = ui.client.get(link)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert link.rsplit("/", 1)[1].removesuffix(".rejections.html") in page.text
    assert httpx.get(link, timeout=30).status_code == 401, "reports are for logged-in users only"
    pull_links = ui.get(f"/api/v2/dags/exchange_jiangsu/dagRuns/{quoted}/taskInstances/pull_e_license/links")
    assert not any(pull_links["extra_links"].values())

    # The lake's Asset events name the batch, its snapshot, counts and manifest digest.
    events = ui.get("/api/v2/assets/events", limit=100)["asset_events"]
    extras = [e["extra"] for e in events if e.get("source_dag_id") == "exchange_jiangsu"]
    assert extras and all({"batch_id", "snapshot_id", "counts", "manifest_sha256"} <= set(x) for x in extras)

    # No false alarms: the scheduler treats the demo's runs as the windows' runs and waits for the next ones.
    settled = scheduler_settled(ui.client, SCHEDULED, ui.launched)
    for province in PROVINCES:  # each province's next window is after the one the demo ran
        next_start = settled[f"exchange_{province}"]["next_dagrun_data_interval_start"]
        demo_end = _demo_run(ui, f"exchange_{province}")["data_interval_end"]
        assert datetime.fromisoformat(next_start) >= datetime.fromisoformat(demo_end), province
    after = _runs_due_by(ui, started)  # e.g. the nightly audit falls due at 20:00 UTC while the test may run
    assert after == before
    # A window that came due between the demo's build and now (the sharing DAG's 08:00 Shanghai, the nightly
    # audit) is a new window's run; the windows the demo ran must have no second run.
    demo_windows = _runs_due_by(ui, ui.demo_built)
    assert all(len(runs) == 1 for runs in demo_windows.values()), f"only the demo's own runs: {demo_windows}"
    assert not list((ui.home / "reports" / "alerts").glob("*.deadline.json")), "no missed-deadline alert"
    # The one overdue request is the demo's own, written by the demo's sharing run (and by a later day's run, if
    # the sharing DAG's schedule came due since).
    sharing_alerts = [json.loads(p.read_text()) for p in (ui.home / "reports" / "alerts").glob("sharing-overdue-*")]
    overdue = {o["request"] for a in sharing_alerts for o in a["overdue"]}
    assert sharing_alerts and all(len(a["overdue"]) == 1 for a in sharing_alerts) and len(overdue) == 1, sharing_alerts
    for province in PROVINCES:
        for r in _runs(ui, f"exchange_{province}"):
            deadlines = ui.get(f"/ui/dags/exchange_{province}/dagRuns/{urllib.parse.quote(r['dag_run_id'], safe='')}"
                               "/deadlines")
            assert not [d for d in deadlines.get("deadlines", []) if d.get("missed")], deadlines

    api_log = (ui.home / "airflow" / "logs" / "ui" / "api-server.log").read_text(errors="replace")
    assert "looks like production" not in api_log

    _grid_in_chromium(ui, tmp_path / "grid.png")


def _grid_in_chromium(ui: Ui, shot: Path) -> None:
    if not shutil.which(CHROMIUM):
        message = f"Chromium is not installed at {CHROMIUM} (Debian package chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + " - `make test` installs it")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai",
                                          viewport={"width": 1600, "height": 1000})
            context.add_cookies([{"name": "_token", "value": ui.token, "url": ui.url}])
            page = context.new_page()
            page.goto(f"{ui.url}/dags/exchange_jiangsu", wait_until="networkidle")
            page.get_by_text("电子证照 e_license").first.wait_for(timeout=60_000)
            page.screenshot(path=str(shot), full_page=True)
            body = page.inner_text("body")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert "江苏省 数据交换" in body and "江苏省大数据管理中心" in body, body[:2000]
    for name in ("e_license", "enterprise_registration", "administrative_penalty", "provident_fund_transfer"):
        assert f"{dataset(name).title} {name}" in body, name
