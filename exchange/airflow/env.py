"""Environment for running Airflow on the embedded default (SQLite metadata DB under EXCHANGE_HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from exchange.config import ExchangeSettings, Layout

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
PLUGINS = Path(__file__).resolve().parent / "plugins"


def airflow_env(layout: Layout) -> dict[str, str]:
    """AIRFLOW_* variables for the embedded default; existing AIRFLOW__* settings win."""
    home = layout.airflow
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The hub's plugin: rejection-report links and route, run notes (exchange/airflow/ui_plugin.py).
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
    }
    return {k: v for k, v in env.items() if k not in os.environ or not k.startswith("AIRFLOW__")}


def is_configured(environ: Mapping[str, str]) -> bool:
    """True when the operator points at their own Airflow deployment rather than the embedded one."""
    return "AIRFLOW_HOME" in environ or "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in environ


def deployment_env(layout: Layout) -> dict[str, str] | None:
    """The environment of this home's Airflow: the configured deployment's, or the embedded default's once
    its metadata DB exists; None when neither (nothing to tell Airflow)."""
    if is_configured(os.environ):
        return dict(os.environ)
    if (layout.airflow / "airflow.db").exists():
        return {**os.environ, **airflow_env(layout)}
    return None


def apply_airflow_env(layout: Layout) -> None:
    """Set the variables in this process; call before the first `import airflow`."""
    layout.airflow.mkdir(parents=True, exist_ok=True)
    os.environ.update(airflow_env(layout))


def init_metadata_db(settings: ExchangeSettings, env: dict[str, str] | None = None) -> None:
    """`airflow db migrate`, then the lake_commits pool: without it the scheduler never runs a commit task.

    `env` defaults to this process's environment (after :func:`apply_airflow_env` for the embedded default).
    """
    from exchange.airflow.pools import ensure_commit_pool, lake_commit_slots

    env = dict(os.environ if env is None else env)
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True, text=True,
                   timeout=600)
    ensure_commit_pool(AIRFLOW, env, lake_commit_slots(settings))


def celery_env(broker_url: str, result_backend: str, *, concurrency: int | None = None,
               queue: str | None = None) -> dict[str, str]:
    """AIRFLOW__* variables that run tasks on Celery workers; give them to every Airflow process.

    `broker_url`: `redis://host:6379/0` or `amqp://user:password@host:5672/vhost` (RabbitMQ).
    `result_backend`: the SQLAlchemy URL of a database, e.g. `postgresql+psycopg://airflow@db/airflow`; the
    `db+` prefix Celery needs for a database backend is added when missing. `concurrency` is the task slots
    per worker; `queue` the default queue tasks are sent to and workers consume.
    """
    # Celery reads a bare postgresql:// URL as an unknown backend scheme, not as its database backend.
    dialect = result_backend.split("://", 1)[0].split("+", 1)[0]
    backend = f"db+{result_backend}" if dialect in {"postgresql", "mysql", "sqlite"} else result_backend
    env = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": backend,
        # Airflow's configuration, and the worker imports the hub's task modules once, before it forks its pool.
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "exchange.airflow.celery_config.CELERY_CONFIG",
    }
    if concurrency is not None:
        env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(concurrency)
    if queue is not None:
        env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] = queue
    return env
