"""Lake connections reuse databases that loaded the DuckLake extension (exchange/lake/primed.py), and one use
leaves nothing for the next: the catalog is free for other processes, views, settings and secrets are gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from exchange.config import ExchangeSettings
from exchange.lake import primed
from exchange.lake.connect import LAKE, catalog_and_data, connect, extension_path, sql_literal


@pytest.fixture
def settings(tmp_path: Path) -> ExchangeSettings:
    primed.clear()
    return ExchangeSettings(home=tmp_path / "home")


def _loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every extension a primed database loads from now on."""
    loaded: list[str] = []
    original = primed.Primed.load

    def counting(self: primed.Primed, extension: Path) -> None:
        if str(extension) not in self.loaded:
            loaded.append(str(extension))
        original(self, extension)

    monkeypatch.setattr(primed.Primed, "load", counting)
    return loaded


def test_the_extension_is_loaded_once_for_consecutive_connections(
    settings: ExchangeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _loads(monkeypatch)
    for _ in range(3):
        with connect(settings) as con:
            con.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER)")
    with connect(settings, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert loaded == [str(extension_path())]


def test_a_use_leaves_no_view_setting_or_attached_lake_behind(settings: ExchangeSettings) -> None:
    with connect(settings) as con:
        con.register("leftover", con.execute("SELECT 1 AS x").to_arrow_table())
        con.execute("SET preserve_insertion_order = false")
        con.execute("CREATE TABLE kept (a INTEGER)")
    with connect(settings) as con:
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        assert ("leftover",) not in views
        assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchone() == (True,)
        assert con.execute("SELECT current_database()").fetchone() == (LAKE,)
    idle = primed._idle[-1].db
    databases = {row[0] for row in idle.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    assert LAKE not in databases and not any(d.startswith("__ducklake_metadata") for d in databases)


def test_after_a_use_another_process_can_write_the_catalog(settings: ExchangeSettings) -> None:
    with connect(settings) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    assert primed._idle, "the database was kept for the next connection"
    catalog, data = catalog_and_data(settings)
    attach = (f"ATTACH {sql_literal('ducklake:' + catalog)} AS lake (DATA_PATH {sql_literal(data)}, "
              "DATA_INLINING_ROW_LIMIT 0)")
    other = (f"import duckdb; c = duckdb.connect(); c.execute({f'LOAD {sql_literal(str(extension_path()))}'!r}); "
             f"c.execute({attach!r}); c.execute('INSERT INTO lake.t VALUES (7)')")
    subprocess.run([sys.executable, "-c", other], check=True, timeout=300)
    with connect(settings, read_only=True) as con:
        assert con.execute("SELECT a FROM t").fetchall() == [(7,)]


def test_a_database_whose_use_failed_is_not_reused(settings: ExchangeSettings) -> None:
    with connect(settings) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    kept = primed._idle[-1]
    with pytest.raises(duckdb.Error), connect(settings) as con:
        con.execute("SELECT * FROM no_such_table")
    assert kept not in primed._idle  # the database of a failed use was closed
    with connect(settings) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
