"""One read-only DuckLake attachment per API process, shared by concurrent requests for a short lease.

Why: opening a lake connection per request cost ~150 ms on an idle machine and ~0.5 s under load, most
of it `LOAD ducklake` (DuckDB verifies the 36 MB extension's signature on every load), then ATTACH and
the catalog lock. Here the extensions are loaded once per process into one DuckDB instance; the lake is
attached read-only for a lease and every request gets its own cursor (a cursor costs microseconds).

Why the lease is short: a DuckDB-file catalog admits one writer process, and `connect()` serializes
processes on the catalog's lock file, so an attachment held open would block Airflow's commits. The
lake is detached (and the lock released) when no request has used it for `idle_seconds`, as soon as
another process is seen waiting for the catalog lock (Linux /proc/locks, polled at most every
`poll_seconds`), and in any case after `hold_seconds` (the fallback where waiters cannot be seen): new
requests then wait for the running ones, and the lake is re-attached. After detaching for a waiting
writer, the lake is not re-attached until the writer holds the lock, so a stream of requests cannot
starve it. Only snapshot resolution, sandbox builds, e-licence checks and extract cuts hold a lease; a
department's SQL runs on its sandbox, outside it. A PostgreSQL catalog needs no lock; the lease only
bounds how long one attachment lives. A writer in this same process must `close()` the shared lake
first: DuckDB refuses to open a catalog file that another instance in the process has attached.

Consistency: each request resolves its snapshot id once and reads `AT (VERSION => n)`. Snapshots are
immutable, and with a DuckDB-file catalog nobody can commit while the lease holds the lock.

Knowing the current snapshot without attaching: every commit to a DuckDB-file catalog writes the catalog
file or its WAL. When the current snapshot is read under the lease, the two files' stat (inode, size,
mtime, ctime) is noted with it; while the files still stat the same, no commit has happened since, and
`known_current()` answers without attaching (re-attaching costs a catalog load, tens of milliseconds). A
PostgreSQL catalog has no such files: there the stamp is the newest snapshot id itself, read by one short
query over a connection of our own (`CatalogProbe`), and `known_current()` answers with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import duckdb

from exchange.access.query import current_snapshot_id
from exchange.config import ExchangeSettings
from exchange.lake.connect import (
    LAKE,
    _catalog_lock,  # the lock writers take; re-entrant per process, so other lake use in this process works
    catalog_and_data,
    connect,
    ducklake_catalog,
    extension_path,
    httpfs_extension_path,
    is_postgres,
    libpq_conninfo,
    postgres_extension_path,
    s3_secret_sql,
)
from exchange.lake.files import is_remote

log = logging.getLogger(__name__)

LakeSource = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]


def per_call(settings: ExchangeSettings) -> LakeSource:
    """A fresh read-only lake connection per use (the CLI's way: one process, one request)."""
    return lambda: connect(settings, read_only=True)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def lock_waiters(path: Path, proc_locks: Path = Path("/proc/locks")) -> int:
    """How many other processes are blocked waiting for a lock on `path` (0 where /proc/locks is absent)."""
    return sum(1 for waiting in _other_locks(path, proc_locks) if waiting)


def lock_busy(path: Path, proc_locks: Path = Path("/proc/locks")) -> bool:
    """Whether another process holds or waits for a lock on `path` (False where /proc/locks is absent)."""
    return bool(_other_locks(path, proc_locks))


def _other_locks(path: Path, proc_locks: Path) -> list[bool]:
    # One entry per lock line of another process on `path`'s inode: True for a blocked request, False for a
    # held lock. "12: FLOCK  ADVISORY  WRITE 4242 fd:01:123456 0 EOF" is held; "12: -> FLOCK ..." is waiting.
    try:
        inode = path.stat().st_ino
        text = proc_locks.read_text()
    except OSError:
        return []
    found = []
    me = str(os.getpid())
    for line in text.splitlines():
        fields = line.split()
        waiting = len(fields) > 1 and fields[1] == "->"
        fields = [fields[0], *fields[2:]] if waiting else fields
        if len(fields) < 6:
            continue
        pid, where = fields[4], fields[5]
        if pid != me and where.rsplit(":", 1)[-1] == str(inode):
            found.append(waiting)
    return found


# A DuckDB-file catalog's stamp: the stat of the file and its WAL. A PostgreSQL catalog's: (newest snapshot id,).
Stamp = tuple[tuple[int, int, int, int] | int | None, ...]


def catalog_stamp(catalog: str) -> Stamp | None:
    """The stat of a DuckDB-file catalog and its WAL (None for PostgreSQL, see `CatalogProbe`): any commit
    changes it."""
    if is_postgres(catalog):
        return None
    stamp: list[tuple[int, int, int, int] | None] = []
    for path in (catalog, catalog + ".wal"):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            stamp.append(None)
            continue
        stamp.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(stamp)


# DuckLake keeps its tables in the attached database's default schema, which the postgres extension takes
# to be `public` whatever the connection's search_path says.
NEWEST_SNAPSHOT_SQL = "SELECT max(snapshot_id) FROM public.ducklake_snapshot"


class CatalogProbe:
    """The newest snapshot id of a PostgreSQL catalog, read over one long-lived connection of its own.

    Cheap next to attaching the lake (one indexed aggregate over loopback, well under a millisecond, no
    extension, no catalog load), so the warmer can poll it and every query can ask it. It never raises:
    an unreachable server, a failed connection or a catalog not created yet answer None (the caller then
    goes through the lake as before, and meets the error there, where it is reported). After a failure it
    reconnects at most every `retry_seconds`, so a dead server costs the pollers nothing but one log line.
    """

    def __init__(self, conninfo: str, *, connect_timeout: int = 2, retry_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._con: Any = None  # a psycopg.Connection, imported lazily (only PostgreSQL catalogs need it)
        self._failed_at: float | None = None
        self.failures = 0  # how many reads failed (for tests)

    def newest(self) -> int | None:
        """The newest snapshot id in the catalog, or None if it cannot be read right now."""
        with self._lock:
            if self._failed_at is not None and self._clock() - self._failed_at < self.retry_seconds:
                return None
            try:
                if self._con is None:
                    import psycopg

                    # Autocommit: every read is its own transaction, so it sees every commit made before it.
                    self._con = psycopg.connect(self.conninfo, autocommit=True,
                                                connect_timeout=self.connect_timeout)
                row = self._con.execute(NEWEST_SNAPSHOT_SQL).fetchone()
            except Exception as exc:  # any failure: the serve loop must never see it
                self.failures += 1
                if self._failed_at is None:  # once per outage, not once per poll
                    log.warning("cannot read the lake catalog's newest snapshot (%s: %s); queries attach "
                                "the lake instead until it answers", type(exc).__name__, exc)
                self._failed_at = self._clock()
                self._drop()
                return None
            if self._failed_at is not None:
                log.info("the lake catalog answers again")
                self._failed_at = None
            return None if row is None or row[0] is None else int(row[0])

    def close(self) -> None:
        """Close the connection (the next read opens one, without waiting out a failure's retry delay)."""
        with self._lock:
            self._drop()
            self._failed_at = None

    def _drop(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.close()
            self._con = None


class SharedLake:
    """The process's read-only lake attachment, lent to requests as cursors (see the module docstring)."""

    def __init__(self, settings: ExchangeSettings, *, hold_seconds: float = 10.0, idle_seconds: float = 0.5,
                 writer_grace_seconds: float = 2.0, poll_seconds: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.hold_seconds = hold_seconds
        self.idle_seconds = idle_seconds
        self.writer_grace_seconds = writer_grace_seconds
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._catalog, self._data = catalog_and_data(settings)
        self._lock_path = None if is_postgres(self._catalog) else \
            Path(self._catalog).with_name(Path(self._catalog).name + ".lock")
        self._cond = threading.Condition()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._catalog_hold: AbstractContextManager[None] | None = None
        self._attached_at: float | None = None
        self._users = 0
        self._draining = False
        self._yield_to_writer = False
        self._last_used = 0.0
        self._reaper: threading.Thread | None = None
        self._known: tuple[Stamp, int] | None = None  # the catalog's stamp when the current snapshot was read
        # A PostgreSQL catalog's stamp (None for a DuckDB file); public for tests and the benchmark.
        self.probe = CatalogProbe(libpq_conninfo(self._catalog)) if is_postgres(self._catalog) else None
        self.attaches = 0  # how many leases were opened (for tests and the benchmark)

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the attached lake (`USE lake` done), valid until the block ends."""
        db = self._acquire()
        try:
            cur = db.cursor()
        except BaseException:
            self._release()
            raise
        try:
            cur.execute(f"USE {LAKE}")
            yield cur
        finally:
            with contextlib.suppress(duckdb.Error):
                cur.close()
            self._release()

    def __call__(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self.cursor()

    def current_snapshot(self, con: duckdb.DuckDBPyConnection) -> int:
        """The current snapshot, read on `con` (a cursor of this lake, so under the lease) and noted with the
        catalog's stamp for `known_current()`."""
        snapshot = current_snapshot_id(con)
        # For PostgreSQL the snapshot just read is the stamp: no second read, and no race between the two.
        stamp = (snapshot,) if self.probe is not None else catalog_stamp(self._catalog)
        if stamp is not None:
            with self._cond:
                self._known = (stamp, snapshot)
        return snapshot

    def known_current(self) -> int | None:
        """The current snapshot without attaching, if no commit can have happened since it was last read
        (DuckDB file), or as the catalog server reports it now (PostgreSQL; None if it cannot be asked)."""
        if self.probe is not None:
            # Never older than a commit that completed before this call: DuckLake writes a snapshot's row in
            # the same PostgreSQL transaction as everything else the commit records, so an id is visible
            # exactly when its commit is complete; the probe reads in autocommit, a fresh statement snapshot
            # taken now, which sees every transaction committed before it; and ids only grow (a commit takes
            # the newest id + 1, a concurrent one with the same id fails on the key and retries; expiring
            # snapshots never removes the newest). The query then reads `AT (VERSION => id)`, immutable.
            newest = self.probe.newest()
            if newest is not None and self._known is None:
                # The first answer is what `changed()` compares with; later ones are not noted, so a commit
                # stays "changed" for the warmer (which notes it in `refresh()`) even after a query has
                # advanced its own sandbox: the other departments' sandboxes are still to be advanced.
                with self._cond:
                    self._known = ((newest,), newest)
            return newest
        known = self._known
        if known is None or catalog_stamp(self._catalog) != known[0]:
            return None
        return known[1]

    def refresh(self) -> int:
        """The current snapshot, noted as read (`changed()` is False until the next commit): from the catalog
        server without a lease for PostgreSQL when it answers, else read under a lease."""
        if self.probe is not None:
            newest = self.probe.newest()
            if newest is not None:
                with self._cond:
                    self._known = ((newest,), newest)
                return newest
        with self.cursor() as con:
            return self.current_snapshot(con)

    def stamp(self) -> Stamp | None:
        """The catalog's stamp now: the files' stat, or (newest snapshot id,) for PostgreSQL (None when the
        server cannot be asked)."""
        if self.probe is not None:
            newest = self.probe.newest()
            return None if newest is None else (newest,)
        return catalog_stamp(self._catalog)

    def changed(self, stamp: Stamp | None = None) -> bool:
        """Whether the catalog has changed since the current snapshot was last read (False: never read, or a
        PostgreSQL server that cannot be asked). `stamp`: one just taken with `stamp()`, to save a read."""
        known = self._known
        if known is None:
            return False
        now = stamp if stamp is not None else self.stamp()
        return now is not None and now != known[0]

    def catalog_busy(self) -> bool:
        """Whether another process holds or waits for the catalog lock (a writer at work). A PostgreSQL
        catalog has no lock to watch: a commit there is one transaction, and `stamp()` moves only once it
        is complete, so the warmer's settle time alone covers an ingest committing several times in a row."""
        return self._lock_path is not None and lock_busy(self._lock_path)

    def close(self) -> None:
        """Detach now (waiting for running requests) and drop the DuckDB instance."""
        with self._cond:
            self._draining = True
            while self._users:
                self._cond.wait()
            self._detach()
            self._draining = False
            if self._db is not None:
                self._db.close()
                self._db = None
            self._cond.notify_all()
        if self.probe is not None:
            self.probe.close()

    @property
    def attached(self) -> bool:
        """Whether the lake is attached (and, for a DuckDB-file catalog, its lock held) right now."""
        return self._attached_at is not None

    # --- lease ---------------------------------------------------------------------------------------

    def _acquire(self) -> duckdb.DuckDBPyConnection:
        with self._cond:
            while True:
                if self._attached_at is not None and not self._draining and self._should_end():
                    self._draining = True
                if self._draining:
                    if self._users:
                        self._cond.wait()
                        continue
                    self._detach()
                    self._draining = False
                    self._cond.notify_all()
                if self._attached_at is None:
                    self._attach()
                self._users += 1
                assert self._db is not None
                return self._db

    def _release(self) -> None:
        with self._cond:
            self._users -= 1
            if self._users:
                return
            self._last_used = self._clock()
            if self._draining or (self._attached_at is not None and self._should_end()):
                self._detach()
                self._draining = False
                self._cond.notify_all()

    def _reap(self) -> None:
        # One thread per lease (not a timer per request): detaches once the lake has been idle long enough,
        # and looks for processes waiting on the catalog lock. /proc/locks is read outside the condition
        # (it can take milliseconds), so requests never wait for it.
        while True:
            with self._cond:
                if self._attached_at is None:
                    self._reaper = None
                    return
                idle = self._clock() - self._last_used
                if self._users == 0 and not self._draining and idle >= self.idle_seconds:
                    self._detach()
                    self._reaper = None
                    return
                timeout = self.poll_seconds if self._lock_path is not None else self.idle_seconds
                if self._users == 0:
                    timeout = min(timeout, self.idle_seconds - idle + 0.01)
                self._cond.wait(timeout=timeout)
                watch = self._lock_path if self._attached_at is not None and not self._draining else None
            if watch is not None and lock_waiters(watch):
                with self._cond:
                    if self._attached_at is not None and not self._draining:
                        self._yield_to_writer = True
                        if self._users:
                            self._draining = True  # new requests wait; the last running one detaches
                        else:
                            self._detach()
                            self._cond.notify_all()

    def _should_end(self) -> bool:
        assert self._attached_at is not None
        return self._clock() - self._attached_at >= self.hold_seconds

    def _attach(self) -> None:
        # Called with the condition held: other requests wait here rather than attach a second time.
        if self._yield_to_writer and self._lock_path is not None:
            # The lock was released because another process waited for it: let it take the lock first.
            deadline = self._clock() + self.writer_grace_seconds
            while lock_waiters(self._lock_path) and self._clock() < deadline:
                time.sleep(0.005)
        self._yield_to_writer = False
        if self._db is None:
            self._db = self._open_instance()
        hold = _catalog_lock(self._catalog, True)
        hold.__enter__()
        try:
            options = f"DATA_PATH {_literal(self._data)}, DATA_INLINING_ROW_LIMIT 0, OVERRIDE_DATA_PATH TRUE, READ_ONLY"
            self._db.execute(f"ATTACH {_literal('ducklake:' + ducklake_catalog(self._catalog))} AS {LAKE} ({options})")
        except BaseException:
            hold.__exit__(None, None, None)
            raise
        self._catalog_hold = hold
        self._attached_at = self._last_used = self._clock()
        self.attaches += 1
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, name="shared-lake-reaper", daemon=True)
            self._reaper.start()

    def _detach(self) -> None:
        if self._attached_at is None:
            return
        try:
            assert self._db is not None
            self._db.execute(f"DETACH {LAKE}")
        except duckdb.Error:
            # A DuckDB instance that cannot detach is dropped whole, which closes the catalog file too.
            with contextlib.suppress(duckdb.Error):
                assert self._db is not None
                self._db.close()
            self._db = None
        finally:
            self._attached_at = None
            hold, self._catalog_hold = self._catalog_hold, None
            if hold is not None:
                hold.__exit__(None, None, None)

    def _open_instance(self) -> duckdb.DuckDBPyConnection:
        """One DuckDB instance with the extensions loaded (the expensive part, done once per process)."""
        db = duckdb.connect()
        db.execute(f"LOAD '{extension_path()}'")
        if is_postgres(self._catalog):
            db.execute(f"LOAD '{postgres_extension_path()}'")
        if is_remote(self._data):
            db.execute(f"LOAD '{httpfs_extension_path()}'")
            db.execute(s3_secret_sql(self.settings, self._data))
        return db
