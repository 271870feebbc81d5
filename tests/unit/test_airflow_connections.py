"""Province credentials from Airflow Connections map onto the hub's settings: each province's mapping is in
adapters/<province>/connection.py, and URLs built there carry any credential unchanged (percent-encoded on the
way in, decoded by the consumer)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from adapters.base import connection_overrides
from adapters.jiangsu.sftp import SftpLocation
from exchange.config import ExchangeSettings
from exchange.datasets import PROVINCES


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
    bearer = connection_overrides("shanghai", Conn("http", "api.sh.example", 8443, password="t0ken"))
    assert bearer == {"shanghai_api_url": "https://api.sh.example:8443", "shanghai_api_token": "t0ken"}
    oauth = connection_overrides("shanghai", Conn("http", "h", None, "client", "s3cret",
                                                  extra=json.dumps({"auth": "oauth2"})))
    assert oauth["shanghai_client_id"] == "client" and oauth["shanghai_client_secret"] == "s3cret"
    assert ExchangeSettings(**oauth).shanghai_client_secret is not None


def test_jiangsu_sftp_and_local_folder() -> None:
    out = json.dumps({"path": "/out"})
    sftp = connection_overrides("jiangsu", Conn("sftp", "drop.js.example", 22, "hub", "pw", extra=out))
    assert sftp["jiangsu_sftp_url"] == "sftp://hub@drop.js.example:22/out"
    local = connection_overrides("jiangsu", Conn("fs", extra=json.dumps({"path": "/mnt/js"})))
    assert local == {"jiangsu_drop_dir": "/mnt/js"}


def test_zhejiang_database_urls() -> None:
    mysql = connection_overrides("zhejiang", Conn("mysql", "db.zj", 3306, "reader", "pw", "views"))
    assert mysql == {"zhejiang_db_url": "mysql+pymysql://reader:pw@db.zj:3306/views"}
    pg = connection_overrides("zhejiang", Conn("postgres", "db.zj", None, "reader", None, "views"))
    assert pg == {"zhejiang_db_url": "postgresql+psycopg://reader@db.zj/views"}


# Credentials as people choose them: URL delimiters, escapes, spaces, non-ASCII (no lone surrogates:
# they are not text a Connection can hold).
TRICKY = "@:/%#?&=+ \t\\[]'\"密码é"
credential = st.text(st.one_of(st.sampled_from(TRICKY), st.characters(blacklist_categories=("Cs",))), min_size=1)
hostname = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,9}){0,3}", fullmatch=True)
port = st.none() | st.integers(1, 65535)

# The cases that broke the URL before it was escaped, and plain ones that must keep working.
PASSWORDS = ["pw", "p@ss", "a:b", "x/y", "100%", "50%41", "h#sh", "q?x=1", "sp ace", "密码", "@:/%#? é"]


def _zhejiang(login: str, password: str, host: str, port: int | None, schema: str) -> dict[str, object]:
    return connection_overrides("zhejiang", Conn("mysql", host, port, login, password, schema))


@pytest.mark.parametrize("password", PASSWORDS)
def test_zhejiang_url_keeps_the_password(password: str) -> None:
    url = make_url(str(_zhejiang("reader", password, "db.zj", 3306, "views")["zhejiang_db_url"]))
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "mysql+pymysql", "reader", password, "db.zj", 3306, "views")


@settings(max_examples=300, deadline=None)
@given(login=credential, password=credential, host=hostname, port=port, schema=credential)
def test_zhejiang_url_round_trips_any_credentials(login: str, password: str, host: str, port: int | None,
                                                 schema: str) -> None:
    url = make_url(str(_zhejiang(login, password, host, port, schema)["zhejiang_db_url"]))
    assert (url.username, url.password, url.host, url.port, url.database) == (login, password, host, port, schema)
    # What the driver receives (pymysql's connect arguments) is the same.
    args = url.translate_connect_args(username="user")
    assert (args["user"], args["password"], args.get("database")) == (login, password, schema)


def test_zhejiang_url_given_in_extra_is_kept_as_it_is() -> None:
    given_url = "postgresql+psycopg://reader:p%40ss@db/views"
    assert connection_overrides("zhejiang", Conn("postgres", "other", extra=json.dumps({"url": given_url}))) == {
        "zhejiang_db_url": given_url}


@settings(max_examples=300, deadline=None)
@given(login=credential, host=hostname, port=port, path=st.text(st.one_of(st.sampled_from(TRICKY),
                                                                           st.characters(blacklist_categories=("Cs",)))))
def test_jiangsu_sftp_url_round_trips_user_and_path(login: str, host: str, port: int | None, path: str) -> None:
    out = connection_overrides("jiangsu", Conn("sftp", host, port, login, "pw@:/", extra=json.dumps({"path": path})))
    location = SftpLocation.parse(out["jiangsu_sftp_url"])
    assert (location.user, location.host, location.port, location.path) == (
        login, host, port or 22, "/" + path.lstrip("/"))
    assert out["jiangsu_sftp_password"] == "pw@:/"  # beside the URL, never inside it


@pytest.mark.parametrize("user", ["hub", "hub@js", "a:b", "x/y", "50%41", "用户 one"])
def test_jiangsu_sftp_users_that_broke_the_url(user: str) -> None:
    out = connection_overrides("jiangsu", Conn("sftp", "drop.js", 22, user, schema="/out dir/#1"))
    location = SftpLocation.parse(out["jiangsu_sftp_url"])
    assert (location.user, location.path) == (user, "/out dir/#1")


@pytest.mark.parametrize("province", PROVINCES)
def test_every_province_maps_a_connection(province: str) -> None:
    """The registry reaches every province's mapping; a bare Connection yields only known settings."""
    out = connection_overrides(province, Conn(extra=json.dumps({"path": "/srv/drop"})))
    assert set(out) <= set(ExchangeSettings.model_fields), out


@pytest.mark.parametrize("province", ["hainan", "../jiangsu", "jiangsu.sftp", ""])
def test_an_unknown_province_has_no_connection_mapping(province: str) -> None:
    with pytest.raises(KeyError, match="no connection mapping"):
        connection_overrides(province, Conn())
