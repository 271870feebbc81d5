"""The hub's task modules imported once in the scheduler, before its LocalExecutor forks the workers.

With the LocalExecutor every task is a fork of a worker, and Airflow forks the workers from the scheduler when
the executor starts. A task that imports the pipeline, Great Expectations, DuckDB, PyArrow and its province's
adapter itself pays several CPU-seconds for it, every task of every run (the DAG files import none of this, so
that parsing stays cheap: exchange/airflow/factory.py). Imported here, every fork inherits them: the pages are
shared copy-on-write, and a task's own imports find them in sys.modules.

Only the scheduler of a LocalExecutor deployment preloads: the api-server, dag-processor and triggerer fork
nothing that runs a task, and a Celery worker's tasks are not the scheduler's children (a Celery worker preloads
the same modules itself: exchange/airflow/celery_config.py).
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Sequence

from exchange.datasets import PROVINCES

log = logging.getLogger(__name__)

# What the tasks of exchange/airflow/factory.py, operations.py and sharing.py import when they run.
TASK_MODULES = (
    "exchange.pipeline",
    "exchange.hub",
    "exchange.airflow.connections",
    "exchange.contracts.validate",
    "exchange.contracts.suite",  # Great Expectations: validate.py imports it only when it runs
    "exchange.contracts.expectations",
    "exchange.report.rejections",
    "exchange.sharing.service",
    "exchange.publish",
    "exchange.provenance.verify",
    "exchange.report.auditor",
    "exchange.airflow.errors",
    "adapters.witness",
    *(f"adapters.{province}.adapter" for province in PROVINCES),
)


def preloads(argv: Sequence[str], executor: str) -> bool:
    """Whether this process is a scheduler whose executor forks the tasks from it."""
    return argv[1:2] == ["scheduler"] and "LocalExecutor" in executor


def preload(modules: Sequence[str] = TASK_MODULES) -> list[str]:
    """Import `modules`; one that fails is logged and left to the task, which reports it as the task's error."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the scheduler must start regardless; the task will raise it again
            log.warning("could not preload %s for the tasks; each task imports it itself", name, exc_info=True)
            failed.append(name)
    return failed


def on_scheduler_start() -> None:
    """The listener hook's body (exchange/airflow/ui_plugin.py): preload when this is a LocalExecutor's scheduler."""
    from airflow.configuration import conf

    if preloads(sys.argv, conf.get("core", "executor", fallback="")):
        preload_logged("LocalExecutor")


def preload_logged(forks_of: str) -> None:
    """Preload, and say so in the component's log (what the deployment tests look for)."""
    started = time.process_time()
    failed = preload()
    log.info("preloaded %d task modules for the %s's forks in %.1f CPU-s", len(TASK_MODULES) - len(failed),
             forks_of, time.process_time() - started)
