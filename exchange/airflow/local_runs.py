"""Runs made outside a scheduler (the demo's `dag.test()`), made to look to Airflow as a scheduler's would.

- Task logs: `dag.test()` runs tasks in-process and writes no log files, so the UI had nothing to show
  ("Could not read served logs"). While :func:`task_logs_in_log_folder` is active each task's log records
  go, as Airflow's JSON lines, to the file the UI reads for that try.
- The window's run: a `dag.test()` run is a manual run, which the scheduler does not count, so starting
  one later re-ran the window the demo covered (and, already past its deadline, raised a missed-deadline
  alert). :func:`count_as_scheduled` records the run as that data interval's scheduled run.
- Asset events the demo's own publish run already handled are consumed, so a scheduler does not publish again.
- Windows run by hand: `exchange run` finishes a window outside Airflow and the hub records each dataset's
  outcome (exchange/window_outcomes.py). Once every dataset of a province has one for the window the DAG has
  due next, :func:`record_hand_runs` records that window's scheduled run (succeeded, each task as it ended), so
  the scheduler neither re-runs it nor raises its deadline. `exchange run` calls it when the home has an
  Airflow metadata DB, and `exchange airflow up` before it starts the scheduler (:func:`record_in_airflow`).

Needs the metadata DB (imports Airflow's ORM): only for the demo's process, never for DAG parsing.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.config import Layout

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


HAND_RUN_NOTE = "由 `exchange run` 在 Airflow 之外完成 · run by hand with `exchange run`, outside Airflow"
MAX_WINDOWS = 366  # consecutive windows recorded per DAG in one call (a year of daily runs): a loop guard


def hand_run_states(outcomes: Mapping[str, str]) -> dict[str, str]:
    """task id -> state for a window whose datasets ended with `outcomes` (dataset -> status): as a scheduler's
    run would have left them (nothing new to commit: the commit task is skipped, as in the DAG)."""
    states = {}
    for dataset, status in outcomes.items():
        states[f"pull_{dataset}"] = states[f"validate_{dataset}"] = "success"
        states[f"commit_{dataset}"] = "skipped" if status == "empty" else "success"
    return states


def _sync_dags() -> None:
    """Write the DAG folder's DAGs to the metadata DB, as a dag-processor (or dag.test) would."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    manager = DagBundlesManager()  # type: ignore[no-untyped-call]
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name),
                       bundle.name, bundle.version)


def _record_due_window(layout: Layout, province: str, now: datetime) -> str | None:
    """Record the window the province's DAG has due next as its scheduled run, when the hub finished it by
    hand; the run id, or None when there is nothing to record."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.deadline import Deadline
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import delete, select

    from adapters.base import Window
    from exchange import window_outcomes
    from exchange.airflow.ui_plugin import note_for
    from exchange.province_config import load_province

    dag_id = f"exchange_{province}"
    with create_session() as session:
        model = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
        if model is None or model.next_dagrun is None or model.next_dagrun_create_after is None \
                or model.next_dagrun_data_interval_start is None or model.next_dagrun_data_interval_end is None \
                or model.next_dagrun_create_after > now:
            return None
        start, end = model.next_dagrun_data_interval_start, model.next_dagrun_data_interval_end
        datasets = load_province(province).datasets
        done = window_outcomes.finished(layout, province, datasets, Window(start, end))
        if len(done) < len(datasets):
            return None
        if session.scalar(select(DagRun.run_id).where(DagRun.dag_id == dag_id,
                                                      DagRun.logical_date == model.next_dagrun)) is not None:
            return None  # the window has its run already (the scheduler's, or recorded before)
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        if dag is None:
            return None
        first = min(o.finished_at for o in done.values())
        last = max(o.finished_at for o in done.values())
        run = dag.create_dagrun(
            run_id=DagRun.generate_run_id(run_type=DagRunType.SCHEDULED, logical_date=model.next_dagrun,
                                          run_after=model.next_dagrun_create_after),
            logical_date=model.next_dagrun, data_interval=(start, end), run_after=model.next_dagrun_create_after,
            run_type=DagRunType.SCHEDULED, triggered_by=DagRunTriggeredByType.CLI, state=DagRunState.SUCCESS,
            start_date=first, note="\n\n".join(filter(None, [HAND_RUN_NOTE, note_for(dag_id, start, end)])),
            session=session)
        run.end_date = last
        states = hand_run_states({name: o.status for name, o in done.items()})
        for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                             TaskInstance.run_id == run.run_id)):
            dataset = ti.task_id.partition("_")[2]
            ti.state = states.get(ti.task_id, "skipped")
            ti.start_date = first
            ti.end_date = done[dataset].finished_at if dataset in done else last
        # Finished before the scheduler ever saw it: no deadline to watch. create_dagrun only added the Deadline
        # row to the session, and Airflow's sessions do not autoflush: flushed first, or the delete finds nothing
        # and the scheduler raises the deadline once its time passes.
        session.flush()
        session.execute(delete(Deadline).where(Deadline.dagrun_id == run.id))
        session.flush()
        # Move the DAG on to its next window, as the scheduler does once a window has its run.
        model.calculate_dagrun_date_fields(dag=dag, reference_run=run)
        return str(run.run_id)


def record_hand_runs(layout: Layout, now: datetime | None = None) -> list[str]:
    """Record each province DAG's due windows the hub finished by hand as their scheduled runs; what was recorded.

    Nothing is imported or synced when the hub has no window finished by hand.
    """
    from exchange import window_outcomes
    from exchange.datasets import PROVINCES

    if not any(window_outcomes.folder(layout).glob("*/*.json")):
        return []
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        known = set(session.scalars(select(DagModel.dag_id).where(DagModel.next_dagrun.is_not(None))))
    if not {f"exchange_{p}" for p in PROVINCES} <= known:
        _sync_dags()  # a home whose DAGs no dag-processor has parsed yet
    now = now or datetime.now(UTC)
    recorded = []
    for province in PROVINCES:
        for _ in range(MAX_WINDOWS):
            if (run_id := _record_due_window(layout, province, now)) is None:
                break
            recorded.append(f"exchange_{province} {run_id}")
            log.info("exchange_%s: recorded %s, a window run by hand, as its scheduled run", province, run_id)
    return recorded


def record_in_airflow(env: Mapping[str, str]) -> list[str]:
    """Run :func:`record_hand_runs` in a process with Airflow's environment `env` (Airflow reads its
    configuration once, at import); the runs recorded."""
    out = subprocess.run([sys.executable, "-m", "exchange.airflow.local_runs"], env=dict(env), capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        from exchange.errors import TerminalError

        raise TerminalError(f"recording windows run by hand in Airflow failed: {out.stderr.strip()[-2000:]}")
    return [line for line in out.stdout.splitlines() if line.startswith("exchange_")]


def after_hand_run(layout: Layout, province: str, window: Any) -> list[str]:
    """After `exchange run` finished a dataset's window: once every dataset of the province has, tell this
    home's Airflow (if it has one) that the window has had its run; the runs recorded."""
    from exchange import window_outcomes
    from exchange.airflow.env import deployment_env
    from exchange.province_config import load_province

    datasets = load_province(province).datasets
    env = deployment_env(layout)
    if env is None or len(window_outcomes.finished(layout, province, datasets, window)) < len(datasets):
        return []
    return record_in_airflow({**env, "EXCHANGE_HOME": str(layout.home)})


if __name__ == "__main__":
    from exchange.config import settings

    for line in record_hand_runs(Layout(settings().home)):
        print(line)
