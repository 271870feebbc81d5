"""Province credentials from Airflow Connections map onto the hub's settings."""

from __future__ import annotations

import json
from dataclasses import dataclass

from adapters.base import connection_overrides as overrides_for
from exchange.config import ExchangeSettings


@dataclass
class Conn:
    conn_type: str | None = None
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: str | None = None


def test_shanghai_bearer_and_oauth2() -> None:
    bearer = overrides_for("shanghai", Conn("http", "api.sh.example", 8443, password="t0ken"))
    assert bearer == {"shanghai_api_url": "https://api.sh.example:8443", "shanghai_api_token": "t0ken"}
    oauth = overrides_for("shanghai", Conn("http", "h", None, "client", "s3cret", extra=json.dumps({"auth": "oauth2"})))
    assert oauth["shanghai_client_id"] == "client" and oauth["shanghai_client_secret"] == "s3cret"
    assert ExchangeSettings(**oauth).shanghai_client_secret is not None


def test_jiangsu_sftp_and_local_folder() -> None:
    out = json.dumps({"path": "/out"})
    sftp = overrides_for("jiangsu", Conn("sftp", "drop.js.example", 22, "hub", "pw", extra=out))
    assert sftp["jiangsu_sftp_url"] == "sftp://hub@drop.js.example:22/out"
    local = overrides_for("jiangsu", Conn("fs", extra=json.dumps({"path": "/mnt/js"})))
    assert local == {"jiangsu_drop_dir": "/mnt/js"}


def test_zhejiang_database_urls() -> None:
    mysql = overrides_for("zhejiang", Conn("mysql", "db.zj", 3306, "reader", "pw", "views"))
    assert mysql == {"zhejiang_db_url": "mysql+pymysql://reader:pw@db.zj:3306/views"}
    pg = overrides_for("zhejiang", Conn("postgres", "db.zj", None, "reader", None, "views"))
    assert pg == {"zhejiang_db_url": "postgresql+psycopg://reader@db.zj/views"}
