"""The query time limit's watchdog, injectable so a test decides when a query is over its limit.

A watchdog is started with the limit in seconds and what to do when it passes (`expire`), and returns the
function that cancels it. The one the hub runs is a thread on a monotonic wait; tests pass their own
(e.g. :func:`already_expired`), so whether a query is "too slow" never depends on how loaded the machine is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Watchdog = Callable[[float, Callable[[], None]], Callable[[], None]]

REPEAT_SECONDS = 0.05  # how often an expired watchdog repeats `expire` until it is cancelled


def thread_watchdog(seconds: float, expire: Callable[[], None]) -> Callable[[], None]:
    """Call `expire` once `seconds` have passed, then again every REPEAT_SECONDS until cancelled.

    Repeating matters: DuckDB's interrupt() only stops a query that is already running, so an expiry that
    lands before the query starts (a stalled thread on a loaded machine) would otherwise be lost and leave
    the query unbounded. Cancelling waits for the thread, so no interrupt reaches the next query.
    """
    done = threading.Event()

    def watch() -> None:
        if done.wait(seconds):
            return
        expire()
        while not done.wait(REPEAT_SECONDS):
            expire()

    thread = threading.Thread(target=watch, name="query-watchdog", daemon=True)
    thread.start()

    def cancel() -> None:
        done.set()
        thread.join()

    return cancel


def already_expired(seconds: float, expire: Callable[[], None]) -> Callable[[], None]:
    """A watchdog whose limit has passed when it starts: what a query over its time limit sees."""
    return thread_watchdog(0.0, expire)
