"""Jiangsu's drop settings from an Airflow Connection: an SFTP server, or a local folder."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from adapters.connection import ConnectionLike, extra_of, port_suffix


def sftp_url(user: str, host: str, port: str, path: str) -> str:
    """sftp://user@host[:port]/path with the user and path percent-encoded, so an `@`, `:`, `/`, `%`, `#`,
    `?`, a space or a non-ASCII character in them survives (adapters.jiangsu.sftp unquotes both)."""
    return f"sftp://{quote(user, safe='')}@{host}{port}/{quote(path.lstrip('/'), safe='/')}"


def overrides(conn: ConnectionLike) -> dict[str, Any]:
    """An SFTP Connection (conn_type sftp, or any with a host) gives the drop's URL (path: extra.path or the
    schema), its password, key file and known-hosts file; otherwise extra.path is a local drop folder."""
    extra = extra_of(conn)
    if conn.conn_type == "sftp" or conn.host:
        path = extra.get("path", conn.schema or "")
        values: dict[str, Any] = {
            "jiangsu_sftp_url": sftp_url(conn.login or "", conn.host or "", port_suffix(conn), path)
        }
        if conn.password:  # never in the URL: the adapter takes it from its own SecretStr setting
            values["jiangsu_sftp_password"] = conn.password
        for key in ("key_file", "known_hosts"):
            if key in extra:
                values[f"jiangsu_sftp_{key}"] = extra[key]
        return values
    return {"jiangsu_drop_dir": extra["path"]} if "path" in extra else {}
