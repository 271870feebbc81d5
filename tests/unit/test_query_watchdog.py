"""The query time limit is decided by an injected watchdog: the real one keeps interrupting until cancelled,
and a query over its limit is stopped with QueryTimeout whatever the machine's load."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from exchange.access.errors import QueryTimeout
from exchange.access.query import QueryLimits, open_sandbox, run_in_sandbox
from exchange.access.watchdog import already_expired, thread_watchdog

ENDLESS = "SELECT count(*) FROM range(100000000000) a"  # hours of work: only the limit ends it
HANG_GUARD_SECONDS = 300.0


def test_a_query_over_its_limit_is_stopped_and_says_which_limit() -> None:
    limits = QueryLimits(timeout_seconds=2.5, watchdog=already_expired)
    with open_sandbox(limits) as sandbox, pytest.raises(QueryTimeout, match="time limit of 2.5 s"):
        run_in_sandbox(sandbox, ENDLESS, limits)


def test_a_query_within_its_limit_is_not_touched_by_it() -> None:
    fired = threading.Event()

    def guard(seconds: float, expire: Callable[[], None]) -> Callable[[], None]:
        return thread_watchdog(HANG_GUARD_SECONDS, fired.set)

    limits = QueryLimits(watchdog=guard)
    with open_sandbox(limits) as sandbox:
        assert run_in_sandbox(sandbox, "SELECT 42 AS x", limits).to_pylist() == [{"x": 42}]
    assert not fired.is_set()


def test_an_expired_watchdog_repeats_until_cancelled_and_not_after() -> None:
    """An interrupt that lands before DuckDB started the query is lost; the next one is not."""
    calls: list[int] = []
    third = threading.Event()

    def expire() -> None:
        calls.append(1)
        if len(calls) >= 3:
            third.set()

    cancel = thread_watchdog(0.0, expire)
    assert third.wait(HANG_GUARD_SECONDS)
    cancel()
    after = len(calls)
    cancel_twice = thread_watchdog(HANG_GUARD_SECONDS, expire)
    cancel_twice()  # cancelled before its limit: never fires
    assert len(calls) == after


def test_the_same_sandbox_answers_again_after_a_timeout() -> None:
    limits = QueryLimits(watchdog=already_expired)
    with open_sandbox(limits) as sandbox:
        with pytest.raises(QueryTimeout):
            run_in_sandbox(sandbox, ENDLESS, limits)
        relaxed = QueryLimits(watchdog=lambda s, e: thread_watchdog(HANG_GUARD_SECONDS, e))
        assert run_in_sandbox(sandbox, "SELECT 1 AS one", relaxed).to_pylist() == [{"one": 1}]
