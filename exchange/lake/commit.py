"""Commit one batch as one DuckLake snapshot: accepted rows, quarantined rows and the ledger row.

The ledger table (exchange_batches) makes a commit idempotent: a batch already in it is never written
again, so retries and re-runs of a window add no rows and no snapshot.

The snapshot's commit info names the batch and carries ``batch_sha256``, the digest of the batch's ledger row
(window, watermark, counts, contract id and version). The signed manifest cannot be digested into the snapshot
(it names the snapshot id, known only after the commit), but it records every field of the ledger row, so
verify recomputes the digest from the manifest and checks snapshot and manifest against each other.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from exchange.datasets import TIMESTAMP
from exchange.faults import crash_point
from exchange.lake import files as lake_files
from exchange.lake.connect import LAKE, META, duck_type, ensure_table, sql_literal
from exchange.signing.canonical import document_digest
from exchange.stages import LedgerRow

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
    kind: Literal["data", "delete"] = "data"  # delete: a DuckLake delete file (rows = the rows it deletes)

    @property
    def path(self) -> Path:
        """The file as a local path (meaningful when the data path is a folder, not s3://)."""
        return Path(self.location)


@dataclass(frozen=True)
class CommitResult:
    """What a commit did: the snapshot that holds the batch, and whether this call wrote it."""

    snapshot_id: int
    written: bool


Rows: TypeAlias = pa.Table | Path
"""Records to commit: a table in memory, or a Parquet file DuckDB reads itself (memory stays bounded)."""


def _count(rows: Rows) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else int(pq.ParquetFile(rows).metadata.num_rows)


def _schema(rows: Rows) -> pa.Schema:
    return rows.schema if isinstance(rows, pa.Table) else pq.read_schema(rows)


def _source(con: duckdb.DuckDBPyConnection, name: str, rows: Rows) -> str:
    """What SQL reads `rows` from: a table registered as `name`, or DuckDB's Parquet reader on the file,
    which streams it (3M rows: 0.3 GB peak, where a pyarrow dataset scan read whole row groups ahead: 0.9 GB).
    Not a view: the connection's default catalog is the lake, where a view would be a snapshot of its own."""
    if isinstance(rows, pa.Table):
        con.register(name, rows)
        return name
    return f"read_parquet({sql_literal(str(rows))})"


def _claimed(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # one spelling, whatever the source
    return value


# Fixed, not LEDGER_SCHEMA.names: a ledger column added later must not change what older snapshots claim.
CLAIM_FIELDS = ("batch_id", "province", "dataset", "window_start", "window_end", "watermark", "pulled",
                "accepted", "quarantined", "contract_id", "contract_version")


def batch_claim(ledger_row: LedgerRow) -> dict[str, object]:
    """The claimed ledger-row fields as JSON values (UTC timestamps with microseconds)."""
    return {name: _claimed(getattr(ledger_row, name)) for name in CLAIM_FIELDS}


def batch_digest(ledger_row: LedgerRow) -> str:
    """SHA-256 of the RFC 8785 canonical JSON of the batch's ledger row: what its snapshot's commit info carries."""
    return document_digest(batch_claim(ledger_row))


def commit_infos(con: duckdb.DuckDBPyConnection) -> dict[int, dict[str, Any]]:
    """snapshot id -> parsed commit extra info, for every snapshot whose commit info names a batch."""
    rows = con.execute(
        f"SELECT snapshot_id, commit_extra_info FROM {LAKE}.snapshots() WHERE commit_extra_info IS NOT NULL"
    ).fetchall()
    infos: dict[int, dict[str, Any]] = {}
    for snapshot, raw in rows:
        try:
            info = json.loads(raw)
        except (TypeError, ValueError):
            info = None
        if isinstance(info, dict) and "batch_id" in info:
            infos[int(snapshot)] = info
    return infos


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
    ledger_row: LedgerRow,
    accepted: Rows,
    quarantined: Rows,
    deletions: pa.Table | None = None,
) -> CommitResult:
    """Write the batch in one transaction (one snapshot), unless it is already in the lake."""
    batch_id = ledger_row.batch_id
    existing = snapshot_of(con, batch_id)
    if existing is not None:
        return CommitResult(existing, written=False)
    province = ledger_row.province
    lake_schema = dataset_schema.append(pa.field("province", pa.string())).append(pa.field("batch_id", pa.string()))
    ensure_table(con, dataset, lake_schema)
    ensure_table(con, QUARANTINE, _schema(quarantined))
    ensure_table(con, LEDGER, LEDGER_SCHEMA)
    ledger = pa.Table.from_pylist([{name: getattr(ledger_row, name) for name in LEDGER_SCHEMA.names}],
                                  schema=LEDGER_SCHEMA)
    con.execute("BEGIN TRANSACTION")
    try:
        incoming_rows = _source(con, "incoming_rows", accepted)
        incoming_quarantine = _source(con, "incoming_quarantine", quarantined)
        con.register("incoming_ledger", ledger)
        # Same transaction, same snapshot: the new column and the first rows that carry it appear together.
        add_missing_columns(con, dataset, _schema(accepted).append(lake_schema.field("province"))
                            .append(lake_schema.field("batch_id")))
        if _count(accepted):
            # By name: after a column was added, older and newer batches differ in columns and order.
            con.execute(f'INSERT INTO {LAKE}."{dataset}" BY NAME '
                        f"SELECT *, ?::VARCHAR AS province, ?::VARCHAR AS batch_id FROM {incoming_rows}",
                        [province, batch_id])
        # A lake made before the quarantine gained a column (as_sent) gets it here, in the same snapshot.
        add_missing_columns(con, QUARANTINE, _schema(quarantined))
        if _count(quarantined):
            con.execute(f"INSERT INTO {LAKE}.{QUARANTINE} BY NAME SELECT * FROM {incoming_quarantine}")
        if deletions is not None and deletions.num_rows:
            _apply_deletions(con, dataset, province, deletions)
        con.execute(f"INSERT INTO {LAKE}.{LEDGER} SELECT * FROM incoming_ledger")
        info = json.dumps({"batch_id": batch_id, "province": province, "dataset": dataset,
                           "batch_sha256": batch_digest(ledger_row)}, sort_keys=True)
        con.execute(
            f"CALL {LAKE}.set_commit_message('exchange-hub', ?, extra_info => ?)",
            [f"batch {batch_id}", info],
        )
        crash_point("commit.before_lake_commit")  # the data files are written; the catalog does not know them
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT has already ended the transaction; a second error here would hide the first.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    finally:
        for view in ("incoming_rows", "incoming_quarantine", "incoming_ledger"):
            con.unregister(view)  # a no-op for a file, which is read where it lies
    snapshot = snapshot_of(con, batch_id)
    assert snapshot is not None, "a committed batch must have a snapshot"
    return CommitResult(snapshot, written=True)


def _apply_deletions(con: duckdb.DuckDBPyConnection, dataset: str, province: str, deletions: pa.Table) -> None:
    """Remove the province's rows of records it deleted (a DuckLake delete file in the batch's snapshot).

    Only versions updated at or before the deletion go: a record re-issued after its deletion stays.
    """
    key, deleted_at = deletions.schema.names
    con.register("incoming_deletions", deletions)
    try:
        con.execute(
            f'DELETE FROM {LAKE}."{dataset}" AS t USING incoming_deletions AS d '
            f'WHERE t."{key}" = d."{key}" AND t.province = ? AND t.updated_at <= d."{deleted_at}"',
            [province],
        )
    finally:
        con.unregister("incoming_deletions")


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
    """Every data and delete file the snapshot added, with its path resolved under `root` (the data path)."""
    files = []
    sources: tuple[tuple[Literal["data", "delete"], str, str], ...] = (
        ("data", "ducklake_data_file", "record_count"), ("delete", "ducklake_delete_file", "delete_count"))
    for kind, table, count_column in sources:
        rows = con.execute(
            f"""
            SELECT t.table_name, s.path, s.path_is_relative, t.path, t.path_is_relative,
                   f.path, f.path_is_relative, f.{count_column}, f.file_size_bytes
            FROM {META}.{table} f
            JOIN {META}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
            JOIN {META}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
            WHERE f.begin_snapshot = ?
            ORDER BY t.table_name, f.path
            """,
            [snapshot_id],
        ).fetchall()
        for name, s_path, s_rel, t_path, t_rel, f_path, f_rel, count, size in rows:
            # Strings, not Paths: the data path may be s3://bucket/prefix/, which pathlib would mangle.
            location = lake_files.resolve(str(root), [(s_path, s_rel), (t_path, t_rel), (f_path, f_rel)])
            relative = lake_files.relative_to(str(root), location)
            files.append(DataFile(str(name), location, relative, int(count), int(size), kind))
    return files


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?", [LAKE, table]
    ).fetchone()
    return bool(row and row[0])


def ledger_rows(con: duckdb.DuckDBPyConnection, batch_id: str | None = None) -> list[LedgerRow]:
    """Every committed batch's ledger row, or only `batch_id`'s (empty before the first commit)."""
    if not _has_table(con, LEDGER):
        return []
    columns = ", ".join(LEDGER_SCHEMA.names)  # by name: a column added later is not part of the row's model
    where, params = ("WHERE batch_id = ?", [batch_id]) if batch_id is not None else ("", [])
    table = con.execute(f"SELECT {columns} FROM {LAKE}.{LEDGER} {where} ORDER BY batch_id", params).to_arrow_table()
    return [LedgerRow.model_validate(row) for row in table.to_pylist()]


def watermark(con: duckdb.DuckDBPyConnection, province: str, dataset: str) -> datetime | None:
    """The latest update time already committed for (province, dataset), or None before the first batch."""
    if not _has_table(con, LEDGER):
        return None
    row = con.execute(
        f"SELECT max(watermark) FROM {LAKE}.{LEDGER} WHERE province = ? AND dataset = ?", [province, dataset]
    ).fetchone()
    value = row[0] if row else None
    return value if isinstance(value, datetime) else None
