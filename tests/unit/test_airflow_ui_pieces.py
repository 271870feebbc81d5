"""The pure pieces behind the Airflow UI: Chinese/English names and doc, the run note, the Asset event extra,
the report route's file-name rule, and the UI's secrets and process bookkeeping."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.airflow.display import dag_display_name, dag_doc, deadline_text, schedule_text, task_display_name
from exchange.airflow.factory import asset_extra
from exchange.airflow.launcher import (
    UiPaths,
    alive,
    ensure_secrets,
    healthy,
    password,
    port_free,
    strays,
    ui_env,
)
from exchange.airflow.ui_plugin import REPORT_NAME, batch_of, report_url, run_note
from exchange.config import Layout
from exchange.datasets import DATASETS, PROVINCES, dataset
from exchange.province_config import ProvinceConfig, load_province


@pytest.mark.parametrize("province", PROVINCES)
def test_a_province_dag_reads_in_chinese_with_english(province: str) -> None:
    cfg = load_province(province)
    assert dag_display_name(province).endswith(" 数据交换")
    doc = dag_doc(cfg)
    assert cfg.name in doc and "Asia/Shanghai" in doc
    assert "2h after the data interval ends" in doc and "数据区间结束后 2h 内完成" in doc
    assert f"reports/{province}/<batch>.rejections.html" in doc
    for name in cfg.datasets:
        assert f"{dataset(name).title} `{name}`" in doc
    assert task_display_name("e_license", "pull") == "电子证照 拉取"


@given(hour=st.integers(0, 23), minute=st.integers(0, 59))
def test_a_daily_schedule_is_told_as_its_local_time(hour: int, minute: int) -> None:
    cfg = ProvinceConfig(province="jiangsu", name="江苏省大数据管理中心", schedule=f"{minute} {hour} * * *",
                         start_date="2026-11-01", datasets=["e_license"], deadline="90m")
    zh, en = schedule_text(cfg)
    assert f"{hour:02d}:{minute:02d}" in zh and en == f"daily at {hour:02d}:{minute:02d} Asia/Shanghai"
    assert deadline_text(cfg) == ("数据区间结束后 1h30m 内完成", "1h30m after the data interval ends")


def test_an_irregular_schedule_is_shown_as_its_cron() -> None:
    cfg = ProvinceConfig(province="anhui", name="安徽省数据资源管理局", schedule="0 3 * * 1-5",
                         start_date="2026-11-01", datasets=["e_license"])
    assert "`0 3 * * 1-5`" in schedule_text(cfg)[1]
    assert deadline_text(cfg) is None and "未设置" in dag_doc(cfg)


def test_the_asset_event_names_batch_snapshot_counts_and_manifest_digest() -> None:
    commit = {"batch_id": "jiangsu.e_license.x", "status": "committed", "snapshot_id": 7, "manifest": "/m.json",
              "manifest_sha256": "ab" * 32, "key_id": "k", "pulled": 10, "accepted": 8, "quarantined": 2}
    extra = asset_extra(commit)
    assert extra == {"batch_id": "jiangsu.e_license.x", "snapshot_id": 7,
                     "counts": {"pulled": 10, "accepted": 8, "quarantined": 2}, "manifest_sha256": "ab" * 32}
    json.dumps(extra)  # an Asset event's extra must be JSON


def test_the_report_link_belongs_to_validate_and_commit_of_a_province_dag() -> None:
    start = datetime(2026, 12, 4, 18, tzinfo=UTC)
    end = start + timedelta(days=1)
    assert batch_of("exchange_jiangsu", "validate_e_license", start, end) == (
        "jiangsu", "jiangsu.e_license.20261204T180000Z-20261205T180000Z")
    assert batch_of("exchange_jiangsu", "commit_e_license", start, end) is not None
    assert batch_of("exchange_jiangsu", "pull_e_license", start, end) is None
    assert batch_of("exchange_publish", "refresh_standing_extracts", start, end) is None
    assert batch_of("exchange_jiangsu", "validate_e_license", None, None) is None
    assert report_url("jiangsu", "b", "http://127.0.0.1:8080/") == \
        "http://127.0.0.1:8080/exchange/reports/jiangsu/b.rejections.html"


def test_the_run_note_gives_each_dataset_its_counts_or_says_nothing_came() -> None:
    start = datetime(2026, 12, 4, 18, tzinfo=UTC)
    summary = {"batch_id": "jiangsu.e_license.b", "counts": {"pulled": 200, "accepted": 190, "quarantined": 10,
                                                             "held": False}}
    note = run_note("jiangsu", start, start + timedelta(days=1),
                    {"e_license": summary, "enterprise_registration": None})
    assert "江苏省" in note and "电子证照 e_license: 拉取 pulled 200 · 接收 accepted 190 · 隔离 quarantined 10" in note
    assert "市场主体登记 enterprise_registration: 无新数据 · nothing new" in note
    assert "/exchange/reports/jiangsu/jiangsu.e_license.b.rejections.html" in note


@given(st.text(min_size=1, max_size=80))
def test_the_report_route_serves_only_report_files_inside_the_province_folder(name: str) -> None:
    if REPORT_NAME.match(name):
        assert "/" not in name and "\\" not in name and name not in (".", "..")
        assert name.endswith((".rejections.html", ".rejections.csv", ".summary.json"))
        assert (Path("/r/jiangsu") / name).resolve().parent == Path("/r/jiangsu")


@pytest.mark.parametrize("name", ["../keys/hub.pem", "..", "a/b.rejections.html", "x.rejections.html.bak",
                                  "provenance.jsonl", "%2e%2e.summary.json/"])
def test_the_report_route_refuses_anything_else(name: str) -> None:
    assert not REPORT_NAME.match(name)


def test_secrets_are_made_once_and_owner_only(tmp_path: Path) -> None:
    paths = UiPaths(Layout(tmp_path / "home"))
    first = ensure_secrets(paths)
    pw = password(paths)
    assert ensure_secrets(paths) == first and password(paths) == pw, "made once per home"
    for path in (paths.passwords, paths.secrets):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = ui_env(Layout(tmp_path / "home"), 18080, {})
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(paths.passwords)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///"), "no 'looks like production' warning"
    assert pw not in json.dumps(env), "the password is read from its file, never passed around"


def test_health_needs_all_four_components() -> None:
    ok = {"status": "healthy"}
    assert healthy({"metadatabase": ok, "scheduler": ok, "triggerer": ok, "dag_processor": ok})
    assert not healthy({"metadatabase": ok, "scheduler": ok, "triggerer": {"status": "unhealthy"},
                        "dag_processor": ok})
    assert not healthy({})


def test_a_process_writing_to_the_ui_logs_is_found_and_a_zombie_is_not_alive(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with (logs / "scheduler.log").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=out, stderr=out)
    try:
        assert proc.pid in strays(logs)
        assert proc.pid not in strays(tmp_path / "elsewhere")
        assert alive(proc.pid)
    finally:
        proc.kill()
    # Killed but not yet waited for: a zombie, which must not hold `down` up.
    deadline = datetime.now() + timedelta(seconds=10)
    while alive(proc.pid) and datetime.now() < deadline:
        pass
    assert not alive(proc.pid)
    proc.wait()
    assert os.getpid() not in strays(logs)


def test_every_dataset_has_english_words() -> None:
    from exchange.airflow.display import DATASET_ENGLISH

    assert set(DATASET_ENGLISH) == set(DATASETS)


def _deadline_context() -> dict[str, dict[str, str]]:
    return {"dag_run": {"dag_id": "exchange_jiangsu", "dag_run_id": "scheduled__2026-11-09T18:00:00+00:00",
                        "run_type": "scheduled", "state": "running",
                        "data_interval_start": "2026-11-09T18:00:00Z", "data_interval_end": "2026-11-10T18:00:00Z"},
            "deadline": {"id": "d1", "deadline_time": "2026-11-10T20:00:00+00:00"}}


def _manifests(home: Path, created: dict[str, str]) -> None:
    from adapters.base import Window
    from exchange.hub import batch_id_for
    from exchange.provenance.manifest import manifest_path

    window = Window(datetime(2026, 11, 9, 18, tzinfo=UTC), datetime(2026, 11, 10, 18, tzinfo=UTC))
    for name, at in created.items():
        path = manifest_path(home / "manifests", "jiangsu", name, batch_id_for("jiangsu", name, window))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"manifest": {"created_at": at}}))


@pytest.mark.parametrize(("late", "missing", "alert"), [(False, False, False), (True, False, True),
                                                         (False, True, True)])
def test_a_window_committed_in_time_by_hand_raises_no_deadline_alert(home: Path, late: bool, missing: bool,
                                                                      alert: bool) -> None:
    from exchange.airflow.errors import record_deadline_miss

    datasets = load_province("jiangsu").datasets
    created = {name: "2026-11-10T19:10:00+00:00" for name in datasets}
    if late:
        created[datasets[0]] = "2026-11-10T20:05:00+00:00"
    if missing:
        del created[datasets[-1]]  # nothing new for it: no manifest, so the window is not known to be done
    _manifests(home, created)
    path = record_deadline_miss(province="jiangsu", deadline="2h", context=_deadline_context(),
                                now=datetime(2026, 11, 11, 8, tzinfo=UTC))
    assert (path is not None) == alert


@pytest.mark.parametrize(("finished_at", "alert"), [("2026-11-10T19:30:00+00:00", False),
                                                    ("2026-11-10T20:30:00+00:00", True)])
def test_a_window_with_nothing_new_run_by_hand_in_time_raises_no_deadline_alert(home: Path, finished_at: str,
                                                                                 alert: bool) -> None:
    """`exchange run` records the window of a dataset that brought nothing new; in time, that is no alert."""
    from adapters.base import Window
    from exchange import window_outcomes
    from exchange.airflow.errors import record_deadline_miss
    from exchange.config import Layout

    datasets = load_province("jiangsu").datasets
    _manifests(home, {name: "2026-11-10T19:10:00+00:00" for name in datasets[:-1]})
    window = Window(datetime(2026, 11, 9, 18, tzinfo=UTC), datetime(2026, 11, 10, 18, tzinfo=UTC))
    window_outcomes.record(Layout(home), "jiangsu", datasets[-1], window, "empty",
                           now=datetime.fromisoformat(finished_at))
    # A later run of the same window keeps the first finishing time.
    window_outcomes.record(Layout(home), "jiangsu", datasets[-1], window, "empty",
                           now=datetime(2026, 11, 10, tzinfo=UTC))
    path = record_deadline_miss(province="jiangsu", deadline="2h", context=_deadline_context(),
                                now=datetime(2026, 11, 11, 8, tzinfo=UTC))
    assert (path is not None) == alert


def test_a_window_run_by_hand_leaves_its_tasks_as_a_scheduled_run_would() -> None:
    from exchange.airflow.local_runs import hand_run_states

    states = hand_run_states({"e_license": "committed", "administrative_penalty": "empty"})
    assert states == {"pull_e_license": "success", "validate_e_license": "success", "commit_e_license": "success",
                      "pull_administrative_penalty": "success", "validate_administrative_penalty": "success",
                      "commit_administrative_penalty": "skipped"}


def test_only_a_finished_window_is_recorded_and_its_first_time_kept(home: Path) -> None:
    from adapters.base import Window
    from exchange import window_outcomes

    layout, window = Layout(home), Window(datetime(2026, 11, 9, 18, tzinfo=UTC), datetime(2026, 11, 10, 18, tzinfo=UTC))
    assert window_outcomes.record(layout, "jiangsu", "e_license", window, "pulled") is None
    first = window_outcomes.record(layout, "jiangsu", "e_license", window, "committed",
                                   now=datetime(2026, 11, 10, 19, tzinfo=UTC))
    again = window_outcomes.record(layout, "jiangsu", "e_license", window, "already_committed")
    assert first is not None and again == first
    assert window_outcomes.finished(layout, "jiangsu", ["e_license", "enterprise_registration"], window) == \
        {"e_license": first}


def test_a_port_left_in_time_wait_by_a_stopped_ui_is_free_and_a_listening_one_is_not() -> None:
    # `exchange airflow down` then `up --port N` at once: the old server's closed connections keep N in TIME_WAIT
    # for a minute, yet the new server (SO_REUSEADDR, as uvicorn binds) can listen there.
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    assert not port_free(port)  # listening
    accepted.close()  # the server's side closes first, so its port is the one left in TIME_WAIT
    server.close()
    client.recv(1)
    client.close()
    assert port_free(port)
