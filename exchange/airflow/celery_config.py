"""Airflow's Celery configuration plus one thing: a Celery worker imports the hub's task modules before it forks.

`celery_env()` (exchange/airflow/env.py) points `[celery] celery_config_options` here. The configuration is
Airflow's default unchanged; importing this module also connects a handler to Celery's `import_modules` signal,
which a worker sends in its main process before it starts the prefork pool (Airflow's own provider preloads its
operators the same way). The pool's children are forks of that process, and each task a fork of a child: they
inherit the pipeline, GX, DuckDB and PyArrow instead of importing them per task (exchange/airflow/preload.py).
The scheduler also reads this configuration, but never sends the signal.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import import_modules

from exchange.airflow.preload import preload_logged

CELERY_CONFIG: dict[str, Any] = DEFAULT_CELERY_CONFIG  # what AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS names


def _preload(**_: Any) -> None:
    preload_logged("Celery worker pool")


import_modules.connect(_preload, weak=False)
