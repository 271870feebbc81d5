"""Runs made outside a scheduler (the demo's `dag.test()`), made to look to Airflow as a scheduler's would.

- Task logs: `dag.test()` runs tasks in-process and writes no log files, so the UI had nothing to show
  ("Could not read served logs"). While :func:`task_logs_in_log_folder` is active each task's log records
  go, as Airflow's JSON lines, to the file the UI reads for that try.
- The window's run: a `dag.test()` run is a manual run, which the scheduler does not count, so starting
  one later re-ran the window the demo covered (and, already past its deadline, raised a missed-deadline
  alert). :func:`count_as_scheduled` records the run as that data interval's scheduled run.
- Asset events the demo's own publish run already handled are consumed, so a scheduler does not publish again.

Needs the metadata DB (imports Airflow's ORM): only for the demo's process, never for DAG parsing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class JsonLinesHandler(logging.Handler):
    """Log records as the JSON lines Airflow's task log reader parses (timestamp, level, logger, event)."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = path.open("a", encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = {"timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
                    "level": record.levelname.lower(), "logger": record.name, "event": record.getMessage()}
            if record.exc_info:
                line["event"] += "\n" + logging.Formatter().formatException(record.exc_info)
            self.stream.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - logging must never fail the task
            self.handleError(record)

    def close(self) -> None:
        self.stream.close()
        super().close()


def log_file(ti: Any) -> Path:
    """Where the UI looks for this try's log: base_log_folder / log_filename_template."""
    from airflow.configuration import conf
    from airflow.utils.log.file_task_handler import FileTaskHandler

    folder = conf.get("logging", "base_log_folder")
    return Path(folder) / FileTaskHandler(folder)._render_filename(ti, ti.try_number)


@contextmanager
def task_logs_in_log_folder() -> Iterator[None]:
    """While active, each task `dag.test()` runs logs (INFO and up) into its try's log file."""
    import airflow.sdk.definitions.dag as dag_module

    original = dag_module._run_task

    def run_task(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
        handler = JsonLinesHandler(log_file(ti))
        root, hub = logging.getLogger(), logging.getLogger("exchange")
        level = hub.level
        hub.setLevel(logging.INFO)
        root.addHandler(handler)
        try:
            return original(ti=ti, task=task, run_triggerer=run_triggerer)
        finally:
            root.removeHandler(handler)
            hub.setLevel(level)
            handler.close()

    dag_module._run_task = run_task  # dag.test() calls the module's function by name
    try:
        yield
    finally:
        dag_module._run_task = original


def count_as_scheduled(dag_id: str, run_id: str) -> bool:
    """Record a finished local run as the scheduled run the scheduler would make next, when it covers it.

    That run is the DAG's `next_dagrun` once due: for a data-interval DAG the same interval as the local run
    (whose logical date is then the interval start), for the cron-triggered audit its latest fire time. The
    scheduler computes its next run from the latest scheduled one, so afterwards it waits for the next
    interval instead of re-running this one. The run gets the note a scheduler's run gets. False when
    nothing was due (e.g. the window already has a run) and the run stays manual.
    """
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    from exchange.airflow.ui_plugin import note_for

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        model = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
        if run is None or model is None or model.next_dagrun is None or model.next_dagrun_create_after is None:
            return False
        due = model.next_dagrun_create_after <= run.run_after
        # A cron-triggered DAG's run has a point for an interval (start = end): any due fire time is covered.
        point = run.data_interval_start is None or run.data_interval_start == run.data_interval_end
        same_window = point or ((model.next_dagrun_data_interval_start, model.next_dagrun_data_interval_end)
                                == (run.data_interval_start, run.data_interval_end))
        taken = session.scalar(select(DagRun.run_id).where(DagRun.dag_id == dag_id, DagRun.run_id != run_id,
                                                           DagRun.logical_date == model.next_dagrun))
        if not due or not same_window or taken is not None:
            log.info("%s: %s is not the run due next (%s); it stays manual", dag_id, run_id, model.next_dagrun)
            return False
        run.logical_date = model.next_dagrun
        run.run_type = DagRunType.SCHEDULED
        if not run.note and (note := note_for(dag_id, run.data_interval_start, run.data_interval_end)):
            run.note = note
    return True


def consume_asset_queue(dag_id: str) -> int:
    """Drop the asset events queued for `dag_id` (its run has just handled them); how many were queued."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        result = session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag_id))
        return int(getattr(result, "rowcount", 0) or 0)
