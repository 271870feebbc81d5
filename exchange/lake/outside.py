"""`exchange lake attach-sql`: the statements a stock DuckDB runs to read the lake without our code.

An auditor or a department's analyst opens the lake with their own `duckdb` and the ducklake extension:
these are the same LOAD and ATTACH the hub runs (exchange/lake/connect.py), spelled out, always READ_ONLY.
A copied lake (an auditor's offline copy, a restored backup) sits somewhere else than the data path its
catalog recorded, so the ATTACH names the copy's data folder and sets OVERRIDE_DATA_PATH.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exchange.config import ExchangeSettings
from exchange.errors import NotFound
from exchange.lake.connect import (
    LAKE,
    catalog_and_data,
    ducklake_catalog,
    extension_path,
    httpfs_extension_path,
    is_postgres,
    postgres_extension_path,
    sql_literal,
)
from exchange.lake.files import is_remote

CATALOG_FILE = "catalog.ducklake"  # Layout.lake_catalog_file's name: a copy of EXCHANGE_HOME/lake has it
DATA_FOLDER = "data"


@dataclass(frozen=True)
class Extensions:
    """The extension files a machine without network LOADs (INSTALL would download them)."""

    ducklake: Path
    postgres: Path | None = None
    httpfs: Path | None = None


def attach_statements(catalog: str, data: str, extensions: Extensions) -> list[str]:
    """LOAD, ATTACH ... READ_ONLY and USE, each one complete statement ending in `;`.

    `catalog` is a DuckDB file path or a PostgreSQL conninfo/URI; `data` the Parquet folder or s3:// prefix.
    """
    loads = [extensions.ducklake]
    if is_postgres(catalog) and extensions.postgres:
        loads.append(extensions.postgres)
    if is_remote(data) and extensions.httpfs:
        loads.append(extensions.httpfs)
    statements = [f"LOAD {sql_literal(str(path))};" for path in loads]
    options = f"DATA_PATH {sql_literal(data)}, OVERRIDE_DATA_PATH TRUE, READ_ONLY"
    statements.append(f"ATTACH {sql_literal('ducklake:' + ducklake_catalog(catalog))} AS {LAKE} ({options});")
    statements.append(f"USE {LAKE};")
    return statements


def copy_location(folder: Path) -> tuple[str, str]:
    """The catalog file and data folder of a copy of EXCHANGE_HOME/lake in `folder`."""
    folder = folder.expanduser().resolve()
    catalog = folder / CATALOG_FILE
    if not catalog.is_file():
        raise NotFound(f"no lake catalog at {catalog}: --copy names a copy of EXCHANGE_HOME/lake "
                       f"(the folder holding {CATALOG_FILE} and {DATA_FOLDER}/)")
    return str(catalog), str(folder / DATA_FOLDER) + "/"


def attach_script(settings: ExchangeSettings, copy: Path | None = None) -> str:
    """The whole script to paste into `duckdb`: comments saying what to adapt, then the statements."""
    catalog, data = copy_location(copy) if copy else catalog_and_data(settings)
    if not copy and not is_postgres(catalog) and not Path(catalog).exists():
        raise NotFound(f"no lake at {catalog} yet: nothing has been committed under this EXCHANGE_HOME")
    extensions = Extensions(
        extension_path(),
        postgres_extension_path() if is_postgres(catalog) else None,
        httpfs_extension_path() if is_remote(data) else None,
    )
    lines = [
        "-- Read the exchange lake with a stock DuckDB (duckdb + the ducklake extension), read-only.",
        "-- With network access, replace the LOAD lines by: INSTALL ducklake; LOAD ducklake;",
    ]
    if is_postgres(catalog):
        lines.append("-- (and INSTALL postgres; LOAD postgres; for the PostgreSQL catalog)")
    if is_remote(data):
        lines.append("-- (and INSTALL httpfs; LOAD httpfs;) then create an S3 secret with your own credentials:")
        lines.append("-- CREATE SECRET (TYPE s3, KEY_ID '...', SECRET '...', ENDPOINT '...', URL_STYLE 'path');")
    return "\n".join(lines + attach_statements(catalog, data, extensions)) + "\n"
