"""Query sandboxes kept per (grant views, snapshot) and shared by a department's requests.

A sandbox holds copies of the department's masked, filtered views at one snapshot. The cache key is the
snapshot plus the sandbox's lineage: each view's exact select list, row filter and parameters (columns,
masking chosen from the contract), the grants' ids and signatures, and the sandbox limits. A revoked or
changed grant or a tightened contract makes a different lineage, so it never meets an old copy. Policy
checks (token, grant expiry and revocation, sharing type) still run on every request before the cache is
consulted.

A new snapshot of the same lineage is not copied from scratch when the cache holds an older snapshot's
sandbox: that sandbox is taken out of the cache (no new query can start on it), and once its running
queries have finished it is advanced in place by the change feed (exchange/access/changefeed.py), in one
transaction, at a cost in proportion to what the snapshots changed. Where the feed cannot be used
(expired snapshots, a schema change, more than half the rows changed) that view is copied again; if
advancing fails at all, the whole sandbox is built afresh. The older snapshot's sandbox is gone
afterwards: a later query at that snapshot (time travel) builds it again.

Each query runs on its own cursor of the sandbox: the configuration (external access off, extensions
off, limits) is per DuckDB instance and locked, and a SELECT cannot change the tables (the service admits
one SELECT statement only; `query()` inside it admits only SELECT too). Sandboxes are per grant set, and
grants belong to one department, so no two departments share one.

Bounded: at most `max_entries` sandboxes and `max_rows` rows in total, least recently used dropped
first; a sandbox is closed once the last query using it has finished. A view larger than `max_rows` is
built for its query and dropped right after, as the uncached path does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb

from exchange.access.changefeed import MAX_CHANGED_FRACTION, apply_changes, feed_window, view_changes
from exchange.access.models import SignedGrant
from exchange.access.query import QueryLimits, load_views, open_sandbox
from exchange.access.terms import grant_view

Key = tuple[Any, ...]  # (snapshot id, lineage)
Advance = Callable[["Sandbox", int], "Sandbox"]  # (older sandbox, its snapshot) -> the sandbox at the key's snapshot
log = logging.getLogger(__name__)


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
    how: dict[str, str] = field(default_factory=dict)  # per table: how it reached its snapshot (built / advanced)
    recipe: Any = None  # what the caller needs to make this lineage's sandbox again (exchange/access/warmer.py)


def sandbox_lineage(grants: list[SignedGrant], limits: QueryLimits) -> tuple[Any, ...]:
    """Everything that decides a sandbox's content and configuration except the snapshot."""
    views = []
    for signed in sorted(grants, key=lambda g: g.grant.dataset):
        permitted = grant_view(signed.grant)
        views.append((signed.grant.id, signed.signature.value, signed.grant.dataset, permitted.select,
                      permitted.row_filter.sql, tuple(str(p) for p in permitted.row_filter.params)))
    return (limits.memory_limit, limits.threads, tuple(views))


def sandbox_key(grants: list[SignedGrant], snapshot_id: int, limits: QueryLimits) -> Key:
    """What decides a sandbox's content and configuration: the snapshot and the lineage."""
    return (snapshot_id, sandbox_lineage(grants, limits))


def build_sandbox(lake: duckdb.DuckDBPyConnection, grants: list[SignedGrant], snapshot_id: int,
                  limits: QueryLimits) -> Sandbox:
    """A fresh sandbox holding the grants' views at the snapshot."""
    con = open_sandbox(limits)
    try:
        loaded = load_views(lake, con, grants, snapshot_id)
        rows = count_rows(con, loaded)
    except BaseException:
        con.close()
        raise
    return Sandbox(con=con, loaded=loaded, rows=rows, how=dict.fromkeys(loaded, "built"))


def advance_sandbox(lake: duckdb.DuckDBPyConnection, box: Sandbox, grants: list[SignedGrant], old: int, new: int,
                    *, max_fraction: float = MAX_CHANGED_FRACTION) -> Sandbox:
    """Carry `box` (the grants' views at snapshot `old`, no query running on it) to snapshot `new`, in place.

    One transaction: on any error nothing changed, and the caller drops the sandbox.
    """
    con = box.con
    assert con is not None
    how: dict[str, str] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for signed in grants:
            how[signed.grant.dataset] = _advance_view(lake, con, signed, old, new, max_fraction)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    return Sandbox(con=con, loaded=box.loaded, rows=count_rows(con, box.loaded), how=how)


def _advance_view(lake: duckdb.DuckDBPyConnection, sandbox: duckdb.DuckDBPyConnection, signed: SignedGrant,
                  old: int, new: int, max_fraction: float) -> str:
    dataset = signed.grant.dataset
    window = feed_window(lake, dataset, old, new, max_fraction)
    if window.unusable is None:
        if not (window.inserted or window.deleted):  # only other tables changed: nothing to do
            return f"advanced from snapshot {old}: unchanged"
        lost, gained = view_changes(lake, signed.grant, window)
        apply_changes(sandbox, dataset, lost, gained)
        return f"advanced from snapshot {old}: -{lost.num_rows} +{gained.num_rows} rows"
    sandbox.execute(f'DROP TABLE "{dataset}"')
    load_views(lake, sandbox, [signed], new)
    return f"copied again: {window.unusable}"


def count_rows(con: duckdb.DuckDBPyConnection, loaded: dict[str, str]) -> int:
    """Rows in the sandbox's tables."""
    rows = 0
    for dataset in loaded:
        row = con.execute(f'SELECT count(*) FROM "{dataset}"').fetchone()
        rows += int(row[0]) if row else 0
    return rows


class ViewCache:
    """Thread-safe LRU of sandboxes (see the module docstring)."""

    def __init__(self, *, max_entries: int = 16, max_rows: int = 20_000_000, drain_seconds: float = 30.0) -> None:
        self.max_entries = max_entries
        self.max_rows = max_rows
        self.drain_seconds = drain_seconds  # how long advancing waits for queries still on the older sandbox
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a sandbox's last query ends
        self._entries: OrderedDict[Key, Sandbox] = OrderedDict()
        self.builds = 0  # sandboxes made ready, copied or advanced (for tests and the benchmark)
        self.advanced = 0  # of which advanced from an older snapshot's sandbox

    @contextmanager
    def sandbox(self, key: Key, build: Callable[[], Sandbox], advance: Advance | None = None,
                recipe: Any = None) -> Iterator[Sandbox]:
        """The sandbox for `key`, made once (concurrent callers wait for that one build).

        With `advance`, an older snapshot's sandbox of the same lineage is advanced to `key`'s snapshot
        rather than a new one copied by `build()`. `recipe` is kept with a sandbox this call makes (see
        `newest()`).
        """
        with self._lock:
            entry = self._entries.get(key)
            builder = entry is None
            donor = None
            if entry is None:
                entry = Sandbox(con=None, loaded={}, rows=0, recipe=recipe)  # filled in by _build
                self._entries[key] = entry
                donor = self._claim_donor(key) if advance is not None else None
            else:
                self._entries.move_to_end(key)
            entry.users += 1
        try:
            if builder:
                make = build if donor is None or advance is None else lambda: self._advance(donor, advance, build)
                self._build(key, entry, make)
            else:
                entry.ready.wait()
                if entry.error is not None:
                    raise entry.error
            yield entry
        finally:
            self._release(entry)

    def newest(self) -> list[tuple[Key, Any]]:
        """(key, recipe) of the newest ready sandbox of each lineage: what a new snapshot would advance."""
        with self._lock:
            best: dict[Any, Key] = {}
            for key, entry in self._entries.items():
                if entry.ready.is_set() and entry.error is None and (key[1] not in best or key[0] > best[key[1]][0]):
                    best[key[1]] = key
            return [(key, self._entries[key].recipe) for key in best.values()]

    def clear(self) -> None:
        """Drop every sandbox (each closes when its last query ends)."""
        with self._lock:
            for key in list(self._entries):
                self._evict(key)

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for e in self._entries.values() if e.ready.is_set() and e.error is None)

    def _claim_donor(self, key: Key) -> tuple[int, Sandbox] | None:
        # Called with the lock held: take the newest older sandbox of the same lineage out of the cache, so
        # no new query starts on it (it is about to change); its running queries keep it open.
        snapshot, lineage = key
        best: tuple[Key, Sandbox] | None = None
        for other, entry in self._entries.items():
            usable = entry.ready.is_set() and entry.error is None and entry.con is not None
            if usable and other[1] == lineage and other[0] < snapshot and (best is None or other[0] > best[0][0]):
                best = (other, entry)
        if best is None:
            return None
        del self._entries[best[0]]
        return best[0][0], best[1]

    def _advance(self, donor: tuple[int, Sandbox], advance: Advance, build: Callable[[], Sandbox]) -> Sandbox:
        snapshot, old = donor
        with self._lock:
            drained = self._idle.wait_for(lambda: old.users == 0, timeout=self.drain_seconds)
            if not drained:
                old.evicted = True  # closed by its last query
        if not drained:
            log.warning("queries on the snapshot %s sandbox did not finish in %ss; copying afresh",
                        snapshot, self.drain_seconds)
            return build()
        try:
            advanced = advance(old, snapshot)
        except BaseException as exc:
            assert old.con is not None
            old.con.close()
            if not isinstance(exc, Exception):
                raise
            # Whatever went wrong, a full copy is always correct.
            log.warning("advancing the snapshot %s sandbox failed; copying afresh", snapshot, exc_info=True)
            return build()
        with self._lock:
            self.advanced += 1
        return advanced

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
            entry.con, entry.loaded, entry.rows, entry.how = built.con, built.loaded, built.rows, built.how
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
            if entry.users == 0:
                self._idle.notify_all()
                if entry.evicted and entry.con is not None:
                    entry.con.close()
