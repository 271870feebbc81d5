"""Map the hub's errors onto Airflow's retry semantics, and write what an office reads when things go wrong.

A TerminalError (malformed payload, refused credentials, held batch) will not go away by retrying, so
the task fails at once with the hub's message; a TransientError keeps Airflow's retries. Which is which is
decided by the one error table, exchange/errors.py's OUTCOMES, as the CLI's exit codes and the API's statuses are.

Failure summaries (reports/failures/) and deadline-miss alerts (reports/alerts/) are small JSON files
under EXCHANGE_HOME, so an office sees them without opening Airflow's logs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from exchange.errors import ExchangeError, outcome

T = TypeVar("T")
STAGES = ("pull", "validate", "commit")
log = logging.getLogger(__name__)


def run_stage(stage: Callable[..., T], *args: Any) -> T:
    """Call a pipeline stage; turn an error a retry cannot fix into a no-retry task failure with the same message."""
    try:
        return stage(*args)
    except ExchangeError as exc:
        if outcome(exc).retry:
            raise
        # The message is the whole story (file, position, what to do); the hub's frames chained under it would
        # only bury that one line in the task log an office reads. Retryable errors keep their traceback.
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from None


def _reports(kind: str) -> Path:
    from exchange.config import Layout, settings

    folder = Layout(settings().home).reports / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write(kind: str, name: str, summary: Mapping[str, Any]) -> Path:
    path = _reports(kind) / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.json"
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return path


def province_of(dag_id: str) -> str | None:
    """`exchange_jiangsu` -> `jiangsu`; None for the hub-wide DAGs."""
    name = dag_id.removeprefix("exchange_")
    return None if name == dag_id or name in ("publish", "audit") else name


def dataset_of(task_id: str) -> str | None:
    """`commit_e_license` -> `e_license`; None for tasks that are not a dataset's stage."""
    stage, _, dataset = task_id.partition("_")
    return dataset if stage in STAGES and dataset else None


def record_failure(context: Any) -> Path:
    """on_failure_callback: write a one-file summary an office can read without opening Airflow's logs.

    EXCHANGE_HOME/reports/failures/<dag>.<task>.<run>.json names the province, dataset, task, data interval,
    try number and the error.
    """
    ti = context.get("task_instance") or context.get("ti")
    dag_id = str(getattr(ti, "dag_id", "unknown"))
    task_id = str(getattr(ti, "task_id", "unknown"))
    run_id = str(context.get("run_id") or getattr(ti, "run_id", "unknown"))
    exc = context.get("exception")
    error = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown (no exception in the task context)"
    summary = {
        "province": province_of(dag_id),
        "dataset": dataset_of(task_id),
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": run_id,
        "try_number": getattr(ti, "try_number", None),
        "data_interval_start": str(context.get("data_interval_start")),
        "data_interval_end": str(context.get("data_interval_end")),
        "error": error,
    }
    path = _write("failures", f"{dag_id}.{task_id}.{run_id}", summary)
    _lineage_failed(summary, context.get("data_interval_start"), context.get("data_interval_end"), exc)
    log.error("task %s.%s failed for [%s, %s): %s (summary: %s)", dag_id, task_id, summary["data_interval_start"],
              summary["data_interval_end"], error, path)
    return path


def _lineage_failed(summary: Mapping[str, Any], start: Any, end: Any, exc: BaseException | None) -> None:
    """The batch's OpenLineage run ends in FAIL once its task has failed for good (after retries)."""
    if not (summary["province"] and summary["dataset"] and isinstance(start, datetime) and isinstance(end, datetime)):
        return
    from adapters.base import Window
    from exchange import lineage
    from exchange.config import settings
    from exchange.hub import batch_id_for

    try:
        batch_id = batch_id_for(summary["province"], summary["dataset"], Window(start, end))
    except ValueError:  # not a window a batch could have had: there is no run to close
        return
    lineage.failed(settings(), batch_id, summary["province"], summary["dataset"],
                   exc or RuntimeError(str(summary["error"])))


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def exchanged_by(province: str, start: datetime, end: datetime, deadline: datetime) -> bool:
    """Whether every dataset of the province was done for [start, end) before `deadline`.

    Done: a signed manifest for the window written before it, or the hub's record of the window finished
    outside Airflow (exchange/window_outcomes.py), which also covers a dataset that brought nothing new.
    """
    from adapters.base import Window
    from exchange import window_outcomes
    from exchange.config import Layout, settings
    from exchange.hub import batch_id_for
    from exchange.provenance.manifest import manifest_path
    from exchange.province_config import load_province

    layout = Layout(settings().home)
    window = Window(start, end)
    for dataset in load_province(province).datasets:
        outcome = window_outcomes.read(layout, province, dataset, window)
        if outcome is not None and outcome.finished_at <= deadline:
            continue
        path = manifest_path(layout.manifests, province, dataset, batch_id_for(province, dataset, window))
        try:
            created = _when(json.loads(path.read_text(encoding="utf-8"))["manifest"]["created_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if created is None or created > deadline:
            return False
    return True


def record_deadline_miss(*, province: str, deadline: str, context: Mapping[str, Any],
                         now: datetime | None = None) -> Path | None:
    """Deadline Alert callback: the run of an interval had not finished `deadline` after the interval ended.

    Writes EXCHANGE_HOME/reports/alerts/<dag>.<run>.deadline.json (province, DAG, interval, deadline, how
    late) and logs it. Backfill runs re-run past intervals and are late by construction: logged, no alert.
    Airflow calls it with `context` = {"dag_run": the run as the REST API shows it, "deadline": {...}}.
    """
    run = context.get("dag_run") or {}
    missed = context.get("deadline") or {}
    dag_id = str(run.get("dag_id", f"exchange_{province}"))
    run_id = str(run.get("dag_run_id") or run.get("run_id") or "unknown")
    deadline_time = _when(missed.get("deadline_time"))
    now = now or datetime.now(UTC)
    late = now - deadline_time if deadline_time else None
    summary = {
        "province": province,
        "dag_id": dag_id,
        "run_id": run_id,
        "run_type": run.get("run_type"),
        "state": run.get("state"),
        "data_interval_start": run.get("data_interval_start"),
        "data_interval_end": run.get("data_interval_end"),
        "deadline": f"{deadline} after the data interval end",
        "deadline_time": deadline_time.isoformat() if deadline_time else None,
        "noticed_at": now.isoformat(),
        "late_by_minutes": round(late.total_seconds() / 60, 1) if late is not None else None,
    }
    message = (f"{province}: {dag_id} run {run_id} for [{summary['data_interval_start']}, "
               f"{summary['data_interval_end']}) missed its deadline ({summary['deadline']}, "
               f"{summary['deadline_time']}); late by {summary['late_by_minutes']} min, state {summary['state']}")
    if run.get("run_type") == "backfill":
        log.info("backfill run, no alert: %s", message)
        return None
    start, end = _when(run.get("data_interval_start")), _when(run.get("data_interval_end"))
    if deadline_time and start and end and exchanged_by(province, start, end, deadline_time):
        # The window's data was in the lake in time (`exchange run`, the demo): the run is late, the data is not.
        log.info("every batch of the window was committed before the deadline, no alert: %s", message)
        return None
    path = _write("alerts", f"{dag_id}.{run_id}.deadline", {**summary, "summary": message})
    log.warning("%s (alert: %s)", message, path)
    return path
