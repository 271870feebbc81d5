"""In-memory DuckDB databases with the lake's extensions already loaded, kept for the next lake connection.

`LOAD` of the DuckLake extension checks the extension file's signature every time a fresh database loads it:
0.1-0.9 s depending on the machine's load, paid by every :func:`exchange.lake.connect.connect` (three to five
per batch: the pull's watermark, the lake rules, the commit and its guards). A database that has loaded it
once keeps it, so a connection borrows an idle database, attaches the lake, and on release detaches it (which
frees the catalog for other processes exactly as closing did) and puts the database back.

What one use could leave for the next stays per use: the caller gets its own cursor (registered views and the
selected catalog die with it), the lake is detached, an S3 secret is dropped, and the external file cache is
off, so a lake file is read from storage by every use as it was by a fresh database. A database whose use
raised, whose detach failed or whose settings changed (a plain SET is global in DuckDB) is closed, never reused.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

IDLE_MAX = 4  # databases kept idle per process (a process rarely holds more lake connections at once)


class Primed:
    """One in-memory database and the extension files it has loaded."""

    def __init__(self) -> None:
        self.db = duckdb.connect()
        # Every use reads lake files from storage, as a fresh database did (verify hashes what is there now).
        self.db.execute("SET enable_external_file_cache = false")
        self.loaded: set[str] = set()
        self.spoiled = False  # set when a use could not undo what it did: the database is closed, not reused

    def settings(self) -> list[tuple[str, str | None]]:
        """Every setting's current value. DuckDB's plain SET changes many of them for the whole database, so a
        use that changed one spoils the database (compared before and after the use)."""
        return [(str(name), None if value is None else str(value)) for name, value in
                self.db.execute("SELECT name, value FROM duckdb_settings() ORDER BY name").fetchall()]

    def load(self, extension: Path) -> None:
        key = str(extension)
        if key not in self.loaded:
            self.db.execute(f"LOAD '{key}'")
            self.loaded.add(key)


_idle: list[Primed] = []
_guard = threading.Lock()
# Forked children must not touch (or destroy) DuckDB instances whose threads stayed in the parent.
_inherited: list[Primed] = []


def _after_fork_in_child() -> None:
    global _guard
    _inherited.extend(_idle)  # kept referenced: running their destructors in the child could hang
    _idle.clear()
    _guard = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def borrowed(extensions: list[Path]) -> Iterator[Primed]:
    """A database with `extensions` loaded: the caller attaches through ``.db`` and detaches everything it
    attached before leaving, or sets ``.spoiled``; an exception out of the block also means: do not reuse it."""
    with _guard:
        primed = _idle.pop() if _idle else None
    if primed is None:
        primed = Primed()
    try:
        for extension in extensions:
            primed.load(extension)
        yield primed
    except BaseException:
        primed.db.close()
        raise
    with _guard:
        if not primed.spoiled and len(_idle) < IDLE_MAX:
            _idle.append(primed)
            return
    primed.db.close()


def clear() -> None:
    """Close every idle database (tests; a process that wants its memory back)."""
    with _guard:
        idle = list(_idle)
        _idle.clear()
    for primed in idle:
        primed.db.close()
