"""Map the hub's errors onto Airflow's retry semantics.

A TerminalError (malformed payload, refused credentials, held batch) will not go away by retrying, so
the task fails at once with the hub's message; a TransientError keeps Airflow's retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from exchange.errors import TerminalError

T = TypeVar("T")


def run_stage(stage: Callable[..., T], *args: Any) -> T:
    """Call a pipeline stage; turn a TerminalError into a no-retry task failure with the same message."""
    try:
        return stage(*args)
    except TerminalError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def record_failure(context: Any) -> None:
    """on_failure_callback: write a one-file summary an office can read without opening Airflow's logs.

    EXCHANGE_HOME/reports/failures/<dag>.<task>.<run>.json names the province, task, data interval,
    try number and the error.
    """
    import json
    import re

    from exchange.config import Layout, settings

    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", "unknown")
    task_id = getattr(ti, "task_id", "unknown")
    run_id = str(context.get("run_id") or getattr(ti, "run_id", "unknown"))
    summary = {
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": run_id,
        "try_number": getattr(ti, "try_number", None),
        "data_interval_start": str(context.get("data_interval_start")),
        "data_interval_end": str(context.get("data_interval_end")),
        "error": f"{type(context.get('exception')).__name__}: {context.get('exception')}",
    }
    folder = Layout(settings().home).reports / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{dag_id}.{task_id}.{run_id}")
    (folder / f"{name}.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
