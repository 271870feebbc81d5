"""Commit one batch as one DuckLake snapshot: accepted rows, quarantined rows and the ledger row.

The ledger table (exchange_batches) makes a commit idempotent: a batch already in it is never written
again, so retries and re-runs of a window add no rows and no snapshot.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from exchange.datasets import TIMESTAMP
from exchange.lake import files as lake_files
from exchange.lake.connect import LAKE, META, duck_type, ensure_table

LEDGER = "exchange_batches"
QUARANTINE = "quarantine"

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("batch_id", pa.string()),
        pa.field("province", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("window_start", TIMESTAMP),
        pa.field("window_end", TIMESTAMP),
        pa.field("watermark", TIMESTAMP),
        pa.field("pulled", pa.int64()),
        pa.field("accepted", pa.int64()),
        pa.field("quarantined", pa.int64()),
        pa.field("contract_id", pa.string()),
        pa.field("contract_version", pa.string()),
    ]
)


@dataclass(frozen=True)
class DataFile:
    """A Parquet file a snapshot added to a lake table."""

    table: str
    location: str  # a local path or an s3:// URL
    relative: str
    rows: int
    size: int

    @property
    def path(self) -> Path:
        """The file as a local path (meaningful when the data path is a folder, not s3://)."""
        return Path(self.location)


@dataclass(frozen=True)
class CommitResult:
    """What a commit did: the snapshot that holds the batch, and whether this call wrote it."""

    snapshot_id: int
    written: bool


def with_lineage(table: pa.Table, province: str, batch_id: str) -> pa.Table:
    """Add the lake's lineage columns (province, batch_id)."""
    n = table.num_rows
    table = table.append_column("province", pa.array([province] * n, pa.string()) if n else pa.array([], pa.string()))
    return table.append_column("batch_id", pa.array([batch_id] * n, pa.string()) if n else pa.array([], pa.string()))


def snapshot_of(con: duckdb.DuckDBPyConnection, batch_id: str) -> int | None:
    """The snapshot whose commit info names this batch, if it was committed."""
    row = con.execute(
        f"SELECT max(snapshot_id) FROM {LAKE}.snapshots() "
        "WHERE json_extract_string(commit_extra_info, '$.batch_id') = ?",
        [batch_id],
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def commit_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    dataset: str,
    dataset_schema: pa.Schema,
    ledger_row: dict[str, Any],
    accepted: pa.Table,
    quarantined: pa.Table,
) -> CommitResult:
    """Write the batch in one transaction (one snapshot), unless it is already in the lake."""
    batch_id = str(ledger_row["batch_id"])
    existing = snapshot_of(con, batch_id)
    if existing is not None:
        return CommitResult(existing, written=False)
    province = str(ledger_row["province"])
    lake_schema = dataset_schema.append(pa.field("province", pa.string())).append(pa.field("batch_id", pa.string()))
    ensure_table(con, dataset, lake_schema)
    ensure_table(con, QUARANTINE, quarantined.schema)
    ensure_table(con, LEDGER, LEDGER_SCHEMA)
    rows = with_lineage(accepted, province, batch_id)
    ledger = pa.Table.from_pylist([ledger_row], schema=LEDGER_SCHEMA)
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("incoming_rows", rows)
        con.register("incoming_quarantine", quarantined)
        con.register("incoming_ledger", ledger)
        # Same transaction, same snapshot: the new column and the first rows that carry it appear together.
        add_missing_columns(con, dataset, rows.schema)
        if rows.num_rows:
            # By name: after a column was added, older and newer batches differ in columns and order.
            con.execute(f'INSERT INTO {LAKE}."{dataset}" BY NAME SELECT * FROM incoming_rows')
        if quarantined.num_rows:
            con.execute(f"INSERT INTO {LAKE}.{QUARANTINE} SELECT * FROM incoming_quarantine")
        con.execute(f"INSERT INTO {LAKE}.{LEDGER} SELECT * FROM incoming_ledger")
        info = json.dumps({"batch_id": batch_id, "province": province, "dataset": dataset}, sort_keys=True)
        con.execute(
            f"CALL {LAKE}.set_commit_message('exchange-hub', ?, extra_info => ?)",
            [f"batch {batch_id}", info],
        )
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT has already ended the transaction; a second error here would hide the first.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    finally:
        for view in ("incoming_rows", "incoming_quarantine", "incoming_ledger"):
            con.unregister(view)
    snapshot = snapshot_of(con, batch_id)
    assert snapshot is not None, "a committed batch must have a snapshot"
    return CommitResult(snapshot, written=True)


def add_missing_columns(con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema) -> list[str]:
    """Add to the lake table every column of `schema` it lacks (a newer contract's optional column).

    DuckLake records an added column in the catalog only: existing Parquet files are not rewritten, their
    rows read the new column as NULL, and snapshots before the change keep their old schema.
    """
    existing = {
        str(row[0])
        for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ?", [LAKE, table]
        ).fetchall()
    }
    added = [f for f in schema if f.name not in existing]
    for field in added:
        con.execute(f'ALTER TABLE {LAKE}."{table}" ADD COLUMN "{field.name}" {duck_type(field.type)}')
    return [f.name for f in added]


def files_added(con: duckdb.DuckDBPyConnection, snapshot_id: int, root: Path | str) -> list[DataFile]:
    """Every data file the snapshot added, with its path resolved under `root` (the lake's data path)."""
    rows = con.execute(
        f"""
        SELECT t.table_name, s.path, s.path_is_relative, t.path, t.path_is_relative,
               f.path, f.path_is_relative, f.record_count, f.file_size_bytes
        FROM {META}.ducklake_data_file f
        JOIN {META}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
        JOIN {META}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
        WHERE f.begin_snapshot = ?
        ORDER BY t.table_name, f.path
        """,
        [snapshot_id],
    ).fetchall()
    files = []
    for table, s_path, s_rel, t_path, t_rel, f_path, f_rel, count, size in rows:
        # Strings, not Paths: the data path may be s3://bucket/prefix/, which pathlib would mangle.
        location = lake_files.resolve(str(root), [(s_path, s_rel), (t_path, t_rel), (f_path, f_rel)])
        relative = lake_files.relative_to(str(root), location)
        files.append(DataFile(str(table), location, relative, int(count), int(size)))
    return files


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?", [LAKE, table]
    ).fetchone()
    return bool(row and row[0])


def ledger_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every committed batch's ledger row (empty before the first commit)."""
    if not _has_table(con, LEDGER):
        return []
    return con.execute(f"SELECT * FROM {LAKE}.{LEDGER} ORDER BY batch_id").to_arrow_table().to_pylist()


def watermark(con: duckdb.DuckDBPyConnection, province: str, dataset: str) -> datetime | None:
    """The latest update time already committed for (province, dataset), or None before the first batch."""
    if not _has_table(con, LEDGER):
        return None
    row = con.execute(
        f"SELECT max(watermark) FROM {LAKE}.{LEDGER} WHERE province = ? AND dataset = ?", [province, dataset]
    ).fetchone()
    value = row[0] if row else None
    return value if isinstance(value, datetime) else None
