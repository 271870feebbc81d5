"""Advance the API's cached sandboxes to each new lake snapshot as soon as its commit has settled.

Without this, the first query after a commit pays for the commit: re-attaching the lake (a catalog load),
reading the change feed and inserting the gained rows into the department's sandbox. Here a background
thread of `exchange serve` watches the catalog's stamp (exchange/access/lakeshare.py, no attach: the stat of
a DuckDB-file catalog, or the newest snapshot id read by one short query from a PostgreSQL catalog), and
once it has changed, stayed unchanged for `settle_seconds` and no other process holds or waits for the
catalog lock (an ingest may commit through several connections in a row; PostgreSQL has no lock, the
settle time alone covers that), it advances the newest sandbox of every cached lineage to the current
snapshot under a short lease, exactly as the first query would have (exchange/access/service.py:
`department_sandbox`). The next query then finds the snapshot known and its sandbox ready.

Access decisions are not made here and nothing is logged: every query still checks its token, grants and
scope, and logs itself, before the cache is consulted. A lineage is only advanced while the department's
usable grants still make that same lineage (a revoked or changed grant makes a different one, which the
next query builds if it is allowed to); the advanced copy holds what the older one did, under the same
masks and filter, one snapshot later. A catalog that cannot be read (a PostgreSQL server down) stops
nothing: its stamp is unknown, nothing is warmed, and queries go through the lake as without a warmer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from exchange.access.lakeshare import SharedLake
from exchange.access.registry import Registry
from exchange.access.service import department_sandbox
from exchange.access.viewcache import ViewCache, sandbox_key
from exchange.hub import Hub

log = logging.getLogger(__name__)


def warm(hub: Hub, lake: SharedLake, views: ViewCache, errors: list[str] | None = None) -> int:
    """Advance the newest sandbox of each cached lineage to the current snapshot; how many were advanced.

    What went wrong for a department (its query will build the sandbox itself) is logged and, with
    `errors`, appended there.
    """
    targets = [(key, recipe) for key, recipe in views.newest() if recipe is not None]
    if not targets:
        return 0
    warmed = 0
    current = lake.refresh()
    # Each advance takes its own lease (service.department_sandbox): holding one here while waiting for a
    # sandbox a query is building would deadlock once the lease drains for a writer.
    registry = Registry(hub.layout.access)
    for key, (department, limits) in targets:
        if key[0] >= current:
            continue
        try:
            grants, _ = registry.usable_grants(department)
            if sandbox_key(grants, current, limits)[1] != key[1]:
                continue  # the grants changed: the department's next query decides what it may see
            with department_sandbox(views, lake, department, grants, current, limits):
                warmed += 1
        except Exception as exc:  # one department's trouble must not stop the others; its query retries
            log.warning("could not advance %s's sandbox to snapshot %s", department, current, exc_info=True)
            if errors is not None:
                errors.append(f"{department} at snapshot {current}: {type(exc).__name__}: {exc}")
    return warmed


class SandboxWarmer:
    """The background thread around `warm` (see the module docstring)."""

    def __init__(self, hub: Hub, lake: SharedLake, views: ViewCache, *, poll_seconds: float = 0.1,
                 settle_seconds: float = 0.3, retry_seconds: float = 5.0) -> None:
        self.hub, self.lake, self.views = hub, lake, views
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.retry_seconds = retry_seconds
        self.warmed = 0  # sandboxes advanced ahead of a query (for tests and the benchmark)
        self.errors: list[str] = []  # what went wrong, most recent last (for tests and the benchmark)
        self._stop = threading.Event()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sandbox-warmer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching; waits for an advance under way."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def caught_up(self) -> bool:
        """Whether no commit is waiting to be warmed for (the catalog is as last read, nothing under way)."""
        if not self._busy.acquire(blocking=False):
            return False
        try:
            return not self.lake.changed() or not self._pending()
        finally:
            self._busy.release()

    def _pending(self) -> bool:
        return any(recipe is not None for _, recipe in self.views.newest())

    def _run(self) -> None:
        seen: Any = None
        since = time.monotonic()
        while not self._stop.wait(self.poll_seconds):
            # Nothing cached: nothing to read either (for PostgreSQL each stamp is a query to the server).
            stamp = self.lake.stamp() if self._pending() else None
            if stamp is None or not self.lake.changed(stamp):
                seen = None
                continue
            if stamp != seen:  # still changing: wait until the commit has settled
                seen, since = stamp, time.monotonic()
                continue
            if time.monotonic() - since < self.settle_seconds or self.lake.catalog_busy():
                continue
            with self._busy:
                try:
                    self.warmed += warm(self.hub, self.lake, self.views, self.errors)
                except Exception as exc:
                    log.warning("advancing the cached sandboxes failed; queries will do it", exc_info=True)
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(self.retry_seconds)
            seen = None
