"""Jiangsu's drop manifests: a drop is complete only when its manifest is present and its files match.

Jiangsu writes each file as ``<name>.tmp`` and renames it when complete, data files first and the
manifest ``<source>_<YYYYMMDD>.manifest.json`` last:

    {"source": "电子证照", "day": "20261101",
     "files": [{"name": "电子证照_20261101.csv", "sha256": "<hex>", "size": 123456}]}

A data file without its manifest (or a manifest naming a file not there yet) is a partial drop and is
never read; a file whose SHA-256 or size differs from its manifest entry is an error naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from exchange.errors import SourceFormatError

SUFFIX = ".manifest.json"
_HINT = 'expected {"files": [{"name": ..., "sha256": 64 hex digits, "size": bytes}]}'


def manifest_name(source: str, day: date) -> str:
    """The manifest file name of one dataset's drop for one day."""
    return f"{source}_{day:%Y%m%d}{SUFFIX}"


@dataclass(frozen=True)
class FileEntry:
    """One delivered file as the manifest describes it."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DropManifest:
    """The parsed manifest of one drop."""

    files: tuple[FileEntry, ...]

    def entry(self, name: str) -> FileEntry | None:
        """The manifest's entry for `name`, if it lists it."""
        return next((f for f in self.files if f.name == name), None)

    @classmethod
    def parse(cls, payload: bytes, source: str) -> DropManifest:
        """Parse a manifest's bytes; SourceFormatError naming `source` if it is not one."""
        try:
            doc: Any = json.loads(payload.decode("utf-8-sig"))
            files = tuple(
                FileEntry(str(f["name"]), str(f["sha256"]).lower(), int(f["size"])) for f in doc["files"]
            )
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise SourceFormatError(source, "manifest", f"not a drop manifest: {exc!r}", _HINT) from exc
        for f in files:
            if len(f.sha256) != 64 or any(c not in "0123456789abcdef" for c in f.sha256):
                raise SourceFormatError(source, f"entry {f.name}", "sha256 is not 64 hex digits", _HINT)
        return cls(files)

    def verify(self, name: str, payload: bytes, where: str) -> None:
        """Check a file's bytes against its entry; SourceFormatError naming the file (`where`) if they differ."""
        self.verify_digest(name, hashlib.sha256(payload).hexdigest(), len(payload), where)

    def verify_digest(self, name: str, digest: str, size: int, where: str) -> None:
        """Check a file's SHA-256 and size (taken while landing it) against its entry."""
        entry = self.entry(name)
        if entry is None:
            raise SourceFormatError(where, "manifest", "the drop's manifest does not list this file")
        if digest != entry.sha256 or size != entry.size:
            raise SourceFormatError(
                where,
                "whole file",
                f"SHA-256 {digest} ({size} bytes) differs from the manifest's {entry.sha256} "
                f"({entry.size} bytes)",
                "the file was changed or damaged after the manifest was written; ask Jiangsu to re-deliver",
            )


def render(source: str, day: date, files: dict[str, bytes]) -> bytes:
    """A manifest listing `files` (name -> bytes), as Jiangsu's exporter writes it."""
    doc = {
        "source": source,
        "day": f"{day:%Y%m%d}",
        "files": [
            {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in files.items()
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")
