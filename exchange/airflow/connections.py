"""Province credentials from Airflow Connections (never from DAG files or the repo).

Each province DAG looks up its Connection (`connection_id` in province.yaml, default
`exchange_<province>`). When it exists, its fields override the EXCHANGE_* settings for that task; when
it does not, the EXCHANGE_* settings apply (the embedded default and the demo use those).
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


def _extra(conn: ConnectionLike) -> dict[str, Any]:
    loaded = json.loads(conn.extra) if conn.extra else {}
    return loaded if isinstance(loaded, dict) else {}


def overrides_for(province: str, conn: ConnectionLike) -> dict[str, Any]:
    """ExchangeSettings field values taken from the province's Connection (pure: no Airflow needed)."""
    extra = _extra(conn)
    port = f":{conn.port}" if conn.port else ""
    if province == "shanghai":
        scheme = extra.get("scheme", "https")
        url = extra.get("base_url") or f"{scheme}://{conn.host}{port}"
        if extra.get("auth") == "oauth2":  # client-credentials: login/password are the client id/secret
            return {"shanghai_api_url": url, "shanghai_client_id": conn.login, "shanghai_client_secret": conn.password}
        return {"shanghai_api_url": url, "shanghai_api_token": conn.password}
    if province == "jiangsu":
        if conn.conn_type == "sftp" or conn.host:
            path = extra.get("path", conn.schema or "")
            values: dict[str, Any] = {"jiangsu_sftp_url": f"sftp://{conn.login}@{conn.host}{port}/{path.lstrip('/')}"}
            if conn.password:
                values["jiangsu_sftp_password"] = conn.password
            for key in ("key_file", "known_hosts"):
                if key in extra:
                    values[f"jiangsu_sftp_{key}"] = extra[key]
            return values
        return {"jiangsu_drop_dir": extra["path"]} if "path" in extra else {}
    if province == "zhejiang":
        if "url" in extra:
            return {"zhejiang_db_url": extra["url"]}
        driver = {"mysql": "mysql+pymysql", "postgres": "postgresql+psycopg"}.get(conn.conn_type or "", conn.conn_type)
        auth = f"{conn.login}:{conn.password}@" if conn.password else (f"{conn.login}@" if conn.login else "")
        return {"zhejiang_db_url": f"{driver}://{auth}{conn.host}{port}/{conn.schema or ''}"}
    if province == "anhui":
        return {"anhui_export_dir": extra["path"]} if "path" in extra else {}
    raise KeyError(f"no connection mapping for province {province!r}")


def settings_overrides(province: str, connection_id: str) -> dict[str, Any]:
    """Overrides from the Airflow Connection `connection_id`, or {} when it is not defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(connection_id)
    except AirflowNotFoundException:
        return {}
    return overrides_for(province, conn)
