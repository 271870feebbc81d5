"""Attach the DuckLake catalog, loading the extension offline from its wheel."""

from __future__ import annotations

import fcntl
import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from exchange.config import ExchangeSettings, Layout
from exchange.errors import TerminalError

LAKE = "lake"
META = f"__ducklake_metadata_{LAKE}"


def extension_path() -> Path:
    """The DuckLake extension file shipped by the duckdb-extension-ducklake wheel (INSTALL needs a network)."""
    spec = importlib.util.find_spec("duckdb_extension_ducklake")
    if spec is None or spec.origin is None:
        raise TerminalError("duckdb-extension-ducklake is not installed; run `make install`")
    path = Path(spec.origin).parent / "extensions" / f"v{duckdb.__version__}" / "ducklake.duckdb_extension"
    if not path.exists():
        raise TerminalError(f"no DuckLake extension for duckdb {duckdb.__version__} at {path}")
    return path


def catalog_and_data(settings: ExchangeSettings) -> tuple[str, str]:
    """The catalog location and data path, defaulting to files under EXCHANGE_HOME/lake."""
    layout = Layout(settings.home)
    catalog = settings.lake_catalog or str(layout.lake_catalog_file)
    data = settings.lake_data or str(layout.lake_data) + "/"
    return catalog, data


_process_lock = threading.Lock()
_depth = 0


@contextmanager
def _catalog_lock(catalog: str, read_only: bool) -> Iterator[None]:
    """Serialize processes on a DuckDB-file catalog, which admits one writer process at a time.

    Re-entrant within a process (DuckDB's own file lock is per process, so nested connections in one
    process do not conflict); other processes wait instead of failing with "Could not set lock".
    A PostgreSQL catalog needs no such lock.
    """
    global _depth
    if catalog.startswith(("postgres:", "postgresql:")):
        yield
        return
    with _process_lock:
        first = _depth == 0
        _depth += 1
    handle = None
    try:
        if first:
            lock_path = Path(catalog).with_name(Path(catalog).name + ".lock")
            try:
                handle = lock_path.open("a")
            except OSError:
                if not read_only:
                    raise
                handle = None  # an auditor's read-only copy: nobody writes there, nothing to serialize
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        with _process_lock:
            _depth -= 1


@contextmanager
def connect(settings: ExchangeSettings, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with the lake attached as `lake` and selected, closed on exit.

    Inlining is off so every committed row lands in a Parquet file that manifests can hash.
    """
    catalog, data = catalog_and_data(settings)
    if not catalog.startswith(("postgres:", "postgresql:")):
        Path(catalog).parent.mkdir(parents=True, exist_ok=True)
        Path(data).mkdir(parents=True, exist_ok=True)
    with _catalog_lock(catalog, read_only):
        con = duckdb.connect()
        try:
            con.execute(f"LOAD '{extension_path()}'")
            # OVERRIDE_DATA_PATH: the catalog stores an absolute data path, but a home copied elsewhere (an
            # auditor's offline copy, a restored backup) must read the data where the settings say it is.
            options = f"DATA_PATH '{data}', DATA_INLINING_ROW_LIMIT 0, OVERRIDE_DATA_PATH TRUE"
            if read_only:
                options += ", READ_ONLY"
            con.execute(f"ATTACH 'ducklake:{catalog}' AS {LAKE} ({options})")
            con.execute(f"USE {LAKE}")
            yield con
        finally:
            con.close()


_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.date32(): "DATE",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.bool_(): "BOOLEAN",
}


def duck_type(t: pa.DataType) -> str:
    """The DuckDB column type for an Arrow type used in our schemas."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    return _DUCK_TYPES[t]


def ensure_table(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    """Create the lake table if it does not exist yet."""
    columns = ", ".join(f'"{f.name}" {duck_type(f.type)}' for f in schema)
    con.execute(f'CREATE TABLE IF NOT EXISTS {LAKE}."{name}" ({columns})')
