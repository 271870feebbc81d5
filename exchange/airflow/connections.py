"""Province credentials from Airflow Connections (never from DAG files or the repo).

Each province DAG looks up its Connection (`connection_id` in province.yaml, default
`exchange_<province>`). When it exists, its fields override the EXCHANGE_* settings for that task; when
it does not, the EXCHANGE_* settings apply (the embedded default and the demo use those). What a
Connection's fields mean is province knowledge: each province's adapters/<province>/connection.py says.
"""

from __future__ import annotations

from typing import Any

from adapters.base import connection_overrides


def settings_overrides(province: str, connection_id: str) -> dict[str, Any]:
    """Overrides from the Airflow Connection `connection_id`, or {} when it is not defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(connection_id)
    except AirflowNotFoundException:
        return {}
    return connection_overrides(province, conn)
