"""RFC 8785 canonical JSON and SHA-256 digests: what gets signed is always these bytes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785


def canonical_bytes(document: Any) -> bytes:
    """The RFC 8785 (JCS) serialization of a JSON-compatible value."""
    return rfc8785.dumps(document)


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in bounded chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def document_digest(document: Any) -> str:
    """Hex SHA-256 of a document's canonical JSON."""
    return sha256_hex(canonical_bytes(document))


def utc_z(moment: datetime) -> str:
    """An aware datetime as ISO 8601 in UTC with a 'Z': the one spelling signed documents use for instants."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
