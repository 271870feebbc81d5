"""Bounded, jittered exponential retries for Shanghai's API, with the sleeper and randomness injectable.

HTTP 429 and 5xx answers and network failures are retried at most `max_retries` times. The wait before
retry n (0-based) is drawn uniformly from [0, min(cap, base * 2**n)] ("full jitter", so many clients
that failed together do not retry together); a Retry-After header is honoured as a minimum, up to
`max_retry_after` seconds: a server asking for more is left alone and the run fails as transient, for
Airflow to retry later instead of holding a worker slot asleep.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

Sleeper = Callable[[float], None]
Random = Callable[[], float]

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before asking Shanghai's API again."""

    max_retries: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0
    sleep: Sleeper = field(default=time.sleep, compare=False)
    random: Random = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.base <= 0 or self.cap <= 0 or self.max_retry_after < 0:
            raise ValueError("retry counts and delays must be positive")

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (0-based); Retry-After, if given, is the minimum."""
        backoff = self.random() * min(self.cap, self.base * 2**retry)
        return max(backoff, retry_after) if retry_after is not None else backoff


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delta-seconds or an HTTP date) in seconds; None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
