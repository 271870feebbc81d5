"""Retry a lake commit after a transaction conflict, a lost catalog or storage connection, or a killed writer.

DuckLake settles concurrent appends itself; what reaches us is a real conflict (two first commits creating
the same table, a column added while another batch inserts) or a lost connection. Every attempt opens a fresh
connection and starts from the ledger (commit_batch returns the batch's snapshot if it is already there), so
a COMMIT that reached the catalog before its reply was lost is found, never written twice. Before an attempt
that follows a failed or killed one, the data files that attempt wrote but never committed are removed, so
verify finds no file the catalog does not know.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TypeVar

import duckdb
import psycopg

from exchange.config import ExchangeSettings
from exchange.errors import TerminalError, TransientError
from exchange.lake import files as lake_files
from exchange.lake.connect import META, catalog_and_data, connect, is_postgres, libpq_conninfo

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30.0
# Wrong SQL, wrong data, a broken constraint: the same attempt fails the same way, so never retried.
_NOT_TRANSIENT = (duckdb.ProgrammingError, duckdb.DataError, duckdb.IntegrityError, duckdb.NotSupportedError)


def is_transient(exc: duckdb.Error) -> bool:
    """Whether another attempt may succeed: conflicts, lost connections, storage 5xx/timeouts/throttling."""
    if isinstance(exc, duckdb.HTTPException):
        status = int(getattr(exc, "status_code", 0) or 0)
        return status in (0, 408, 429) or status >= 500  # 403/404: wrong credentials or bucket, not a hiccup
    return not isinstance(exc, _NOT_TRANSIENT)


@contextmanager
def catalog_batch_lock(settings: ExchangeSettings, batch_id: str) -> Iterator[None]:
    """Hold a per-batch lock in the catalog while committing, so removing a failed attempt's files never races a
    live one on another host (protocol.batch_lock is the local, per-process one around a whole stage).

    PostgreSQL catalog: a session advisory lock, released by the server when the holder dies (SIGKILL
    included). DuckDB-file catalog: connect() already admits one writer process at a time.
    """
    catalog = catalog_and_data(settings)[0]
    if not is_postgres(catalog):
        yield
        return
    with psycopg.connect(libpq_conninfo(catalog), autocommit=True, connect_timeout=10) as pg:
        pg.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"exchange-batch:{batch_id}"])
        yield


def catalog_file_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        f"SELECT path FROM {META}.ducklake_data_file UNION ALL SELECT path FROM {META}.ducklake_delete_file "
        f"UNION ALL SELECT path FROM {META}.ducklake_files_scheduled_for_deletion"
    ).fetchall()
    # DuckLake names every file with a fresh UUID, so the name alone identifies it.
    return {PurePosixPath(str(path)).name for (path,) in rows}


def _written_only_for(con: duckdb.DuckDBPyConnection, location: str, batch_id: str) -> bool:
    try:
        rows = con.execute("SELECT DISTINCT batch_id FROM read_parquet(?)", [location]).fetchall()
    except duckdb.Error:
        return False  # unreadable (still being written by someone) or not ours: leave it alone
    return rows == [(batch_id,)]


def uncommitted_files(con: duckdb.DuckDBPyConnection, root: str, batch_id: str) -> list[str]:
    """Data files (relative to the data path) the catalog does not know whose every row carries `batch_id`."""
    known = catalog_file_names(con)
    return [relative for relative in lake_files.parquet_files(con, root)
            if PurePosixPath(relative).name not in known
            and _written_only_for(con, lake_files.join(root, relative), batch_id)]


def remove_uncommitted(con: duckdb.DuckDBPyConnection, root: str, batch_id: str) -> list[str]:
    """Delete the data files an earlier, failed attempt at `batch_id` wrote but never committed.

    A file qualifies only if the catalog does not know it and every row in it carries this batch id (each
    lake table has the batch_id column), so another batch's in-flight files are never touched. Files on
    object storage are reported, not deleted: DuckDB cannot delete a single object (see docs/operators.md).
    """
    removed: list[str] = []
    for relative in uncommitted_files(con, root, batch_id):
        location = lake_files.join(root, relative)
        if lake_files.remove(location):
            removed.append(relative)
        else:
            log.warning("batch %s: uncommitted file %s left on object storage by a failed attempt", batch_id, location)
    return removed


def commit_retrying(
    settings: ExchangeSettings,
    batch_id: str,
    attempt: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    marker: Path | None = None,
    interrupted: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `attempt` on a fresh lake connection until it succeeds, with bounded, jittered backoff.

    `attempt` must be idempotent by batch id (commit_batch is). `marker` is a file that exists while a commit
    of the batch is in progress: finding it on entry means an earlier writer died mid-commit, so its files are
    cleaned up first; `interrupted` asks for that clean-up without a marker (the commit protocol's intent
    marker plays that part, exchange/lake/protocol.py). Raises TransientError when the retries are used up,
    TerminalError when storage refuses
    the request (credentials, missing bucket), and other errors unchanged.
    """
    root = catalog_and_data(settings)[1]
    interrupted = interrupted or (marker is not None and marker.exists())
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    tries = settings.lake_commit_retries + 1
    for number in range(1, tries + 1):
        try:
            with catalog_batch_lock(settings, batch_id), connect(settings) as con:
                if interrupted or number > 1:
                    removed = remove_uncommitted(con, root, batch_id)
                    if removed:
                        log.warning("batch %s: removed %d uncommitted file(s) of a failed attempt: %s",
                                    batch_id, len(removed), ", ".join(removed))
                result = attempt(con)
        except (duckdb.Error, psycopg.Error) as exc:
            if isinstance(exc, duckdb.Error) and not is_transient(exc):
                if isinstance(exc, duckdb.HTTPException):
                    raise TerminalError(f"lake storage refused the commit of batch {batch_id}: {exc}") from exc
                raise
            if number == tries:
                raise TransientError(
                    f"lake commit of batch {batch_id} failed after {number} attempt(s); nothing of it is visible "
                    f"in the lake and a retry is safe: {exc}"
                ) from exc
            wait = min(MAX_WAIT_SECONDS, settings.lake_commit_backoff_seconds * 2 ** (number - 1))
            wait *= 0.5 + random.random()  # jitter: writers that collided once should not collide again
            log.warning("batch %s: lake commit attempt %d/%d failed (%s); retrying in %.1f s",
                        batch_id, number, tries, str(exc).splitlines()[0], wait)
            sleep(wait)
            continue
        if marker is not None:
            marker.unlink(missing_ok=True)
        return result
    raise AssertionError("unreachable")  # the loop returns or raises
