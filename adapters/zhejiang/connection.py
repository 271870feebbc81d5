"""Zhejiang's database URL from an Airflow Connection."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL

from adapters.connection import ConnectionLike, extra_of

# Airflow's connection types -> the SQLAlchemy drivers the hub installs; any other type is used as given.
_DRIVERS = {"mysql": "mysql+pymysql", "postgres": "postgresql+psycopg"}


def overrides(conn: ConnectionLike) -> dict[str, Any]:
    """The SQLAlchemy URL of Zhejiang's views: extra.url as it is, or built from the Connection's fields.

    SQLAlchemy's URL.create escapes the user name, password and database, so credentials containing `@`,
    `:`, `/`, `%` or `#` reach the driver unchanged.
    """
    extra = extra_of(conn)
    if "url" in extra:
        return {"zhejiang_db_url": extra["url"]}
    url = URL.create(
        drivername=_DRIVERS.get(conn.conn_type or "", conn.conn_type or ""),
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
    )
    return {"zhejiang_db_url": url.render_as_string(hide_password=False)}
