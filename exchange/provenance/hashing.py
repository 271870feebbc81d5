"""SHA-256 of local files, computed ahead of the checks that compare them.

hashlib releases the GIL while it hashes, so a few threads hash the files verify will need while the main
thread verifies the provenance chain, attaches the lake catalog and checks earlier manifests: on a large
lake verify reads at the speed of the disk and the cores, and on a small increment the hashing hides behind
the fixed costs. Only when a check asks for a digest does it wait for it; the check itself, and the order in
which problems are reported, are the same as hashing on demand.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from exchange.lake.files import local_digest

MAX_WORKERS = 4  # more threads than this only contend for the same disk


class Prefetcher:
    """Digests of local files, started early on a thread pool and collected when a check needs them."""

    def __init__(self, workers: int | None = None) -> None:
        count = workers if workers is not None else min(MAX_WORKERS, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=max(1, count), thread_name_prefix="verify-hash")
        self._started: dict[Path, Future[tuple[str, int] | None]] = {}

    def want(self, path: Path) -> None:
        """Start hashing `path` (once) in the background."""
        if path not in self._started:
            self._started[path] = self._pool.submit(local_digest, path)

    def digest(self, path: Path) -> tuple[str, int] | None:
        """(SHA-256 hex, size) of `path`, None if missing: waits for the background hash, or hashes now."""
        started = self._started.pop(path, None)
        return started.result() if started is not None else local_digest(path)

    def close(self) -> None:
        """Drop what nobody asked for (a check that failed early) and stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._started.clear()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
