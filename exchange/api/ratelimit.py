"""The API's limits: per-department token buckets, e-licence check lockouts, refused clients aggregated.

One bucket per (department, kind): data requests and e-licence checks are limited separately, so an
officer's checks are not starved by the same department's analysts. Buckets live in the server process;
`exchange serve` runs one process, so a department's limit is the server's limit.

Failed e-licence holder checks are counted per token and per department (:class:`CheckFailures`): too many
in a window lock the caller out for a while. Refused unauthenticated requests are limited per client
address and aggregated before they reach the provenance log (:class:`RejectedClients`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from exchange.errors import RateLimited

__all__ = ["CheckFailures", "FailureLimits", "Lock", "Rate", "RateLimited", "RejectedClients", "Tally",
           "TokenBuckets"]


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


@dataclass(frozen=True)
class Lock:
    """A lockout just begun: who is locked (scope and key), after how many failures, until when."""

    scope: str  # "department" or "token"
    key: str
    failures: int
    window_seconds: float
    seconds: float


@dataclass(frozen=True)
class FailureLimits:
    """How many failed holder checks a token and a department may make in a window before a lockout."""

    per_token: int
    per_department: int
    window_seconds: float
    lockout_seconds: float


class CheckFailures:
    """Failed e-licence holder checks per token and per department; too many in a window lock the caller out.

    A failed check is one whose licence id and holder id do not match a licence together: the answer the
    caller gets is an ordinary "not valid", but each one costs it. A success resets nothing (an attacker
    could interleave checks of a licence it knows), and failures keep counting while locked out, so after a
    lockout the next failure inside the window locks again. Thread-safe; the clock is injectable.
    """

    def __init__(self, limits: FailureLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked_until: dict[tuple[str, str], float] = {}

    def admit(self, department: str, token_id: str) -> None:
        """Raise RateLimited (with the seconds left) while the department or the token is locked out."""
        with self._lock:
            now = self._clock()
            left = max(self._locked_until.get(k, now) - now for k in self._keys(department, token_id))
        if left > 0:
            raise RateLimited(f"e-licence checks are locked for {left:.0f} s after repeated checks whose licence "
                              "id and holder id did not match", left)

    def failed(self, department: str, token_id: str) -> list[Lock]:
        """Count one failed check; the lockouts it starts (none, the token's, the department's or both)."""
        limits = self._limits
        started: list[Lock] = []
        with self._lock:
            now = self._clock()
            for key, limit in zip(self._keys(department, token_id), (limits.per_department, limits.per_token),
                                  strict=True):
                times = self._failures.setdefault(key, deque())
                times.append(now)
                while times and times[0] <= now - limits.window_seconds:
                    times.popleft()
                if len(times) >= limit and self._locked_until.get(key, now) <= now:
                    self._locked_until[key] = now + limits.lockout_seconds
                    started.append(Lock(key[0], key[1], len(times), limits.window_seconds, limits.lockout_seconds))
        return started

    @staticmethod
    def _keys(department: str, token_id: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return ("department", department), ("token", token_id)


@dataclass
class Tally:
    """Refused unauthenticated requests of one client address, not yet written to the log."""

    client: str
    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    first_at: datetime | None = None
    last_at: datetime | None = None


# A client could vary its token to vary the reason: keep the log entry's size bounded.
MAX_REASONS = 20


class RejectedClients:
    """Unauthenticated refusals per client address: limited by a bucket, and aggregated before the log.

    The first refusal of a client that has had no entry for `interval` seconds is written at once; the ones
    after it are counted and written together as one entry, with the count, when the client's interval has
    passed: on the next request after that (any client's) or when the server stops (:meth:`drain`). So a
    client gets at most one entry per interval however fast it sends, and no refusal goes uncounted.
    Past its bucket (`rate`) a client is answered 429 with Retry-After instead of 401: still counted.
    """

    def __init__(self, rate: Rate, interval: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._buckets = TokenBuckets({"rejected": rate}, clock=clock)
        self._interval = interval
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._pending: dict[str, Tally] = {}
        self._written: dict[str, float] = {}  # client -> when its last entry was written

    def refuse(self, client: str, reason: str) -> tuple[RateLimited | None, list[Tally]]:
        """Count one refusal: the RateLimited to answer instead of 401 (or None) and the tallies to write now."""
        try:
            self._buckets.take(client, "rejected")
            limited = None
        except RateLimited as exc:
            limited = RateLimited(f"too many refused requests from your address; {exc}", exc.retry_after)
        with self._lock:
            tally = self._pending.setdefault(client, Tally(client))
            stamp = self._wall()
            tally.count += 1
            if reason in tally.reasons or len(tally.reasons) < MAX_REASONS:
                tally.reasons[reason] += 1
            tally.first_at = tally.first_at or stamp
            tally.last_at = stamp
        return limited, self.due()

    def due(self) -> list[Tally]:
        """The tallies whose client has had no entry for the interval (they are written now)."""
        now = self._clock()
        with self._lock:
            ready = [c for c in self._pending if now - self._written.get(c, -math.inf) >= self._interval]
            for client in ready:
                self._written[client] = now
            return [self._pending.pop(c) for c in ready]

    def drain(self) -> list[Tally]:
        """Every tally not yet written (the server is stopping)."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            return pending
