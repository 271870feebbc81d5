"""Append-only, hash-chained, signed provenance log (one JSON entry per line).

Each entry names the previous entry's hash, so removing, reordering or editing any entry breaks the
chain at that point. Appends hold an exclusive file lock, so concurrent writers (four provinces
committing at once) serialize instead of forking the chain.

The log stays a file even when the lake catalog is on PostgreSQL: auditors verify and archive it offline as
a file. With writers on several hosts, EXCHANGE_HOME/provenance must be on a shared POSIX filesystem whose
flock() is honoured across hosts (NFSv4, CephFS, a cloud NAS); see docs/operators.md.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from exchange.errors import VerificationError
from exchange.provenance.problems import Mismatch
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.keys import Signature, Signer, TrustBundle, verify_signature

GENESIS = "0" * 64


class ProvenanceEntry(BaseModel, frozen=True):
    """One step in the chain of custody."""

    seq: int = Field(description="Position in the log, from 1")
    at: datetime = Field(description="When the step happened (UTC)")
    actor: str = Field(description="Who acted: hub, a province adapter, a department")
    action: str = Field(description="pull, validate, quarantine, commit, extract, access, hold, ...")
    subject: str = Field(description="What the action was about, e.g. a batch id or extract id")
    digests: dict[str, str] = Field(default_factory=dict, description="SHA-256 of the documents/files referred to")
    details: dict[str, Any] = Field(default_factory=dict, description="Counts and other facts of the step")
    prev_hash: str = Field(description="entry_hash of the previous entry (64 zeros for the first)")
    entry_hash: str = Field(description="SHA-256 of the canonical JSON of this entry without entry_hash/signature")
    signature: Signature = Field(description="Signature over the entry_hash bytes (hex, ASCII)")

    def body(self) -> dict[str, Any]:
        """The hashed part of the entry."""
        return self.model_dump(mode="json", exclude={"entry_hash", "signature"})


def _hash(body: dict[str, Any]) -> str:
    return sha256_hex(canonical_bytes(body))


class ProvenanceLog:
    """The log file under EXCHANGE_HOME/provenance."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "log.jsonl"

    def append(
        self,
        signer: Signer,
        *,
        actor: str,
        action: str,
        subject: str,
        digests: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> ProvenanceEntry:
        """Append one signed entry, chained to the current head, under an exclusive lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                last = _last_line(handle)
                prev = ProvenanceEntry.model_validate_json(last) if last else None
                body: dict[str, Any] = {
                    "seq": (prev.seq + 1) if prev else 1,
                    "at": (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "digests": digests or {},
                    "details": details or {},
                    "prev_hash": prev.entry_hash if prev else GENESIS,
                }
                # Round-trip through the model so the hashed body is exactly what a reader re-derives.
                draft = ProvenanceEntry.model_validate(
                    {**body, "entry_hash": GENESIS, "signature": Signature(key_id="", algorithm="", value="")}
                )
                entry_hash = _hash(draft.body())
                entry = draft.model_copy(
                    update={"entry_hash": entry_hash, "signature": signer.sign(entry_hash.encode())}
                )
                handle.seek(0, os.SEEK_END)
                handle.write(entry.model_dump_json().encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return entry

    def entries(self) -> Iterator[tuple[int, str]]:
        """(line number, raw line) for every entry, in order."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line

    def lines(self, offset: int = 0, first_line: int = 1) -> Iterator[tuple[int, int, bytes]]:
        """(line number, byte offset, raw line) from `offset` on; offsets let a verifier resume mid-log."""
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(offset)
            number = first_line
            while line := handle.readline():
                if line.strip():
                    yield number, offset, line
                offset += len(line)
                number += 1

    def head(self) -> ProvenanceEntry | None:
        """The last entry (read backwards from the end, so cheap on a long log), or None if empty."""
        if not self.path.exists():
            return None
        with self.path.open("rb") as handle:
            last = _last_line(handle)
        return ProvenanceEntry.model_validate_json(last) if last.strip() else None

    def read(self) -> list[ProvenanceEntry]:
        """All entries, parsed (no verification)."""
        return [ProvenanceEntry.model_validate_json(line) for _, line in self.entries()]


def _last_line(handle: Any) -> bytes:
    """The last non-empty line of a file opened in binary mode, reading backwards in blocks."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    block = 8192
    buffer = b""
    pos = end
    while pos > 0:
        step = min(block, pos)
        pos -= step
        handle.seek(pos)
        buffer = handle.read(step) + buffer
        stripped = buffer.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return buffer.rstrip(b"\n")


class ChainVerifier:
    """Checks entries one at a time, in order: continuity, entry hash, signature.

    Fed line by line (from the live log, an archive, or the tail after a checkpoint), so memory stays
    bounded by one entry. `seq` and `head` say where the verified chain ends.
    """

    def __init__(self, bundle: TrustBundle, seq: int = 0, head: str = GENESIS) -> None:
        self.bundle = bundle
        self.seq = seq
        self.head = head

    def feed(self, item: str, line: str | bytes) -> ProvenanceEntry:
        """Verify the next entry; raise VerificationError naming `item` with what was expected and found."""
        try:
            entry = ProvenanceEntry.model_validate(json.loads(line))
        except ValueError as exc:
            raise VerificationError(item, f"unreadable entry: {exc}") from None
        item = f"{item} (seq {entry.seq}, {entry.action} {entry.subject})"
        if entry.seq != self.seq + 1:
            raise Mismatch(item, "sequence gap: an entry was removed, inserted or reordered",
                           expected=f"seq {self.seq + 1}", found=f"seq {entry.seq}")
        if entry.prev_hash != self.head:
            raise Mismatch(item, "chain broken: prev_hash does not match the previous entry",
                           expected=self.head, found=entry.prev_hash)
        actual = _hash(entry.body())
        if actual != entry.entry_hash:
            raise Mismatch(item, "entry was altered: its content does not match entry_hash",
                           expected=entry.entry_hash, found=actual)
        verify_signature(self.bundle, entry.signature, entry.entry_hash.encode(), entry.at, item)
        self.seq = entry.seq
        self.head = entry.entry_hash
        return entry


def verify_chain(log: ProvenanceLog, bundle: TrustBundle) -> int:
    """Check continuity, every entry hash and every signature; return the number of entries.

    Raises VerificationError naming the first broken entry (file and line).
    """
    chain = ChainVerifier(bundle)
    for line_no, line in log.entries():
        chain.feed(f"provenance entry {log.path.name}:{line_no}", line)
    return chain.seq
