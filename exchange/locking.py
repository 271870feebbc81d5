"""Advisory file locks shared by processes (and, on NFSv4/CephFS, hosts) that update the same files."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an flock on `path` (created with its folder if absent) for the block: exclusive, or shared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class ProcessHold:
    """This process's hold on one lock file, shared by its threads (flock is per open file, so a second open in
    the same process would conflict with the first): taken by the first holder, released by the last."""

    holders: int = 0
    acquiring: bool = False
    handle: IO[str] | None = None

    def leave(self) -> None:
        """One holder leaves; the last one unlocks and closes the file (call it under the caller's guard)."""
        self.holders -= 1
        if self.holders == 0 and self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
