"""Append-only, hash-chained, signed provenance log (one JSON entry per line).

Each entry names the previous entry's hash, so removing, reordering or editing any entry breaks the
chain at that point. Appends hold an exclusive file lock, so concurrent writers (four provinces
committing at once) serialize instead of forking the chain.

The log stays a file even when the lake catalog is on PostgreSQL: auditors verify and archive it offline as
a file. With writers on several hosts, EXCHANGE_HOME/provenance must be on a shared POSIX filesystem whose
flock() is honoured across hosts (NFSv4, CephFS, a cloud NAS); see docs/operators.md.

Truncation (``exchange provenance archive --truncate``) replaces the file by its tail under the same lock,
with an atomic rename, so an appender that was waiting on the old file notices (its inode is gone from the
path), re-opens and appends to the new one: no entry is lost or forked. The tail starts with the checkpoint
that closed the last archive and gets a signed ``truncate`` entry carrying that archive's linking digest.

Entries are written only from the event vocabulary (exchange/provenance/events.py), and carry ``version``
2. Entries written before it (version 1: any action, free-form details) have no ``version`` key, and their
hashed body stays exactly what their writer hashed, so they keep verifying: reading is lenient.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, Field

from exchange.atomic import fsync_dir, temp_path
from exchange.errors import Unavailable, VerificationError
from exchange.provenance.events import HUB, Event, Truncate, admit
from exchange.provenance.problems import Mismatch
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.roles import check_signer
from exchange.signing.signers import Signature, Signer
from exchange.signing.trust import TrustBundle, verify_signature

GENESIS = "0" * 64
# Entry format: 1 = before the event vocabulary (no `version` key at all), 2 = a vocabulary event.
LEGACY_VERSION = 1
VERSION = 2
# Below this much free space on the log's filesystem the hub refuses to start an irreversible step: the
# entries that must follow it (a commit entry, an extract entry) would not fit.
MIN_FREE_BYTES = 1 << 20


class LogUnavailable(Unavailable):
    """The provenance log cannot be appended to: the hub refuses to commit or serve what it cannot log."""

    def __init__(self, path: Path, reason: str, fix: str = "fix the log's disk or permissions") -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot append to the provenance log {path}: {reason}; the hub commits and serves "
                         f"nothing it cannot log. To go on, {fix}, then run again")


class ProvenanceEntry(BaseModel, frozen=True):
    """One step in the chain of custody."""

    seq: int = Field(description="Position in the log, from 1")
    at: datetime = Field(description="When the step happened (UTC)")
    version: int = Field(
        default=LEGACY_VERSION, exclude_if=lambda v: v == LEGACY_VERSION,
        description="Entry format: 2 = an event of the vocabulary (action and details checked when written); "
                    "absent = 1, written before it (any action, free-form details)",
    )
    actor: str = Field(description="Who acted: hub, adapter:<province>, <province>.data_office, a department id, "
                                   "auditor, operator")
    action: str = Field(description="The event kind (see the vocabulary in docs/auditors.md)")
    subject: str = Field(description="What the action was about, e.g. a batch id or extract id")
    digests: dict[str, str] = Field(default_factory=dict, description="SHA-256 of the documents/files referred to")
    details: dict[str, Any] = Field(default_factory=dict, description="Counts and other facts of the step, as "
                                                                      "the kind's details model says")
    prev_hash: str = Field(description="entry_hash of the previous entry (64 zeros for the first)")
    entry_hash: str = Field(description="SHA-256 of the canonical JSON of this entry without entry_hash/signature")
    signature: Signature = Field(description="Signature over the entry_hash bytes (hex, ASCII)")

    def body(self) -> dict[str, Any]:
        """The hashed part of the entry (a version-1 entry's has no `version`, as its writer hashed it)."""
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
        event: Event,
        *,
        actor: str,
        subject: str,
        digests: dict[str, str] | None = None,
        at: datetime | None = None,
    ) -> ProvenanceEntry:
        """Append one signed entry, chained to the current head, under an exclusive lock.

        Only a vocabulary event: UnrecordableEvent (before anything is written) if its details do not fit
        its kind, `actor`'s role may not record it, or the digests miss what the kind requires. Raises
        LogUnavailable when the log cannot be written; a half-written line is cut off again, so a failed
        append leaves the log as it was.
        """
        digests = digests or {}
        action, details = admit(event, actor, digests)
        try:
            with self._locked() as handle:
                end = self._ends_cleanly(handle)
                last = _last_line(handle, end)
                prev = ProvenanceEntry.model_validate_json(last) if last else None
                entry = _next_entry(signer, prev, actor, action, details, subject, digests, at)
                try:
                    handle.write(entry.model_dump_json().encode() + b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    with suppress(OSError):
                        os.ftruncate(handle.fileno(), end)
                    raise
        except OSError as exc:
            raise LogUnavailable(self.path, exc.strerror or str(exc)) from exc
        return entry

    def ensure_writable(self) -> None:
        """Raise LogUnavailable unless an entry can be appended now: checked before every irreversible step."""
        try:
            with self._locked() as handle:
                self._ends_cleanly(handle)
                free = os.fstatvfs(handle.fileno())
                if free.f_bavail * free.f_frsize < MIN_FREE_BYTES:
                    raise LogUnavailable(self.path, f"less than {MIN_FREE_BYTES // 1024} KiB free on its filesystem")
                if not os.access(self.path, os.W_OK):
                    raise LogUnavailable(self.path, "the file is not writable")
        except OSError as exc:
            raise LogUnavailable(self.path, exc.strerror or str(exc)) from exc

    def _ends_cleanly(self, handle: IO[bytes]) -> int:
        """The log's size (the lock held), or LogUnavailable if it ends in an unfinished line: an entry appended
        after it would be glued to it, so recovery must cut it first."""
        end = handle.seek(0, os.SEEK_END)
        if _torn(handle, end):
            raise LogUnavailable(self.path, "it ends in an unfinished line a writer left",
                                 fix="run `exchange recover`, which cuts that line off and logs it")
        return end

    def torn_tail(self) -> int:
        """Bytes after the last complete line (a writer killed mid-append), 0 if the log ends cleanly."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as handle:
            return len(_torn(handle, _settled_end(handle)))

    def cut_torn_tail(self) -> bytes:
        """Remove an incomplete last line under the lock (it was never acknowledged); return what was cut."""
        with self._locked() as handle:
            size = handle.seek(0, os.SEEK_END)
            torn = _torn(handle, size)
            if torn:
                os.ftruncate(handle.fileno(), size - len(torn))
                os.fsync(handle.fileno())
            return torn

    def since(self, subject: str, stop_action: str) -> Iterator[ProvenanceEntry]:
        """This subject's entries from the newest back to (and including) its newest `stop_action` entry.

        Read backwards from the end, so finding what happened since a recent intent costs a few blocks.
        """
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            for line in _lines_backwards(handle):
                try:
                    entry = ProvenanceEntry.model_validate_json(line)
                except ValueError:
                    continue  # a torn last line: not an entry
                if entry.subject != subject:
                    continue
                yield entry
                if entry.action == stop_action:
                    return

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        """The log file, opened for append and exclusively locked; re-opened if a truncation replaced it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        while True:
            handle = self.path.open("a+b")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
                if _same_file(handle, self.path):
                    break
            except BaseException:
                handle.close()
                raise
            handle.close()  # closing releases the lock on the replaced file; try the current one
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def truncate_before(
        self, seq: int, signer: Signer, *, digests: dict[str, str], archive: str, segment: int
    ) -> ProvenanceEntry | None:
        """Drop the entries before `seq` (the caller checked an archive holds them) and log that it did.

        The new file (kept entries plus a signed ``truncate`` entry) is written beside the log, synced, and
        renamed over it while the lock is held. None if the log already starts at or after `seq`.
        """
        with self._locked() as handle:
            handle.seek(0)
            first = handle.readline()
            if not first.strip() or ProvenanceEntry.model_validate_json(first).seq >= seq:
                return None
            tmp = temp_path(self.path)  # pid-named: recovery removes it only if this process died
            removed = 0
            last = b""
            with tmp.open("wb") as out:
                handle.seek(0)
                kept = False
                for line in handle:
                    if not line.strip():
                        continue
                    if not kept:
                        at_seq = ProvenanceEntry.model_validate_json(line).seq
                        if at_seq > seq:
                            raise ValueError(f"the log jumps from before seq {seq} to seq {at_seq}; not truncating")
                        kept = at_seq == seq
                    if kept:
                        out.write(line)
                        last = line
                    else:
                        removed += 1
                if not kept:
                    raise ValueError(f"the log has no entry seq {seq} to keep; refusing to truncate it all")
                prev = ProvenanceEntry.model_validate_json(last)
                event = Truncate(archive=archive, segment=segment, first_seq=seq, removed_entries=removed)
                entry = _next_entry(signer, prev, HUB, *admit(event, HUB, digests), "provenance", digests, None)
                out.write(entry.model_dump_json().encode() + b"\n")
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(self.path)
            fsync_dir(self.dir)
        return entry

    def first(self) -> ProvenanceEntry | None:
        """The first entry (None if the log is empty or its first line unreadable): seq > 1 means truncated."""
        if not self.path.exists():
            return None
        with self.path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    try:
                        return ProvenanceEntry.model_validate_json(line)
                    except ValueError:
                        return None
        return None

    def entries(self) -> Iterator[tuple[int, str]]:
        """(line number, raw line) for every entry, in order."""
        for number, _, line in self.lines():
            yield number, line.decode()

    def lines(self, offset: int = 0, first_line: int = 1) -> Iterator[tuple[int, int, bytes]]:
        """(line number, byte offset, raw line) from `offset` on; offsets let a verifier resume mid-log.

        Up to the end the log had when no append was in flight: never a line another process is still writing.
        """
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            end = _settled_end(handle)
            handle.seek(offset)
            number = first_line
            while offset < end and (line := handle.readline(end - offset)):
                if line.strip() or not line.endswith(b"\n"):  # a torn tail is a line, even a blank one
                    yield number, offset, line
                offset += len(line)
                number += 1

    def head(self) -> ProvenanceEntry | None:
        """The last entry (read backwards from the end, so cheap on a long log), or None if empty."""
        if not self.path.exists():
            return None
        with self.path.open("rb") as handle:
            last = _last_line(handle, _settled_end(handle))
        return ProvenanceEntry.model_validate_json(last) if last.strip() else None

    def read(self) -> list[ProvenanceEntry]:
        """All entries, parsed (no verification)."""
        return [ProvenanceEntry.model_validate_json(line) for _, line in self.entries()]


def _next_entry(
    signer: Signer, prev: ProvenanceEntry | None, actor: str, action: str, details: dict[str, Any], subject: str,
    digests: dict[str, str], at: datetime | None,
) -> ProvenanceEntry:
    """The signed entry that follows `prev` (already admitted by the vocabulary)."""
    body: dict[str, Any] = {
        "version": VERSION,
        "seq": (prev.seq + 1) if prev else 1,
        "at": (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "digests": digests,
        "details": details,
        "prev_hash": prev.entry_hash if prev else GENESIS,
    }
    # Round-trip through the model so the hashed body is exactly what a reader re-derives.
    draft = ProvenanceEntry.model_validate(
        {**body, "entry_hash": GENESIS, "signature": Signature(key_id="", algorithm="", value="")}
    )
    entry_hash = _hash(draft.body())
    return draft.model_copy(update={"entry_hash": entry_hash, "signature": signer.sign(entry_hash.encode())})


def _same_file(handle: IO[bytes], path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle.fileno())
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _settled_end(handle: IO[bytes]) -> int:
    """The file's size while no append is in flight: appenders write and sync their line under the exclusive
    lock, so under a shared one every byte before the end is a complete entry or a dead writer's torn tail.
    Readers stop there, so an append going on meanwhile is never read half-written (verify, trace, archive)."""
    fcntl.flock(handle, fcntl.LOCK_SH)
    try:
        return os.fstat(handle.fileno()).st_size
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def _pieces_backwards(handle: Any, block: int, end: int) -> Iterator[bytes]:
    """The newline-separated pieces of a file opened in binary mode, up to `end`, last first: the first is what
    follows the last newline (b"" when the file ends with one), blank pieces included."""
    pos, rest = end, b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        handle.seek(pos)
        pieces = (handle.read(step) + rest).split(b"\n")
        rest = pieces[0]
        yield from reversed(pieces[1:])
    yield rest


def _lines_backwards(handle: Any, block: int = 65536, end: int | None = None) -> Iterator[bytes]:
    """The non-empty lines of a file opened in binary mode (up to `end`, default its end), last first."""
    end = handle.seek(0, os.SEEK_END) if end is None else end
    return (piece for piece in _pieces_backwards(handle, block, end) if piece.strip())


def _torn(handle: IO[bytes], end: int) -> bytes:
    """The bytes between the last newline and `end`: an unfinished line, whatever it holds (blanks too), or b""."""
    return next(_pieces_backwards(handle, 8192, end))


def _last_line(handle: Any, end: int | None = None) -> bytes:
    """The last non-empty line of a file opened in binary mode (before `end`), reading backwards in blocks."""
    return next(_lines_backwards(handle, 8192, end), b"")


class ChainVerifier:
    """Checks entries one at a time, in order: continuity, entry hash, signature, and the signer's role.

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
        check_signer(self.bundle, entry.signature, entry.action, item)  # a valid signature by the wrong role
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
