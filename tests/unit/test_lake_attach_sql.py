"""`exchange lake attach-sql`: the printed statements, run by a separate stock duckdb process that imports
nothing of ours, attach the lake read-only and see every row the hub sees - the live lake and a copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from adapters.base import sandbox_for
from exchange.cli import app
from exchange.hub import Hub
from exchange.lake.connect import connect
from exchange.lake.outside import Extensions, attach_statements
from exchange.pipeline import run_exchange
from exchange.synthetic import generate
from tests.hubs import sandbox_hub

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)
# -I: isolated mode, so neither PYTHONPATH nor the working folder can lend the child our package.
STOCK_DUCKDB = """
import sys, duckdb
assert "exchange" not in sys.modules
con = duckdb.connect()
con.execute(sys.stdin.read())
print(con.execute("SELECT count(*) FROM e_license").fetchone()[0])
try:
    con.execute("INSERT INTO e_license SELECT * FROM e_license LIMIT 1")
except duckdb.Error as exc:
    print("read-only:", type(exc).__name__)
"""


@pytest.fixture
def hub(home: Path) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    hub = sandbox_hub(home, sandbox)
    sandbox.seed("e_license", generate("e_license", "jiangsu", 120, seed=5, start=START, end=END))
    assert run_exchange("jiangsu", "e_license", START, END, hub).status == "committed"
    return hub


def _stock_duckdb(sql: str) -> list[str]:
    done = subprocess.run([sys.executable, "-I", "-c", STOCK_DUCKDB], input=sql, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")


def _attach_sql(*args: str) -> str:
    result = CliRunner().invoke(app, ["lake", "attach-sql", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _hub_count(hub: Hub) -> int:
    with connect(hub.settings, read_only=True) as con:
        row = con.execute("SELECT count(*) FROM e_license").fetchone()
    assert row is not None and row[0] > 0
    return int(row[0])


def test_a_stock_duckdb_reads_the_live_lake(hub: Hub) -> None:
    sql = _attach_sql()
    assert "READ_ONLY" in sql and "INSTALL ducklake; LOAD ducklake;" in sql
    count, denied = _stock_duckdb(sql)[:2]
    assert int(count) == _hub_count(hub)
    assert denied.startswith("read-only:"), "the printed ATTACH must not let an outside reader write"


def test_a_stock_duckdb_reads_a_copy_in_another_folder(hub: Hub, tmp_path: Path) -> None:
    expected = _hub_count(hub)
    copy = tmp_path / "elsewhere" / "lake copy"
    shutil.copytree(hub.layout.lake, copy)
    # The original goes away: only OVERRIDE_DATA_PATH to the copy's data/ can find the Parquet files now.
    shutil.move(hub.layout.lake, tmp_path / "gone")
    count = _stock_duckdb(_attach_sql("--copy", str(copy)))[0]
    assert int(count) == expected


@pytest.mark.parametrize(("catalog", "data", "loads"), [
    ("/h/lake/catalog.ducklake", "/h/lake/data/", ["ducklake"]),
    ("postgresql://u@db:5432/lake", "/h/lake/data/", ["ducklake", "postgres"]),
    ("postgres:dbname=lake host=db", "s3://bucket/lake/", ["ducklake", "postgres", "httpfs"]),
    ("/it's/catalog.ducklake", "s3://b/p/", ["ducklake", "httpfs"]),
])
def test_statements_load_what_the_catalog_and_data_need(catalog: str, data: str, loads: list[str]) -> None:
    ext = Extensions(Path("/x/ducklake.duckdb_extension"), Path("/x/postgres_scanner.duckdb_extension"),
                     Path("/x/httpfs.duckdb_extension"))
    statements = attach_statements(catalog, data, ext)
    assert [s.split("/x/")[1].split(".")[0].removesuffix("_scanner") for s in statements[:-2]] == loads
    attach = statements[-2]
    assert attach.startswith("ATTACH 'ducklake:") and attach.endswith("READ_ONLY);")
    assert "OVERRIDE_DATA_PATH TRUE" in attach and f"DATA_PATH '{data}'" in attach
    assert catalog.replace("'", "''").removeprefix("postgresql://") in attach
    assert statements[-1] == "USE lake;"
    assert all(s.endswith(";") for s in statements)


@settings(max_examples=60, deadline=None)
@given(catalog=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1),
       data=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1))
def test_any_path_stays_one_statement_with_its_value(catalog: str, data: str) -> None:
    """Quotes, semicolons and comment markers in a path never split or end a statement early."""
    ext = Extensions(Path(f"/x/{data}/ducklake.duckdb_extension"))
    statements = attach_statements(catalog, data, ext)
    parsed = duckdb.connect().extract_statements("\n".join(statements))
    assert [p.type.name for p in parsed] == ["LOAD", "ATTACH", "SET"]
    assert [p.query.strip().removesuffix(";") for p in parsed] == [s.removesuffix(";") for s in statements]
