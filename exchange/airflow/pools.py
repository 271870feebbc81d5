"""The Airflow pool that bounds concurrent lake commits.

A DuckDB-file catalog takes one writer at a time (a file lock serializes the rest), so with more than one
slot a commit task would hold a worker slot only to wait on the lock: the embedded default is 1 slot. A
PostgreSQL catalog takes concurrent writers; a few slots keep snapshot conflicts rare.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from exchange.config import ExchangeSettings

LAKE_COMMIT_POOL = "lake_commits"
POSTGRES_CATALOG_SLOTS = 4


class PoolSettings(BaseSettings):
    """EXCHANGE_LAKE_COMMIT_SLOTS: the operator's pool size, when the catalog's default does not fit."""

    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore")

    lake_commit_slots: int | None = Field(default=None, ge=1, description="Slots of the lake_commits pool")


def lake_commit_slots(settings: ExchangeSettings, pool: PoolSettings | None = None) -> int:
    """Pool size: EXCHANGE_LAKE_COMMIT_SLOTS if set, else 1 for a DuckDB-file catalog, a few for PostgreSQL."""
    chosen = (pool or PoolSettings()).lake_commit_slots
    if chosen is not None:
        return chosen
    catalog = settings.lake_catalog or ""
    return POSTGRES_CATALOG_SLOTS if catalog.startswith(("postgres:", "postgresql:")) else 1


def ensure_commit_pool(airflow: Path, env: Mapping[str, str], slots: int) -> bool:
    """Create the pool in the metadata DB unless it exists (an operator's size is kept); True if created."""
    found = subprocess.run([str(airflow), "pools", "get", LAKE_COMMIT_POOL], env=dict(env), capture_output=True,
                           text=True, timeout=300)
    if found.returncode == 0:
        return False
    subprocess.run([str(airflow), "pools", "set", LAKE_COMMIT_POOL, str(slots),
                    "Concurrent lake commits (DuckLake catalog writers)"],
                   env=dict(env), check=True, capture_output=True, text=True, timeout=300)
    return True
