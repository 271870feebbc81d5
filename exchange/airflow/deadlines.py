"""A Deadline Alert reference Airflow 3.3 lacks: the end of the run's data interval.

province.yaml's `deadline: 2h` means "2 h after the data interval ends". Airflow's own references are the
logical date (the interval's start), the queue time and fixed/average times, so the UI read "Must complete
within a day of logical date". This reference is registered through the hub's plugin
(exchange/airflow/ui_plugin.py, `deadline_references`), which every scheduler, api-server and dag-processor
of a deployment must load; the UI then reads "Must complete within 2 hours of 数据区间结束 data interval end".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk.definitions.deadline import BaseDeadlineReference

# What the UI shows as the reference ("... within 2 hours of <this>"): no dots, they split i18n keys.
REFERENCE_NAME = "数据区间结束 data interval end"


class DataIntervalEndDeadline(BaseDeadlineReference):
    """A deadline measured from the DagRun's data interval end (None for a run without an interval)."""

    required_kwargs = {"dag_id", "run_id"}

    @property
    def reference_name(self) -> str:
        return REFERENCE_NAME

    def _evaluate_with(self, *, session: Any, **kwargs: Any) -> datetime | None:
        # Called by the scheduler when it creates a run (Core imports stay inside, as Airflow asks).
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        end: datetime | None = session.scalar(select(DagRun.data_interval_end).where(
            DagRun.dag_id == kwargs["dag_id"], DagRun.run_id == kwargs["run_id"]))
        return end


DATA_INTERVAL_END = DataIntervalEndDeadline()
