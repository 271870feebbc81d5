"""The two hub-wide DAGs: publishing standing extracts when lake tables change, and the nightly audit."""

from __future__ import annotations

import json
import operator
from datetime import timedelta
from functools import reduce
from typing import Any

import pendulum
from airflow.sdk import DAG, dag, task
from airflow.sdk.exceptions import AirflowFailException

from exchange.airflow.factory import lake_asset
from exchange.datasets import DATASETS

TZ = pendulum.timezone("Asia/Shanghai")
HUB_OFFICE = "长三角数据交换中心"  # the hub's operator answers for the hub-wide DAGs


def publish_dag() -> DAG:
    """`exchange_publish`: on any lake-table Asset event, refresh the standing extract of every live grant."""

    schedule = reduce(operator.or_, (lake_asset(name) for name in DATASETS))  # any table changed

    @dag(dag_id="exchange_publish", dag_display_name="共享数据 发布 · publish extracts",
         schedule=schedule, start_date=pendulum.datetime(2026, 11, 1, tz=TZ),
         catchup=False, max_active_runs=1, tags=["exchange", "publish"],
         default_args={"owner": HUB_OFFICE, "retries": 2, "retry_delay": timedelta(minutes=2)})
    def exchange_publish() -> None:
        @task
        def refresh_standing_extracts() -> list[dict[str, Any]]:
            from exchange.airflow.errors import run_stage
            from exchange.publish import refresh_standing_extracts as refresh

            return [cut.model_dump(mode="json") for cut in run_stage(refresh)]

        refresh_standing_extracts()

    built: DAG = exchange_publish()
    built.doc_md = "Cuts each live grant's extract at the newest snapshot whenever a lake table changes."
    return built


def audit_dag() -> DAG:
    """`exchange_audit`: nightly incremental verify, the auditor's HTML report, a signed checkpoint, and the
    head witnessed by the province offices and the time-stamping authority.

    A broken chain, manifest or file fails the run loudly (and no checkpoint is written past it).
    """

    @dag(dag_id="exchange_audit", dag_display_name="审计 核验 · nightly audit",
         schedule="0 4 * * *", start_date=pendulum.datetime(2026, 11, 1, tz=TZ),
         catchup=False, max_active_runs=1, tags=["exchange", "audit"], default_args={"owner": HUB_OFFICE, "retries": 0})
    def exchange_audit() -> None:
        @task
        def verify(ds_nodash: str | None = None) -> dict[str, Any]:
            from exchange.hub import Hub
            from exchange.provenance.checkpoint import append_checkpoint
            from exchange.provenance.lakecheck import lake_head
            from exchange.provenance.verify import verify_home
            from exchange.report.auditor import write_report

            hub = Hub.current()
            report = verify_home(hub.settings, incremental=True)
            page = write_report(hub.layout.reports / f"audit-{ds_nodash or 'manual'}.html", hub.layout, report,
                                hub.keyring.trust_bundle())
            result = {"ok": report.ok, "entries": report.entries, "manifests": report.manifests,
                      "files": report.files, "extracts": report.extracts, "report": str(page),
                      "problems": [str(p) for p in report.problems]}
            (page.with_suffix(".json")).write_text(json.dumps(result, indent=2, ensure_ascii=False))
            if not report.ok:
                first = report.problems[0] if report.problems else "no trust anchor pinned (EXCHANGE_TRUST_ANCHOR)"
                raise AirflowFailException(f"verify: {report.verdict}, {len(report.problems)} problem(s); first: "
                                           f"{first} (report: {page})")
            head, manifests = lake_head(hub.settings)
            append_checkpoint(hub.log, hub.signer, lake_snapshot=head, manifests=manifests)
            # Nightly, the verified head is witnessed by the offices and the TSA: from then on not even the
            # hub's own key can rewrite or cut it unnoticed.
            from adapters.witness import witness_hub

            receipt, _ = witness_hub(hub)
            result["witnessed"] = {"seq": receipt.head_seq, "witnesses": receipt.witnesses()}
            return result

        verify()

    built: DAG = exchange_audit()
    built.doc_md = ("Nightly incremental `exchange verify`, the auditor report under reports/, a signed checkpoint, "
                     "and the head witnessed by the province offices and the time-stamping authority.")
    return built
