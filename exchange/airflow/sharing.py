"""The daily sharing DAG: overdue requests escalated and written to an alert file, ended periods closed."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, dag, task

from exchange.airflow.operations import HUB_OFFICE

TZ = pendulum.timezone("Asia/Shanghai")


def sharing_dag() -> DAG:
    """`exchange_sharing`: every working morning, escalate overdue requests to the coordinating authority, write
    reports/alerts/sharing-overdue-<date>.json, and close approved requests whose period has ended."""

    @dag(dag_id="exchange_sharing", dag_display_name="共享申请 时限督办 · sharing deadlines",
         schedule="0 8 * * *", start_date=pendulum.datetime(2026, 11, 1, tz=TZ), catchup=False, max_active_runs=1,
         tags=["exchange", "sharing"], default_args={"owner": HUB_OFFICE, "retries": 1})
    def exchange_sharing() -> None:
        @task
        def overdue_and_expiry() -> dict[str, Any]:
            from exchange.airflow.errors import run_stage
            from exchange.hub import Hub
            from exchange.sharing.service import SharingService

            def run() -> dict[str, Any]:
                service = SharingService(Hub.current())
                alert = service.write_alert()
                closed = service.close_expired()
                return {"alert": str(alert), "overdue": len(service.overdue()), "closed": [r.id for r in closed]}

            result: dict[str, Any] = run_stage(run)
            return result

        overdue_and_expiry()

    built: DAG = exchange_sharing()
    built.doc_md = ("每天 08:00（Asia/Shanghai）：将超过工作日时限的共享申请提交协调主管部门督办，写出当日超期告警文件"
                    "（reports/alerts/sharing-overdue-<日期>.json），并关闭批准期限已届满的授权。\n\n"
                    "Daily at 08:00 Asia/Shanghai: escalates sharing requests past their working-day deadlines to the "
                    "coordinating authority, writes the day's overdue alert file "
                    "(reports/alerts/sharing-overdue-<date>.json), and closes grants whose approved period has ended.")
    return built
