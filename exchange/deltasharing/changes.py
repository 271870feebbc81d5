"""Change data feed for a shared table: what a grant's view gained and lost at each lake snapshot.

The changes come from DuckLake's change feed through exchange/access/changefeed.py (the same code that
advances query sandboxes): per snapshot v, the view's rows lost and gained between v-1 and v, passed through
the grant's own masking and row filter, so the feed shows exactly what the view showed. A row updated in
the lake is a delete of its old view row and an insert of its new one (no pre/post-image pairing); a row
that leaves the grant's row filter is a delete. The snapshot that created the table inserts its whole view.
Where the feed cannot say (expired snapshots, a schema change or compaction of the table), the request is
refused naming the version, rather than guessed.

Each version's changes are materialised once as Parquet with a ``_change_type`` column (insert / delete),
beside the table's version files (exchange/deltasharing/files.py), named after the same view lineage.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from exchange.access.changefeed import feed_window, view_changes
from exchange.access.extract import grant_query
from exchange.access.models import SignedGrant
from exchange.atomic import atomic_path, write_text
from exchange.deltasharing.files import SharedFile, file_path, view_digest, writer_lock
from exchange.errors import BadInput
from exchange.lake.connect import META
from exchange.signing.canonical import file_sha256

CHANGE_TYPE = "_change_type"


def changes_file_name(signed: SignedGrant, snapshot_id: int) -> str:
    """The name of the view's changes at `snapshot_id` (against the snapshot before it)."""
    return f"{signed.grant.dataset}.{view_digest(signed)[:32]}.changes.s{int(snapshot_id)}.parquet"


def table_exists_at(con: duckdb.DuckDBPyConnection, dataset: str, snapshot_id: int) -> bool:
    """Whether the lake had the dataset's table at the snapshot (from the catalog; no data read)."""
    row = con.execute(
        f"SELECT count(*) FROM {META}.ducklake_table t JOIN {META}.ducklake_schema s USING (schema_id) "
        "WHERE s.schema_name = 'main' AND t.table_name = $dataset AND t.begin_snapshot <= $at "
        "AND (t.end_snapshot IS NULL OR t.end_snapshot > $at)", {"dataset": dataset, "at": snapshot_id}).fetchone()
    return bool(row and row[0])


def _changes(con: duckdb.DuckDBPyConnection, signed: SignedGrant, snapshot_id: int) -> tuple[pa.Table, pa.Table]:
    dataset = signed.grant.dataset
    if not table_exists_at(con, dataset, snapshot_id):
        return pa.table({}), pa.table({})
    if snapshot_id == 0 or not table_exists_at(con, dataset, snapshot_id - 1):
        sql, params, _ = grant_query(signed.grant, snapshot_id)
        gained = con.execute(sql, params).to_arrow_table()
        return gained.schema.empty_table(), gained
    window = feed_window(con, dataset, snapshot_id - 1, snapshot_id, max_fraction=float("inf"))
    if window.unusable is not None:
        raise BadInput(f"no change data for version {snapshot_id} of {dataset}: {window.unusable}; read the "
                       "table's versions instead")
    if not (window.inserted or window.deleted):
        return pa.table({}), pa.table({})
    return view_changes(con, signed.grant, window)


def materialise_changes(con: duckdb.DuckDBPyConnection, home: Path, signed: SignedGrant,
                        snapshot_id: int) -> SharedFile | None:
    """The view's changes at `snapshot_id` as Parquet with ``_change_type`` (written once), or None when the
    snapshot changed nothing the grant's view shows."""
    name = changes_file_name(signed, snapshot_id)
    path = file_path(home, name)
    sidecar = path.with_suffix(".json")
    with writer_lock(name):
        if sidecar.exists():
            shared = SharedFile.model_validate_json(sidecar.read_text(encoding="utf-8"))
            return shared if shared.rows else None
        lost, gained = _changes(con, signed, snapshot_id)
        parts = [t.append_column(CHANGE_TYPE, pa.array([kind] * t.num_rows, pa.string()))
                 for t, kind in ((lost, "delete"), (gained, "insert")) if t.num_rows]
        rows = sum(t.num_rows for t in parts)
        if rows:
            with atomic_path(path) as tmp:
                pq.write_table(pa.concat_tables(parts), tmp)
        shared = SharedFile(grant_id=signed.grant.id, dataset=signed.grant.dataset, snapshot_id=snapshot_id,
                            file=name, rows=rows, size=path.stat().st_size if rows else 0,
                            sha256=file_sha256(path) if rows else "")
        write_text(sidecar, shared.model_dump_json(indent=2))
        return shared if rows else None
