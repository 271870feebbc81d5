"""Environment for running Airflow on the embedded default (SQLite metadata DB under EXCHANGE_HOME)."""

from __future__ import annotations

import os
from pathlib import Path

from exchange.config import Layout

REPO = Path(__file__).resolve().parents[2]


def airflow_env(layout: Layout) -> dict[str, str]:
    """AIRFLOW_* variables for the embedded default; existing AIRFLOW__* settings win."""
    home = layout.airflow
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    return {k: v for k, v in env.items() if k not in os.environ or not k.startswith("AIRFLOW__")}


def apply_airflow_env(layout: Layout) -> None:
    """Set the variables in this process; call before the first `import airflow`."""
    layout.airflow.mkdir(parents=True, exist_ok=True)
    os.environ.update(airflow_env(layout))
