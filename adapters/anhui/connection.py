"""Anhui's export share from an Airflow Connection."""

from __future__ import annotations

from typing import Any

from adapters.connection import ConnectionLike, extra_of


def overrides(conn: ConnectionLike) -> dict[str, Any]:
    """The export folder from extra.path ({} when the Connection has none)."""
    extra = extra_of(conn)
    return {"anhui_export_dir": extra["path"]} if "path" in extra else {}
