"""Shanghai's pagination cursor: where a page ended, as the API documents it.

The cursor is opaque to a client that only follows it, but the hub reads it to see where the API is
taking it: a cursor that leads back to a position already read (however it is spelled: padding, alphabet,
JSON spacing) is a loop that would deliver the same records lap after lap. The format is base64url of the
JSON array ``[update time in microseconds (UTC), record key, row id]``; positions order like the records.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Position:
    """Where a page ended: the last record's ordering columns, rowid breaking ties."""

    updated_us: int
    sort_key: str
    rowid: int

    def encode(self) -> str:
        """An opaque cursor string."""
        raw = json.dumps([self.updated_us, self.sort_key, self.rowid], ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode("ascii")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """Parse a cursor in any spelling of the documented format; ValueError if it is not one.

        Both base64 alphabets, with or without padding, and any JSON spacing read as the same position.
        """
        text = cursor.strip().replace("+", "-").replace("/", "_").rstrip("=")
        try:
            raw = base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))
            u, key, rowid = json.loads(raw)
        except (binascii.Error, UnicodeError, ValueError, TypeError) as exc:
            raise ValueError(f"invalid cursor {cursor!r}") from exc
        if not (type(u) is int and isinstance(key, str) and type(rowid) is int):
            raise ValueError(f"invalid cursor {cursor!r}")
        return cls(u, key, rowid)
