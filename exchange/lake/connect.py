"""Attach the DuckLake catalog, loading the extensions offline from their wheels.

Catalog (EXCHANGE_LAKE_CATALOG): a DuckDB file (default), or PostgreSQL when several writers or machines
share the lake, written as a libpq URI (postgresql://user@host:5432/db) or as DuckLake spells it
(postgres:dbname=db host=h user=u). Data (EXCHANGE_LAKE_DATA): a folder, or s3://bucket/prefix/ on any
S3-compatible store, reached through httpfs with a DuckDB secret built from the EXCHANGE_LAKE_S3_* settings.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa

from exchange.config import ExchangeSettings, Layout
from exchange.errors import NotFound, TerminalError, TransientError
from exchange.lake import primed
from exchange.lake.files import is_remote
from exchange.locking import ProcessHold

LAKE = "lake"
META = f"__ducklake_metadata_{LAKE}"
_SECRET = "exchange_lake_s3"


def _wheel_extension(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise TerminalError(f"{package.replace('_', '-')} is not installed; run `make install`")
    path = Path(spec.origin).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise TerminalError(f"no {name} extension for duckdb {duckdb.__version__} at {path}")
    return path


def extension_path() -> Path:
    """The DuckLake extension file shipped by the duckdb-extension-ducklake wheel (INSTALL needs a network)."""
    return _wheel_extension("duckdb_extension_ducklake", "ducklake")


def httpfs_extension_path() -> Path:
    """The httpfs extension file (S3-compatible object storage) from the duckdb-extension-httpfs wheel."""
    return _wheel_extension("duckdb_extension_httpfs", "httpfs")


def postgres_extension_path() -> Path:
    """The postgres extension from its wheel, copied to a cache under the name DuckDB requires.

    DuckDB derives the init symbol from the file name, and the wheel's `postgres.duckdb_extension` is the
    `postgres_scanner` extension, so it only loads as `postgres_scanner.duckdb_extension`.
    """
    source = _wheel_extension("duckdb_extension_postgres", "postgres")
    cache = Path(tempfile.gettempdir()) / f"exchange-duckdb-{duckdb.__version__}-{os.getuid()}"
    target = cache / "postgres_scanner.duckdb_extension"
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = cache / f".postgres_scanner.{os.getpid()}.tmp"
        shutil.copyfile(source, partial)
        os.replace(partial, target)  # atomic: a concurrent process never loads a half-copied file
    return target


def is_postgres(catalog: str) -> bool:
    """Whether the catalog setting names a PostgreSQL database."""
    return catalog.startswith(("postgres:", "postgresql:"))


def ducklake_catalog(catalog: str) -> str:
    """The catalog as DuckLake's ATTACH takes it: `postgres:<libpq conninfo>` or a file path."""
    if catalog.startswith(("postgresql://", "postgres://")):
        return f"postgres:{catalog}"  # libpq accepts the URI form as conninfo
    return catalog


def libpq_conninfo(catalog: str) -> str:
    """The PostgreSQL catalog's libpq connection string (URI or key=value), for clients other than DuckLake."""
    if catalog.startswith(("postgresql://", "postgres://")):
        return catalog
    return catalog.removeprefix("postgres:")


def catalog_and_data(settings: ExchangeSettings) -> tuple[str, str]:
    """The catalog location and data path, defaulting to files under EXCHANGE_HOME/lake."""
    layout = Layout(settings.home)
    catalog = settings.lake_catalog or str(layout.lake_catalog_file)
    data = settings.lake_data or str(layout.lake_data) + "/"
    if is_remote(data) and not data.endswith("/"):
        data += "/"  # DuckLake appends file names to the data path as given
    return catalog, data


def sql_literal(value: str) -> str:
    """`value` as a SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def s3_secret_sql(settings: ExchangeSettings, data: str) -> str:
    """CREATE SECRET for the lake's bucket from the EXCHANGE_LAKE_S3_* settings (scoped to that bucket)."""
    bucket = urlsplit(data)
    options: dict[str, str] = {
        "TYPE": "s3",
        "URL_STYLE": sql_literal(settings.lake_s3_url_style),
        "SCOPE": sql_literal(f"{bucket.scheme}://{bucket.netloc}"),
    }
    use_ssl = settings.lake_s3_use_ssl
    if settings.lake_s3_endpoint:
        endpoint = settings.lake_s3_endpoint
        if "://" in endpoint:  # DuckDB wants host[:port]; the scheme only says whether to use TLS
            parts = urlsplit(endpoint)
            endpoint = parts.netloc
            use_ssl = parts.scheme == "https" if use_ssl is None else use_ssl
        options["ENDPOINT"] = sql_literal(endpoint)
    if use_ssl is not None:
        options["USE_SSL"] = "true" if use_ssl else "false"
    if settings.lake_s3_region:
        options["REGION"] = sql_literal(settings.lake_s3_region)
    if settings.lake_s3_access_key_id:
        options["KEY_ID"] = sql_literal(settings.lake_s3_access_key_id)
    if settings.lake_s3_secret_access_key:
        options["SECRET"] = sql_literal(settings.lake_s3_secret_access_key.get_secret_value())
    if settings.lake_s3_session_token:
        options["SESSION_TOKEN"] = sql_literal(settings.lake_s3_session_token.get_secret_value())
    body = ", ".join(f"{k} {v}" for k, v in options.items())
    return f"CREATE OR REPLACE SECRET {_SECRET} ({body})"


_holds: dict[str, ProcessHold] = {}
_holds_changed = threading.Condition()


@contextmanager
def _catalog_lock(catalog: str, read_only: bool) -> Iterator[None]:
    """Serialize processes on a DuckDB-file catalog, which admits one writer process at a time.

    Re-entrant within a process (DuckDB's own file lock is per process, so connections of one process do
    not conflict): the first thread takes the file lock, later ones wait until it is held, and the last to
    leave releases it. Other processes wait instead of failing with "Could not set lock".
    A PostgreSQL catalog needs no such lock.
    """
    if is_postgres(catalog):
        yield
        return
    lock_path = str(Path(catalog).with_name(Path(catalog).name + ".lock"))
    with _holds_changed:
        hold = _holds.setdefault(lock_path, ProcessHold())
        while hold.acquiring:
            _holds_changed.wait()
        take = hold.holders == 0
        hold.holders += 1
        hold.acquiring = take
    try:
        if take:
            try:
                hold.handle = _lock_file(lock_path, read_only)
            finally:
                with _holds_changed:
                    hold.acquiring = False
                    _holds_changed.notify_all()
        yield
    finally:
        with _holds_changed:
            hold.leave()


def _lock_file(lock_path: str, read_only: bool) -> IO[str] | None:
    try:
        handle = open(lock_path, "a")  # noqa: SIM115 - held across the context, closed by the last holder
    except OSError:
        if not read_only:
            raise
        return None  # an auditor's read-only copy: nobody writes there, nothing to serialize
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


@contextmanager
def connect(settings: ExchangeSettings, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with the lake attached as `lake` and selected, closed on exit.

    Inlining is off so every committed row lands in a Parquet file that manifests can hash.
    """
    catalog, data = catalog_and_data(settings)
    if read_only and not is_postgres(catalog) and not Path(catalog).exists():
        # A reader cannot create the lake, and DuckDB's own message reads like a bug.
        raise NotFound(f"no lake at {catalog} yet: nothing has been committed under this EXCHANGE_HOME "
                       "(run `exchange run` or the province DAGs first, or check EXCHANGE_HOME)")
    if not is_postgres(catalog):
        Path(catalog).parent.mkdir(parents=True, exist_ok=True)
    if not is_remote(data):
        Path(data).mkdir(parents=True, exist_ok=True)
    extensions = [extension_path()]
    if is_postgres(catalog):
        extensions.append(postgres_extension_path())
    if is_remote(data):
        extensions.append(httpfs_extension_path())
    # A database that loaded the extensions before is reused (exchange/lake/primed.py): LOAD is the costly part.
    with _catalog_lock(catalog, read_only), primed.borrowed(extensions) as held:
        db = held.db
        if is_remote(data):
            db.execute(s3_secret_sql(settings, data))
        baseline: list[tuple[str, str | None]] | None = None  # the settings as the caller got them
        try:
            # OVERRIDE_DATA_PATH: the catalog stores an absolute data path, but a home copied elsewhere (an
            # auditor's offline copy, a restored backup) must read the data where the settings say it is.
            options = f"DATA_PATH {sql_literal(data)}, DATA_INLINING_ROW_LIMIT 0, OVERRIDE_DATA_PATH TRUE"
            if read_only:
                options += ", READ_ONLY"
            _attach(db, f"ATTACH {sql_literal('ducklake:' + ducklake_catalog(catalog))} AS {LAKE} ({options})",
                    retry=is_postgres(catalog), catalog=catalog, wait=settings.lake_lock_wait_seconds)
            baseline = held.settings()
            con = db.cursor()  # the caller's own session: its views end with it
            try:
                con.execute(f"USE {LAKE}")
                yield con
            finally:
                con.close()
        finally:
            _release(held, baseline)


def _release(held: primed.Primed, baseline: list[tuple[str, str | None]] | None) -> None:
    """Detach the lake (the catalog is free for other processes again) and drop the S3 secret; spoil the
    database instead when that fails or the use changed a setting."""
    try:
        held.db.execute(f"DETACH DATABASE IF EXISTS {LAKE}")
        held.db.execute(f"DROP SECRET IF EXISTS {_SECRET}")
        clean = baseline is not None and held.settings() == baseline
    except duckdb.Error:
        clean = False
    if not clean:
        held.spoiled = True
        held.db.close()  # closing detaches too


# How the hub pauses between attempts while an outside process holds the catalog; a module attribute so a test
# can see that a commit is waiting, and end the wait, without racing a timer.
wait_for_outsider: Callable[[float], None] = time.sleep


def _held_by_outsider(exc: duckdb.Error) -> bool:
    """DuckDB's own file lock refused us: a process outside the hub (a DuckDB session) has the catalog open."""
    return isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc)


def _attach(con: duckdb.DuckDBPyConnection, sql: str, *, retry: bool, catalog: str = "", wait: float = 0.0) -> None:
    # Several processes attaching a fresh PostgreSQL catalog at once race to create DuckLake's tables; the
    # losers fail with a duplicate key and succeed on a second try, when the tables are there.
    # A DuckDB-file catalog held open by an outside process (stock DuckDB, even READ_ONLY) is waited for a
    # while, then reported in one line: our own processes serialize on the .lock file and never meet here.
    deadline = time.monotonic() + wait
    attempt = 0
    while True:
        try:
            con.execute(sql)
            return
        except duckdb.Error as exc:
            if _held_by_outsider(exc):
                if time.monotonic() >= deadline:
                    found = re.search(r"held in\s+(\S+)\s+\(PID (\d+)\)", str(exc))
                    holder = f"pid {found[2]}, {found[1]}" if found else "another process"
                    raise TransientError(
                        f"the lake catalog {catalog} is held open by another process ({holder}), e.g. a DuckDB "
                        f"session; waited {wait:.0f} s. Close it and run again (nothing was changed)"
                    ) from None
                wait_for_outsider(0.2)
                continue
            if not retry or attempt == 3 or "Failed to initialize DuckLake" not in str(exc):
                raise
            attempt += 1
            time.sleep(0.2 * attempt)


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
