"""The hub's Airflow plugin: a batch's rejection report one click from its validate and commit tasks.

- an extra link "拒收报告 Rejection report" on every validate_/commit_ task of a province DAG, pointing at
- a small FastAPI app the api-server mounts at /exchange, serving reports/<province>/<batch>.rejections.html
  (and its .csv and .summary.json) from EXCHANGE_HOME to a logged-in Airflow user;
- a listener that writes a run note summarising the batches when a province run succeeds;
- the Deadline Alert reference "data interval end" the province DAGs' deadlines are measured from
  (exchange/airflow/deadlines.py): a scheduler without this plugin cannot read those DAGs' deadlines.

Airflow loads it from the plugins folder exchange/airflow/env.py sets (exchange/airflow/plugins/).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from exchange.airflow.deadlines import DataIntervalEndDeadline
from exchange.airflow.display import REJECTION_LINK, STAGE_NAMES
from exchange.airflow.errors import dataset_of, province_of
from exchange.datasets import PROVINCES

log = logging.getLogger(__name__)

MOUNT = "/exchange"
REPORT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.(rejections\.html|rejections\.csv|summary\.json)$")


def report_url(province: str, batch_id: str, base_url: str = "") -> str:
    """Where the plugin's app serves the batch's office report."""
    return f"{base_url.rstrip('/')}{MOUNT}/reports/{province}/{batch_id}.rejections.html"


def batch_of(dag_id: str, task_id: str, start: datetime | None, end: datetime | None) -> tuple[str, str] | None:
    """(province, batch id) of a validate/commit task's run; None for any other task or a run without interval."""
    from adapters.base import Window
    from exchange.hub import batch_id_for

    province, dataset = province_of(dag_id), dataset_of(task_id)
    if province is None or dataset is None or task_id.partition("_")[0] == "pull" or start is None or end is None:
        return None
    return province, batch_id_for(province, dataset, Window(start, end))


def _reports_dir() -> Path:
    from exchange.config import Layout, settings

    return Layout(settings().home).reports


class RejectionReportLink(BaseOperatorLink):
    """The batch's rejection report, on the validate and commit tasks of a province DAG."""

    name = REJECTION_LINK

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        # Called by the api-server (global links are resolved there, with the metadata DB at hand).
        from airflow.configuration import conf
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        if province_of(ti_key.dag_id) is None or dataset_of(ti_key.task_id) is None:
            return ""
        with create_session() as session:
            run = session.scalar(select(DagRun).where(DagRun.dag_id == ti_key.dag_id,
                                                      DagRun.run_id == ti_key.run_id))
            interval = (run.data_interval_start, run.data_interval_end) if run is not None else (None, None)
        found = batch_of(ti_key.dag_id, ti_key.task_id, *interval)
        if found is None or not (_reports_dir() / found[0] / f"{found[1]}.rejections.html").is_file():
            return ""  # no report (yet): the UI shows the link disabled
        return report_url(*found, base_url=conf.get("api", "base_url", fallback="") or "")


def run_note(province: str, start: datetime, end: datetime, summaries: dict[str, dict[str, Any] | None]) -> str:
    """The run note: per dataset its batch's counts (or that nothing new came), and where the reports are."""
    from exchange.datasets import PROVINCE_NAMES, dataset

    lines = [f"**{PROVINCE_NAMES.get(province, province)}** {start.isoformat()} .. {end.isoformat()}", ""]
    for name, summary in summaries.items():
        title = dataset(name).title
        if summary is None:
            lines.append(f"- {title} {name}: 无新数据 · nothing new")
            continue
        c = summary.get("counts", {})
        held = " · 已暂扣 held" if c.get("held") else ""
        lines.append(f"- {title} {name}: 拉取 pulled {c.get('pulled', 0)} · 接收 accepted {c.get('accepted', 0)} · "
                     f"隔离 quarantined {c.get('quarantined', 0)}{held} "
                     f"([{STAGE_NAMES['validate'][0]} report]({report_url(province, summary['batch_id'])}))")
    lines += ["", f"拒收报告 Reports: `EXCHANGE_HOME/reports/{province}/`"]
    return "\n".join(lines)


def note_for(dag_id: str, start: datetime | None, end: datetime | None) -> str | None:
    """The note of a province run over [start, end): from its batches' report summaries; None for other DAGs."""
    from adapters.base import Window
    from exchange.hub import batch_id_for
    from exchange.province_config import load_province

    province = province_of(dag_id)
    if province not in PROVINCES or start is None or end is None:
        return None
    reports = _reports_dir() / province
    summaries: dict[str, dict[str, Any] | None] = {}
    for name in load_province(province).datasets:
        path = reports / f"{batch_id_for(province, name, Window(start, end))}.summary.json"
        summaries[name] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return run_note(province, start, end, summaries)


def on_dag_run_success(dag_run: Any, msg: str) -> None:
    """Listener hook (the scheduler): note the batches of a province run, in the scheduler's own transaction."""
    from sqlalchemy.orm import object_session

    # Only a run bound to the caller's session: a second session would wait on the locks that one holds.
    # (dag.test() hands a detached run; the demo notes its runs itself, exchange/airflow/local_runs.py.)
    if object_session(dag_run) is None:
        return
    try:
        note = note_for(str(dag_run.dag_id), dag_run.data_interval_start, dag_run.data_interval_end)
        if note and not dag_run.note:  # an office's own note is never overwritten
            dag_run.note = note
    except Exception:  # noqa: BLE001 - a note is a courtesy; it must never fail the scheduler's loop
        log.exception("could not write the run note of %s %s", dag_run.dag_id, dag_run.run_id)


def _reports_app() -> Any:
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse

    app = FastAPI(title="exchange hub reports", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/reports/{province}/{name}", dependencies=[Depends(get_user)])
    def report(province: str, name: str) -> FileResponse:
        # Only the three report files of a known province; the name pattern admits no path separators.
        if province not in PROVINCES or not REPORT_NAME.match(name):
            raise HTTPException(404, "no such report")
        path = _reports_dir() / province / name
        if not path.is_file():
            raise HTTPException(404, f"no report {province}/{name} under EXCHANGE_HOME/reports")
        media = {".html": "text/html; charset=utf-8", ".csv": "text/csv; charset=utf-8",
                 ".json": "application/json"}[path.suffix]
        return FileResponse(path, media_type=media)

    return app


class _Listener:
    @hookimpl
    def on_starting(self, component: Any) -> None:
        from exchange.airflow.preload import on_scheduler_start

        on_scheduler_start()

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        on_dag_run_success(dag_run, msg)


class ExchangeUiPlugin(AirflowPlugin):
    name = "exchange_hub"
    global_operator_extra_links = [RejectionReportLink()]
    listeners = [_Listener()]
    deadline_references = [DataIntervalEndDeadline]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [{"app": _reports_app(), "url_prefix": MOUNT, "name": "exchange hub reports"}]
