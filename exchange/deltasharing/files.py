"""A grant's masked, row-filtered view at one lake snapshot, materialised once as a Parquet file to serve.

The rows are exactly an extract's (the same query, :func:`exchange.access.extract.grant_query`, ordered by
the dataset's key): masking and row filtering are decided by exchange/access/policy.py, nowhere here. The
file name carries a digest of the view's lineage (grant id and signature, the masked select list, the row
filter and its values under the dataset's current contract), so a tightened contract or a changed grant
never meets a file cut under the old terms, and a URL issued for the old file stops matching.

Files live in EXCHANGE_HOME/delta-sharing, written atomically (exchange/atomic.py) with a sidecar JSON recording
rows, size and SHA-256 (what the download log carries). Snapshots are immutable, so a file once written
is reused by every later request for that view and snapshot.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from exchange.access.extract import grant_query
from exchange.access.models import SignedGrant
from exchange.access.terms import grant_view
from exchange.atomic import atomic_path, write_text
from exchange.errors import BadInput
from exchange.signing.canonical import document_digest, file_sha256

FOLDER = "delta-sharing"
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class SharedFile(BaseModel):
    """One materialised file: which grant's view at which snapshot, and what it holds."""

    model_config = ConfigDict(frozen=True)

    grant_id: str = Field(description="Grant whose view the file holds")
    dataset: str = Field(description="Dataset (the shared table's name)")
    snapshot_id: int = Field(description="Lake snapshot (the table version)")
    file: str = Field(description="File name, as named in its URL")
    rows: int = Field(description="Rows in the file")
    size: int = Field(description="Bytes")
    sha256: str = Field(description="SHA-256 of the file")


def view_digest(signed: SignedGrant) -> str:
    """SHA-256 of everything that decides the view's content except the snapshot (AccessDenied if the grant's
    view cannot be served under the current contract)."""
    permitted = grant_view(signed.grant)
    return document_digest({
        "grant": signed.grant.id, "signature": signed.signature.value, "dataset": signed.grant.dataset,
        "select": permitted.select, "where": permitted.row_filter.sql,
        "params": [str(p) for p in permitted.row_filter.params],
    })


def file_name(signed: SignedGrant, snapshot_id: int) -> str:
    """The name of the grant's current view at `snapshot_id` (changes whenever the view's lineage does)."""
    return f"{signed.grant.dataset}.{view_digest(signed)[:32]}.s{int(snapshot_id)}.parquet"


def file_path(home: Path, name: str) -> Path:
    """Where a materialised file of that name lives."""
    return home / FOLDER / name


def materialise(con: duckdb.DuckDBPyConnection, home: Path, signed: SignedGrant, snapshot_id: int) -> SharedFile:
    """The grant's view at `snapshot_id` as a Parquet file under EXCHANGE_HOME/delta-sharing (written once).

    `con` is a lake connection (``USE lake`` done); BadInput when the dataset had no table at that snapshot.
    """
    name = file_name(signed, snapshot_id)
    path = file_path(home, name)
    sidecar = path.with_suffix(".json")
    with writer_lock(name):
        if sidecar.exists() and path.exists():
            return SharedFile.model_validate_json(sidecar.read_text(encoding="utf-8"))
        sql, params, _ = grant_query(signed.grant, snapshot_id)
        with atomic_path(path) as tmp:
            target = str(tmp).replace("'", "''")
            try:
                counted = con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)", params).fetchone()
            except duckdb.CatalogException:
                raise BadInput(f"table {signed.grant.dataset} has no version {snapshot_id}: the dataset was not "
                               "in the lake yet at that snapshot") from None
        shared = SharedFile(grant_id=signed.grant.id, dataset=signed.grant.dataset, snapshot_id=snapshot_id,
                            file=name, rows=int(counted[0]) if counted else 0, size=path.stat().st_size,
                            sha256=file_sha256(path))
        write_text(sidecar, shared.model_dump_json(indent=2))
        return shared


def file_schema(home: Path, shared: SharedFile) -> pa.Schema:
    """The Arrow schema of a materialised file (from its footer: no data read)."""
    return pq.read_schema(file_path(home, shared.file))


def writer_lock(name: str) -> threading.Lock:
    """The lock one server's threads take to write the file `name`."""
    # Threads of one server share temp names (pid-based), so one writer per file at a time within a process;
    # across processes the atomic rename keeps readers from ever seeing a partial file.
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())
