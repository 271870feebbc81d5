"""Query sandboxes kept per (grant views, snapshot) and shared by a department's requests.

A sandbox holds copies of the department's masked, filtered views at one snapshot. Snapshots are
immutable and the cache key includes each view's exact SQL and parameters (columns, masking chosen from
the contract, row filter), so a cached sandbox can never go stale: a revoked or changed grant, a
tightened contract or a new snapshot simply makes a different key. Policy checks (token, grant expiry and
revocation, sharing type) still run on every request before the cache is consulted.

Each query runs on its own cursor of the sandbox: the configuration (external access off, extensions
off, limits) is per DuckDB instance and locked, and a SELECT cannot change the tables (the service admits
one SELECT statement only; `query()` inside it admits only SELECT too). Sandboxes are per grant set, and
grants belong to one department, so no two departments share one.

Bounded: at most `max_entries` sandboxes and `max_rows` rows in total, least recently used dropped
first; a sandbox is closed once the last query using it has finished. A view larger than `max_rows` is
built for its query and dropped right after, as the uncached path does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb

from exchange.access.extract import grant_query
from exchange.access.models import SignedGrant
from exchange.access.query import QueryLimits, load_views, open_sandbox

Key = tuple[Any, ...]


@dataclass
class Sandbox:
    """A built sandbox: its DuckDB instance, which grant each table came from, its size, who uses it."""

    con: duckdb.DuckDBPyConnection | None  # None until built
    loaded: dict[str, str]
    rows: int
    users: int = 0
    evicted: bool = False
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def sandbox_key(grants: list[SignedGrant], snapshot_id: int, limits: QueryLimits) -> Key:
    """What decides a sandbox's content and configuration."""
    views = []
    for signed in sorted(grants, key=lambda g: g.grant.dataset):
        sql, params, _ = grant_query(signed.grant, snapshot_id)
        views.append((signed.grant.id, signed.signature.value, sql, tuple(str(p) for p in params)))
    return (snapshot_id, limits.memory_limit, limits.threads, tuple(views))


def build_sandbox(lake: duckdb.DuckDBPyConnection, grants: list[SignedGrant], snapshot_id: int,
                  limits: QueryLimits) -> Sandbox:
    """A fresh sandbox holding the grants' views at the snapshot."""
    con = open_sandbox(limits)
    try:
        loaded = load_views(lake, con, grants, snapshot_id)
        rows = 0
        for dataset in loaded:
            row = con.execute(f'SELECT count(*) FROM "{dataset}"').fetchone()
            rows += int(row[0]) if row else 0
    except BaseException:
        con.close()
        raise
    return Sandbox(con=con, loaded=loaded, rows=rows)


class ViewCache:
    """Thread-safe LRU of sandboxes (see the module docstring)."""

    def __init__(self, *, max_entries: int = 16, max_rows: int = 20_000_000) -> None:
        self.max_entries = max_entries
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, Sandbox] = OrderedDict()
        self.builds = 0  # sandboxes built (for tests and the benchmark)

    @contextmanager
    def sandbox(self, key: Key, build: Callable[[], Sandbox]) -> Iterator[Sandbox]:
        """The sandbox for `key`, built by `build()` once (concurrent callers wait for that one build)."""
        with self._lock:
            entry = self._entries.get(key)
            builder = entry is None
            if entry is None:
                entry = Sandbox(con=None, loaded={}, rows=0)  # filled in by _build
                self._entries[key] = entry
            else:
                self._entries.move_to_end(key)
            entry.users += 1
        try:
            if builder:
                self._build(key, entry, build)
            else:
                entry.ready.wait()
                if entry.error is not None:
                    raise entry.error
            yield entry
        finally:
            self._release(entry)

    def clear(self) -> None:
        """Drop every sandbox (each closes when its last query ends)."""
        with self._lock:
            for key in list(self._entries):
                self._evict(key)

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for e in self._entries.values() if e.ready.is_set() and e.error is None)

    def _build(self, key: Key, entry: Sandbox, build: Callable[[], Sandbox]) -> None:
        try:
            built = build()
        except BaseException as exc:
            with self._lock:
                entry.error = exc
                if self._entries.get(key) is entry:
                    del self._entries[key]  # the next request tries again
                entry.evicted = True
            entry.ready.set()
            raise
        with self._lock:
            self.builds += 1
            entry.con, entry.loaded, entry.rows = built.con, built.loaded, built.rows
            entry.ready.set()
            if entry.rows > self.max_rows:
                self._evict(key)
            else:
                self._trim()

    def _trim(self) -> None:
        # Called with the lock held: drop least recently used ready entries until within bounds.
        def total() -> int:
            return sum(e.rows for e in self._entries.values())
        for key in list(self._entries):
            if len(self._entries) <= self.max_entries and total() <= self.max_rows:
                break
            if self._entries[key].ready.is_set():
                self._evict(key)

    def _evict(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        entry.evicted = True
        if entry.users == 0 and entry.con is not None:
            entry.con.close()

    def _release(self, entry: Sandbox) -> None:
        with self._lock:
            entry.users -= 1
            if entry.evicted and entry.users == 0 and entry.con is not None:
                entry.con.close()
