"""Per-department token buckets for the API: a burst allowance refilled at a steady rate.

One bucket per (department, kind): data requests and e-licence checks are limited separately, so an
officer's checks are not starved by the same department's analysts. Buckets live in the server process;
`exchange serve` runs one process, so a department's limit is the server's limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exchange.errors import RateLimited

__all__ = ["Rate", "RateLimited", "TokenBuckets"]


@dataclass(frozen=True)
class Rate:
    """A sustained rate (tokens per second) and a burst (bucket capacity)."""

    per_second: float
    burst: int


class TokenBuckets:
    """Thread-safe token buckets keyed by (department, kind); the clock is injectable for tests."""

    def __init__(self, rates: dict[str, Rate], clock: Callable[[], float] = time.monotonic) -> None:
        self._rates = rates
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, last refill time)

    def take(self, department: str, kind: str) -> None:
        """Spend one token, or raise RateLimited saying when the next one is due."""
        rate = self._rates[kind]
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get((department, kind), (float(rate.burst), now))
            tokens = min(float(rate.burst), tokens + (now - last) * rate.per_second)
            if tokens < 1.0:
                self._buckets[(department, kind)] = (tokens, now)
                wait = (1.0 - tokens) / rate.per_second
                raise RateLimited(f"rate limit for {kind} requests exceeded ({rate.per_second:g}/s, burst "
                                  f"{rate.burst}); retry in {wait:.2f} s", wait)
            self._buckets[(department, kind)] = (tokens - 1.0, now)
