"""`exchange lake attach-sql` on a lake whose catalog is PostgreSQL: the printed statements (with the postgres
extension's LOAD) let a separate stock duckdb process read as many rows as the hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.base import sandbox_for
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.synthetic import generate
from tests.integration.scaleout_servers import postgres_database
from tests.unit.test_lake_attach_sql import END, START, _attach_sql, _hub_count, _stock_duckdb

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_a_stock_duckdb_reads_a_lake_catalogued_in_postgresql(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with postgres_database() as catalog:
        monkeypatch.setenv("EXCHANGE_LAKE_CATALOG", catalog)
        sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
        env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
        hub = Hub(ExchangeSettings(home=home, lake_catalog=catalog, **env))
        sandbox.seed("e_license", generate("e_license", "jiangsu", 80, seed=3, start=START, end=END))
        assert run_exchange("jiangsu", "e_license", START, END, hub).status == "committed"

        sql = _attach_sql()
        assert "postgres_scanner.duckdb_extension" in sql and f"ducklake:postgres:{catalog}" in sql
        count, denied = _stock_duckdb(sql)[:2]
        assert int(count) == _hub_count(hub)
        assert denied.startswith("read-only:")
