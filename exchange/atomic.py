"""Write files so that a partial file never carries its final name, and find the partial files a crash left.

A file is written to ``.<name>.<pid>.tmp`` beside its final path, flushed and fsynced, then renamed over the
final name (atomic on POSIX) and the folder fsynced, so after a crash at any instruction the final name holds
either the old content or the whole new one. The writer's pid in the temporary name lets recovery tell a
file a live process is still writing from one a dead process left behind (see exchange/recovery.py).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)\.tmp$")


def temp_path(path: Path) -> Path:
    """The temporary name `path` is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def fsync_dir(directory: Path) -> None:
    """Make a rename (or a removal) in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, path: Path) -> None:
    """fsync `tmp`, rename it to `path`, fsync the folder: the last step of every atomic write."""
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write `path` to (by any writer: Parquet, tar, ...); published on success only.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically and durably."""
    write_bytes(path, text.encode("utf-8"))


def write_private(path: Path, data: bytes) -> None:
    """Write a secret atomically and durably, owner-only (0600) from the moment its temporary file exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def secret_key(path: Path, size: int = 32) -> bytes:
    """A random key kept at `path` (0600), created on first use and never overwritten: when two processes
    create it at once, both end up with the one that was linked into place first."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(size))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
            fsync_dir(path.parent)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            tmp.unlink()
    return path.read_bytes()


@dataclass(frozen=True)
class Leftover:
    """A file a crash left: a dead writer's temporary file, or an empty file under a final name."""

    path: Path
    size: int
    why: str


def writer_alive(pid: int) -> bool:
    """Whether the process `pid` still runs on this host (a temporary file it is writing must stay)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def stale_temp(path: Path) -> bool:
    """Whether `path` is a temporary file of a writer that is no longer running."""
    match = _TEMP.match(path.name)
    return match is not None and not writer_alive(int(match["pid"]))


def leftovers(root: Path, *, recursive: bool = True) -> list[Leftover]:
    """Dead writers' temporary files under `root`, and legacy partial names (*.part, *.tmp without pid)."""
    if not root.is_dir():
        return []
    found: list[Leftover] = []
    paths = root.rglob("*") if recursive else root.iterdir()
    for path in sorted(paths):
        if not path.is_file() or path.is_symlink():
            continue
        name = path.name
        if _TEMP.match(name):
            if stale_temp(path):
                found.append(Leftover(path, path.stat().st_size, "temporary file of a writer that died"))
        elif name.endswith((".part", ".tmp", ".truncating")):
            found.append(Leftover(path, path.stat().st_size, "partial file left by an interrupted write"))
    return found
