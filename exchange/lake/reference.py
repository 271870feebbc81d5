"""The committed DuckLake as a :class:`~exchange.contracts.reference.LakeReference` for contract rules.

Each question opens its own short read-only connection: a DuckDB-file catalog is locked per process for
as long as a connection is open, and validation (GX) must not keep a committing process waiting.
Only this batch's values are sent to DuckDB, so an answer is never larger than the batch.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from exchange.config import ExchangeSettings
from exchange.contracts.reference import VERSION_COLUMN
from exchange.datasets import dataset as canonical_dataset
from exchange.lake.connect import LAKE, catalog_and_data, connect

_ASKED = "contract_reference_asked"


class DuckLakeReference:
    """Answers lake rules from the latest snapshot of the lake the settings point at."""

    def __init__(self, settings: ExchangeSettings) -> None:
        self._settings = settings

    def present(self, dataset: str, column: str, values: pa.Array) -> pa.Array:
        """Those of the distinct `values` that ``lake.<dataset>.<column>`` holds."""
        _check(dataset, column)
        if len(values) == 0 or not self._catalog_exists():
            return values.slice(0, 0)
        with connect(self._settings, read_only=True) as con:
            if not _has_table(con, dataset):
                return values.slice(0, 0)
            found = _ask(
                con,
                pa.table({"v": values}),
                f'SELECT DISTINCT held."{column}" AS v FROM {LAKE}."{dataset}" held '
                f'WHERE held."{column}" IN (SELECT v FROM {_ASKED})',
            )
        return found.column("v").combine_chunks().cast(values.type)

    def stale_keys(self, dataset: str, key: str, incoming: pa.Table) -> pa.Array:
        """Keys of `incoming` that ``lake.<dataset>`` holds with an equal or later updated_at."""
        _check(dataset, key)
        empty = incoming.column(key).combine_chunks().slice(0, 0)
        if incoming.num_rows == 0 or not self._catalog_exists():
            return empty
        with connect(self._settings, read_only=True) as con:
            if not _has_table(con, dataset):
                return empty
            found = _ask(
                con,
                incoming.select([key, VERSION_COLUMN]),
                f'SELECT DISTINCT a."{key}" AS k FROM {_ASKED} a JOIN {LAKE}."{dataset}" held '
                f'ON held."{key}" = a."{key}" WHERE held."{VERSION_COLUMN}" >= a."{VERSION_COLUMN}"',
            )
        return found.column("k").combine_chunks().cast(empty.type)

    def _catalog_exists(self) -> bool:
        # Attaching a missing DuckDB-file catalog would create it; before the first commit nothing is held.
        catalog, _ = catalog_and_data(self._settings)
        return catalog.startswith(("postgres:", "postgresql:")) or Path(catalog).exists()


def _check(dataset: str, column: str) -> None:
    # Names are interpolated into SQL: accept only canonical ones (contracts are checked the same way).
    if column not in canonical_dataset(dataset).schema.names:
        raise KeyError(f"dataset {dataset} has no column {column!r}")


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?", [LAKE, table]
    ).fetchone()
    return bool(row and row[0])


def _ask(con: duckdb.DuckDBPyConnection, asked: pa.Table, sql: str) -> pa.Table:
    con.register(_ASKED, asked)
    try:
        return con.execute(sql).to_arrow_table()
    finally:
        con.unregister(_ASKED)
