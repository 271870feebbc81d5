"""The daily sharing DAG: overdue requests escalated and written to an alert file, ended periods closed."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, dag, task

TZ = pendulum.timezone("Asia/Shanghai")


def sharing_dag() -> DAG:
    """`exchange_sharing`: every working morning, escalate overdue requests to the coordinating authority, write
    reports/alerts/sharing-overdue-<date>.json, and close approved requests whose period has ended."""

    @dag(dag_id="exchange_sharing", schedule="0 8 * * *", start_date=pendulum.datetime(2026, 11, 1, tz=TZ),
         catchup=False, max_active_runs=1, tags=["exchange", "sharing"], default_args={"retries": 1})
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
    built.doc_md = ("Escalates sharing requests past their working-day deadlines to the coordinating authority, "
                    "writes the daily overdue alert file, and closes grants whose approved period has ended.")
    return built
