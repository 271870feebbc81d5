"""The Shanghai sandbox's record store: a SQLite file holding each record's native JSON.

The HTTP server reads it at request time, so records seeded while the server runs are served at once,
and a sandbox re-created over the same root keeps its data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.shanghai.cursor import Position

__all__ = ["Page", "Position", "RecordStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    resource   TEXT    NOT NULL,
    updated_us INTEGER NOT NULL,  -- update time, microseconds since the epoch (UTC)
    sort_key   TEXT    NOT NULL,  -- the record key ('' if missing): the second ordering column
    body       TEXT    NOT NULL   -- the record's native JSON object, served verbatim
);
CREATE INDEX IF NOT EXISTS records_order ON records (resource, updated_us, sort_key);
"""


@dataclass(frozen=True)
class Page:
    """One page of native JSON records and the cursor of the next page (None on the last)."""

    bodies: list[str]
    next_cursor: str | None


class RecordStore:
    """Native records per API resource, ordered by update time, then key, then insertion."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as db:
            # WAL lets the server's reader threads run while a test seeds more records.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per call: the server's handler threads must not share a connection.
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def append(self, resource: str, rows: Iterable[tuple[int, str, str]]) -> None:
        """Add (updated_us, key, native JSON) rows to `resource`."""
        with self._connect() as db:
            db.executemany(
                "INSERT INTO records (resource, updated_us, sort_key, body) VALUES (?, ?, ?, ?)",
                ((resource, u, key, body) for u, key, body in rows),
            )

    def page(
        self, resource: str, after_us: int | None, before_us: int | None, cursor: Position | None, limit: int
    ) -> Page:
        """Records with after < updated < before, past `cursor`, at most `limit` of them."""
        where = ["resource = ?"]
        args: list[object] = [resource]
        if after_us is not None:
            where.append("updated_us > ?")
            args.append(after_us)
        if before_us is not None:
            where.append("updated_us < ?")
            args.append(before_us)
        if cursor is not None:
            where.append("(updated_us, sort_key, rowid) > (?, ?, ?)")
            args += [cursor.updated_us, cursor.sort_key, cursor.rowid]
        sql = (
            f"SELECT updated_us, sort_key, rowid, body FROM records WHERE {' AND '.join(where)} "
            "ORDER BY updated_us, sort_key, rowid LIMIT ?"
        )
        with self._connect() as db:
            # One row more than asked tells whether another page follows, without an empty last page.
            rows = db.execute(sql, [*args, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = Position(rows[-1][0], rows[-1][1], rows[-1][2]).encode() if more else None
        return Page([row[3] for row in rows], next_cursor)
