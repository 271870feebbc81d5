"""Sandboxed department queries: the SQL runs in its own DuckDB holding only the permitted, masked views.

The sandbox is a fresh in-memory DuckDB. Each usable grant's view (columns, row filter and masking
applied by :func:`exchange.access.extract.grant_query`, at one lake snapshot) is streamed into it as a
table named after the dataset. The lake connection is closed before the department's SQL runs, so
no base table, file or extension is reachable from it; masked values stay masked because clear values
never enter the sandbox. Defence in depth on top: one SELECT statement only (DuckDB's own parser
decides), external access, extension loading and Python replacement scans disabled and the
configuration locked at connect time, a row/byte limit on the result and a wall-clock limit.

Cost: building the sandbox is O(size of the permitted views). The CLI builds one per query; the API
keeps built sandboxes per (grant views, snapshot) and runs each query on a cursor of its own
(exchange/access/viewcache.py), so the copy is paid once, not per query, and a new snapshot advances the
older snapshot's sandbox by what changed (exchange/access/changefeed.py) instead of copying it again.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from exchange.access.errors import BadQuery, QueryRejected, QueryTimeout, ResultTooLarge
from exchange.access.extract import grant_query
from exchange.access.models import SignedGrant
from exchange.access.watchdog import Watchdog, thread_watchdog
from exchange.datasets import DATASETS
from exchange.lake.connect import LAKE
from exchange.signing.canonical import sha256_hex

# Set at connect time. The in-memory database would otherwise report where the hub runs: DuckDB derives
# home_directory, secret_directory, extension paths and the spill folder from the process's home and
# working directory (visible through duckdb_settings(), current_setting(), duckdb_extensions()).
SANDBOX_CONFIG: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    # The Python client otherwise resolves an unknown table name to a variable in the caller's frames.
    "python_enable_replacements": False,
    "home_directory": "/nonexistent",
    "temp_directory": "",  # no spilling to disk: the sandbox is in memory under its memory limit anyway
}
# Set right after connecting, in this order. Disabling external access at connect time would make DuckDB
# list the working directory in allowed_paths; disabling it by SET does not, and then nothing can undo it.
SANDBOX_LOCK = (
    "SET enable_external_access = false",  # files, globs, ATTACH, COPY, INSTALL, network
    "SET lock_configuration = true",
)
LOAD_BATCH_ROWS = 100_000


@dataclass(frozen=True)
class QueryLimits:
    """How much one query may return and how long it may run."""

    max_rows: int = 10_000
    max_bytes: int = 64 << 20
    timeout_seconds: float = 10.0
    memory_limit: str = "1GB"
    threads: int = 2
    # Who decides that timeout_seconds have passed: a real timer thread, or a test's own (see watchdog.py).
    watchdog: Watchdog = field(default=thread_watchdog, compare=False, repr=False)


@dataclass(frozen=True)
class QueryResult:
    """A permitted query's answer and the facts the access log records about it."""

    table: pa.Table
    snapshot_id: int
    grants: dict[str, str]  # dataset -> grant id the sandbox view was built from
    result_sha256: str
    sql_sha256: str


def check_statement(sql: str) -> str:
    """The single SELECT statement in `sql`, or QueryRejected/BadQuery saying why not.

    DuckDB's own parser splits and classifies the text, so comments, string literals and odd spacing
    cannot hide a second statement or a non-SELECT one.
    """
    if not sql.strip():
        raise BadQuery("empty query")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise BadQuery(f"SQL does not parse: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryRejected(f"exactly one statement per query is allowed; found {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRejected(f"only read-only SELECT queries are allowed; this statement is {kind.name}")
    return sql


def open_sandbox(limits: QueryLimits) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB with external access, extensions and replacement scans off, config locked."""
    config = {**SANDBOX_CONFIG, "memory_limit": limits.memory_limit, "threads": limits.threads}
    con = duckdb.connect(":memory:", config=config)
    for statement in SANDBOX_LOCK:
        con.execute(statement)
    return con


def load_views(lake: duckdb.DuckDBPyConnection, sandbox: duckdb.DuckDBPyConnection,
               grants: list[SignedGrant], snapshot_id: int) -> dict[str, str]:
    """Stream each grant's masked, filtered view at the snapshot into the sandbox as table <dataset>.

    Returns dataset -> grant id for the views loaded. Data moves as Arrow record batches; the lake's
    connection and SQL never become visible to the sandbox.
    """
    loaded: dict[str, str] = {}
    for signed in grants:
        grant = signed.grant
        sql, params, _ = grant_query(grant, snapshot_id, ordered=False)
        try:
            reader = lake.execute(sql, params).to_arrow_reader(LOAD_BATCH_ROWS)
        except duckdb.CatalogException:
            # The table did not exist yet at that snapshot: the view is empty, with today's columns.
            sql, params, _ = grant_query(grant, current_snapshot_id(lake), ordered=False)
            reader = lake.execute(f"SELECT * FROM ({sql}) WHERE FALSE", params).to_arrow_reader(LOAD_BATCH_ROWS)
        sandbox.register("__grant_view", reader)
        try:
            sandbox.execute(f'CREATE TABLE "{grant.dataset}" AS SELECT * FROM __grant_view')
        finally:
            sandbox.unregister("__grant_view")
        loaded[grant.dataset] = grant.id
    return loaded


def current_snapshot_id(lake: duckdb.DuckDBPyConnection) -> int:
    """The lake's current snapshot id on an open connection."""
    row = lake.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()
    assert row is not None
    return int(row[0])


def run_in_sandbox(sandbox: duckdb.DuckDBPyConnection, sql: str, limits: QueryLimits) -> pa.Table:
    """Run the checked SELECT under the row, byte and time limits; map DuckDB errors to access answers."""
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        sandbox.interrupt()

    cancel = limits.watchdog(limits.timeout_seconds, stop)
    try:
        reader = sandbox.execute(sql).to_arrow_reader(min(limits.max_rows + 1, LOAD_BATCH_ROWS))
        batches: list[pa.RecordBatch] = []
        rows = size = 0
        for batch in reader:
            rows += batch.num_rows
            size += batch.nbytes
            if rows > limits.max_rows:
                raise ResultTooLarge(f"result exceeds the limit of {limits.max_rows} rows; aggregate, filter or "
                                     "request an extract instead")
            if size > limits.max_bytes:
                raise ResultTooLarge(f"result exceeds the limit of {limits.max_bytes} bytes; select fewer "
                                     "columns or request an extract instead")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except (duckdb.Error, OSError) as exc:
        # An interrupt surfaces as InterruptException or, mid-stream, as an OSError: the flag decides.
        if timed_out.is_set():
            raise QueryTimeout(f"query exceeded the time limit of {limits.timeout_seconds:g} s and was "
                               "stopped") from None
        raise classify_error(exc, sandbox) from None
    finally:
        cancel()


# Every way DuckDB says "no such column / table / catalog here". In the sandbox, a name that does not
# resolve is one outside the caller's views however it is spelled (case, quotes, homoglyphs, NFKC variants,
# lake.main.x, schema-qualified), so each is a refusal (access_denied), never a plain bad query.
_MISSING_COLUMN = re.compile(r'(?:column "([^"]+)" not found|does not have a column named "([^"]+)")')
_MISSING_TABLE = re.compile(r'Table with name "?([^"!]+?)"? does not exist')
_MISSING_ELSE = re.compile(r'(?:Referenced table "[^"]*" not found|Catalog "[^"]*" does not exist|'
                           r'Catalog with name [^ ]+ does not exist|Schema with name [^ ]+ does not exist|'
                           r'Table Function with name [^ ]+ does not exist)')  # e.g. lake.snapshots()
_ALL_COLUMNS = {name for d in DATASETS.values() for name in d.schema.names} | {"province", "batch_id"}
# Latin look-alikes NFKC leaves alone (Cyrillic and Greek letters): only used to name, in the refusal, the
# column or dataset a spelling aims at; whether it is refused never depends on it.
_CONFUSABLES = str.maketrans("аеорсухіјѕԁһӏοαιντκ", "aeopcyxijsdhloaivtk")


def skeleton(name: str) -> str:
    """The identifier a spelling aims at: NFKC-normalised, case-folded, common homoglyphs mapped to Latin."""
    return unicodedata.normalize("NFKC", name).casefold().translate(_CONFUSABLES)


def classify_error(exc: Exception, sandbox: duckdb.DuckDBPyConnection) -> Exception:
    """Turn a DuckDB error into QueryRejected (policy) or BadQuery (the SQL itself), with a clear reason.

    The reason names a column or dataset only in the hub's own spelling, never the caller's text: it goes
    into the provenance log, and an identifier could be anything (even a resident ID).
    """
    message = str(exc)
    visible = _visible(sandbox)
    if isinstance(exc, duckdb.PermissionException):
        return QueryRejected("files, network, extensions and settings are disabled in the query sandbox; "
                             f"only your permitted views are visible: {_describe(visible)}")
    if isinstance(exc, duckdb.BinderException | duckdb.CatalogException):
        column = _MISSING_COLUMN.search(message)
        if column:
            aimed = skeleton(column.group(1) or column.group(2))
            seen = {c for cols in visible.values() for c in cols}
            what = f"column {aimed}" if aimed in _ALL_COLUMNS and aimed not in seen else "that column"
            return QueryRejected(f"{what} is outside your grant(s); permitted: {_describe(visible)}")
        table = _MISSING_TABLE.search(message)
        if table or _MISSING_ELSE.search(message):
            name = table.group(1) if table else "."
            aimed = skeleton(name)
            what = f"dataset {aimed} (no usable grant)" if aimed in DATASETS and "." not in name else "that table"
            return QueryRejected(f"{what} is not visible to you; only your permitted views are: "
                                 f"{_describe(visible)}")
    if isinstance(exc, duckdb.InvalidInputException) and "configuration has been locked" in message:
        return QueryRejected("settings cannot be changed in the query sandbox")
    return BadQuery(_first_line(exc))


def result_digest(table: pa.Table) -> str:
    """SHA-256 of the result as one Arrow IPC stream (a single record batch, so chunking cannot vary it)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return sha256_hex(sink.getvalue().to_pybytes())


def _visible(sandbox: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    try:
        rows = sandbox.execute("SELECT table_name, column_name FROM information_schema.columns "
                               "ORDER BY table_name, ordinal_position").fetchall()
    except duckdb.Error:  # an interrupted or broken connection: the reason still reads fine without it
        return {}
    visible: dict[str, list[str]] = {}
    for table, column in rows:
        visible.setdefault(str(table), []).append(str(column))
    return visible


def _describe(visible: dict[str, list[str]]) -> str:
    return "; ".join(f"{t}({', '.join(cols)})" for t, cols in visible.items()) or "none"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
