"""What a province's Airflow Connection looks like to the adapters (no Airflow import here).

Each province's ``adapters/<province>/connection.py`` has a pure ``overrides(conn)`` turning the
Connection's fields into ExchangeSettings values; :func:`adapters.base.connection_overrides` finds it.
"""

from __future__ import annotations

import json
from typing import Any, Protocol


class ConnectionLike(Protocol):
    """The fields of an Airflow Connection the hub reads."""

    conn_type: str | None
    host: str | None
    port: int | None
    login: str | None
    password: str | None
    schema: str | None
    extra: str | None


def extra_of(conn: ConnectionLike) -> dict[str, Any]:
    """The Connection's `extra` JSON object ({} when absent or not an object)."""
    loaded = json.loads(conn.extra) if conn.extra else {}
    return loaded if isinstance(loaded, dict) else {}


def port_suffix(conn: ConnectionLike) -> str:
    """`:<port>` for a URL's authority, or "" when the Connection names no port."""
    return f":{conn.port}" if conn.port else ""
