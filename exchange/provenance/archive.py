"""Provenance archives: closed segments of the log as self-contained, signed, chained tar files.

``exchange provenance archive`` first appends a checkpoint (which closes the segment), then writes every
entry since the previous archive, up to and including that checkpoint, to
``provenance/archives/provenance-<segment>-seq<first>-<last>-prev<digest16>.tar`` holding

- ``header.json``: segment number, first/last seq, the first entry's prev_hash and the last entry_hash,
  the SHA-256 and count of ``entries.jsonl``, the digests of the manifests it carries, and
  ``prev_archive``: the digest of the previous archive's signed header (64 zeros for the first), so
  archives chain to each other as entries do; signed by the hub;
- ``entries.jsonl``: the entries, byte for byte as in the log;
- ``manifests/...``: the batch manifests the segment's commit entries name, so an auditor needs only
  the archives, a lake copy and the trust bundle.

Archives are copies an auditor can take away. By default the live log keeps everything; with
``--truncate`` (:func:`truncate_to_archive`) it is cut back to the last archive's closing checkpoint, after
checking byte for byte that signed archives hold every entry it drops, and a signed ``truncate`` entry
records the archive's linking digest. verify then reads the chain from the archives up to that checkpoint
and from the live log after it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from exchange import atomic
from exchange.errors import TerminalError, VerificationError
from exchange.faults import crash_point
from exchange.locking import file_lock
from exchange.provenance.checkpoint import append_checkpoint
from exchange.provenance.events import Kind
from exchange.provenance.log import GENESIS, ChainVerifier, ProvenanceEntry, ProvenanceLog
from exchange.provenance.manifest import FileDigest
from exchange.provenance.problems import Mismatch
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.roles import Signed, check_signer
from exchange.signing.signers import Signature, Signer
from exchange.signing.trust import TrustBundle, verify_signature

ARCHIVE_FORMAT = "yrd-provenance-archive/1"
ARCHIVES = "archives"
HEADER = "header.json"
ENTRIES = "entries.jsonl"
_NAME = re.compile(r"^provenance-(\d{6})-seq(\d{8})-(\d{8})-prev([0-9a-f]{16})\.tar$")
_CHUNK = 1 << 20


class ArchiveHeader(BaseModel, frozen=True):
    """The signed header of one provenance archive."""

    format: str = Field(default=ARCHIVE_FORMAT, description="Archive format and version")
    segment: int = Field(description="Archive number, from 1, without gaps")
    first_seq: int = Field(description="seq of the first entry in the archive")
    last_seq: int = Field(description="seq of the last entry (a checkpoint)")
    entries: int = Field(description="Number of entries in entries.jsonl")
    prev_entry_hash: str = Field(description="prev_hash of the first entry: the previous archive's last entry_hash")
    last_entry_hash: str = Field(description="entry_hash of the last entry")
    entries_sha256: str = Field(description="SHA-256 of entries.jsonl")
    manifests: list[FileDigest] = Field(description="Batch manifests carried (member name, SHA-256, size)")
    prev_archive: str = Field(description="Digest of the previous archive's signed header (64 zeros for the first)")
    created_at: datetime = Field(description="When the archive was written")
    signature: Signature | None = Field(default=None, description="Hub signature over the header without this field")

    def signed_bytes(self) -> bytes:
        """The canonical bytes the hub signs."""
        return canonical_bytes(self.model_dump(mode="json", exclude={"signature"}))

    def digest(self) -> str:
        """The linking digest the next archive carries: SHA-256 of the canonical signed header."""
        return sha256_hex(canonical_bytes(self.model_dump(mode="json")))

    def file_name(self) -> str:
        """The archive's file name, which repeats the segment, seq range and the link to its predecessor."""
        seqs = f"seq{self.first_seq:08d}-{self.last_seq:08d}"
        return f"provenance-{self.segment:06d}-{seqs}-prev{self.prev_archive[:16]}.tar"


@dataclass
class ArchiveContents:
    """What a verified archive yields: its header and the manifests it carries (member name -> bytes)."""

    path: Path
    header: ArchiveHeader
    manifests: dict[str, bytes] = field(default_factory=dict)


def archive_paths(directory: Path) -> list[Path]:
    """Archive files in a folder, in segment order (names sort by segment)."""
    return sorted(p for p in directory.glob("provenance-*.tar") if p.is_file())


def read_header(path: Path) -> ArchiveHeader:
    """The header of an archive (no verification)."""
    with tarfile.open(path, "r:") as tar:
        member = tar.extractfile(HEADER)
        if member is None:
            raise VerificationError(path.name, f"no {HEADER}")
        return ArchiveHeader.model_validate_json(member.read())


@contextmanager
def archives_locked(directory: Path, *, shared: bool = False) -> Iterator[None]:
    """The archives folder's lock: exclusive while archiving or truncating, shared while verify reads the chain."""
    with file_lock(directory / ".lock", shared=shared):
        yield


def write_archive(
    log: ProvenanceLog, signer: Signer, home: Path, *, lake_snapshot: int | None, manifests: int
) -> Path | None:
    """Close the current segment with a checkpoint and archive it; None if nothing was logged since the last."""
    out_dir = log.dir / ARCHIVES
    with archives_locked(out_dir):
        stale = atomic.leftovers(out_dir, recursive=False)
        if stale:  # an archive writer died mid-write (we hold the archives' lock: no live one is writing)
            from exchange.recovery import remove_leftovers

            remove_leftovers(log, signer, stale, home)
        existing = archive_paths(out_dir)
        previous = read_header(existing[-1]) if existing else None
        last_seq = previous.last_seq if previous else 0
        if _head_seq(log) <= last_seq:
            return None
        checkpoint = append_checkpoint(log, signer, lake_snapshot=lake_snapshot, manifests=manifests,
                                       archive_segment=(previous.segment + 1) if previous else 1)
        crash_point("archive.after_checkpoint")
        # Temporary names carry the writer's pid: recovery removes a dead writer's (exchange/atomic.py).
        tmp_entries = atomic.temp_path(out_dir / ENTRIES)
        digest = hashlib.sha256()
        count = 0
        first: ProvenanceEntry | None = None
        manifest_names: list[str] = []
        with tmp_entries.open("wb") as out:
            for _, _, line in log.lines():
                entry = ProvenanceEntry.model_validate_json(line)
                if entry.seq <= last_seq:
                    continue
                first = first or entry
                out.write(line)
                digest.update(line)
                count += 1
                if entry.action == Kind.COMMIT and isinstance(entry.details.get("manifest"), str):
                    manifest_names.append(entry.details["manifest"])
                if count == 1:
                    out.flush()
                    crash_point("archive.mid_write")
                if entry.seq == checkpoint.seq:
                    break  # appenders go on after it: the line behind may be one still being written
        assert first is not None, "a segment holds at least its checkpoint"
        carried = [n for n in dict.fromkeys(manifest_names) if (home / n).is_file()]
        header = ArchiveHeader(
            segment=(previous.segment + 1) if previous else 1,
            first_seq=first.seq,
            last_seq=checkpoint.seq,
            entries=count,
            prev_entry_hash=first.prev_hash,
            last_entry_hash=checkpoint.entry_hash,
            entries_sha256=digest.hexdigest(),
            manifests=[FileDigest(name=n, sha256=sha256_hex((home / n).read_bytes()), size=(home / n).stat().st_size)
                       for n in carried],
            prev_archive=previous.digest() if previous else GENESIS,
            created_at=datetime.now(UTC),
        )
        header = header.model_copy(update={"signature": signer.sign(header.signed_bytes())})
        target = out_dir / header.file_name()
        with atomic.atomic_path(target) as tmp_tar:
            with tarfile.open(tmp_tar, "w:", format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, HEADER, header.model_dump_json(indent=2).encode())
                tar.add(tmp_entries, arcname=ENTRIES)
                for name in carried:
                    tar.add(home / name, arcname=name)
            tmp_entries.unlink()
        return target


@dataclass(frozen=True)
class Truncation:
    """What truncate_to_archive did: the archive that now holds the dropped entries, and the logged entry."""

    archive: Path
    entry: ProvenanceEntry
    removed: int


def truncate_to_archive(log: ProvenanceLog, signer: Signer) -> Truncation | None:
    """Drop from the live log every entry the archives hold, keeping the last archive's closing checkpoint.

    Refuses (TerminalError) unless each dropped entry is, byte for byte, in the archive whose signed header
    covers its seq. None when there are no archives or the log already starts at the last one's checkpoint.
    """
    out_dir = log.dir / ARCHIVES
    with archives_locked(out_dir):  # no archive is written while the log is cut
        paths = archive_paths(out_dir)
        if not paths:
            return None
        headers = [read_header(p) for p in paths]
        last = headers[-1]
        _check_archived(log, list(zip(paths, headers, strict=True)), last.last_seq)
        entry = log.truncate_before(last.last_seq, signer, digests={"archive": last.digest()},
                                    archive=paths[-1].name, segment=last.segment)
    if entry is None:
        return None
    return Truncation(paths[-1], entry, int(entry.details["removed_entries"]))


def _check_archived(log: ProvenanceLog, archives: list[tuple[Path, ArchiveHeader]], boundary: int) -> None:
    """Every live entry up to `boundary` is in its archive on disk: whole segments by SHA-256 and count (of the
    live lines, the signed header and the archive's own entries), and the one closing checkpoint an earlier
    truncation kept by its entry hash."""
    by_seq = iter(archives)
    path: Path | None = None
    header: ArchiveHeader | None = None
    digest, count, partial = hashlib.sha256(), 0, False

    def close() -> None:
        if header is None or path is None or count == 0:
            return  # an archive wholly before the live log's start: cut earlier, verified by verify
        expected = (header.entries, header.entries_sha256)
        if not partial and not ((count, digest.hexdigest()) == expected == _entries_digest(path)):
            raise TerminalError(f"not truncating: the live log's seq {header.first_seq}..{header.last_seq} differ "
                                f"from archive {header.file_name()}")

    for _, _, line in log.lines():
        entry = ProvenanceEntry.model_validate_json(line)
        if entry.seq > boundary:
            break
        while header is None or entry.seq > header.last_seq:
            close()
            path, header = next(by_seq, (None, None))
            if header is None:
                raise TerminalError(f"not truncating: no archive holds live entry seq {entry.seq}")
            digest, count, partial = hashlib.sha256(), 0, False
        if entry.seq < header.first_seq:
            raise TerminalError(f"not truncating: no archive holds live entry seq {entry.seq}")
        if count == 0 and entry.seq != header.first_seq:
            # A log cut before starts with the previous archive's closing checkpoint, and only with that.
            if entry.seq != header.last_seq or entry.entry_hash != header.last_entry_hash:
                raise TerminalError(f"not truncating: live entry seq {entry.seq} is not in archive "
                                    f"{header.file_name()}")
            partial = True
        digest.update(line)
        count += 1
        if entry.seq == boundary:
            break  # appenders go on: the line behind may be one still being written
    close()


def _entries_digest(path: Path) -> tuple[int, str]:
    """(count, SHA-256) of an archive's entries.jsonl as stored; (-1, "") when unreadable."""
    digest, count = hashlib.sha256(), 0
    try:
        with tarfile.open(path, "r:") as tar:
            member = tar.extractfile(ENTRIES)
            if member is None:
                return -1, ""
            for line in member:
                digest.update(line)
                count += 1
    except (tarfile.TarError, EOFError, OSError):
        return -1, ""
    return count, digest.hexdigest()


def history_lines(log: ProvenanceLog) -> Iterator[bytes]:
    """Every entry line, oldest first: what a truncation cut from the live log (read from the archives), then
    the live log. For readers such as trace; verify checks the same chain with signatures."""
    first = log.first()
    base = first.seq if first is not None else 1
    if base > 1:
        for path in archive_paths(log.dir / ARCHIVES):
            with tarfile.open(path, "r:") as tar:
                member = tar.extractfile(ENTRIES)
                for line in member if member is not None else []:
                    if json.loads(line)["seq"] < base:
                        yield line
    for _, _, line in log.lines():
        yield line


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(datetime.now(UTC).timestamp())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _head_seq(log: ProvenanceLog) -> int:
    head = log.head()
    return head.seq if head else 0


def check_archive(
    path: Path,
    bundle: TrustBundle,
    previous: ArchiveHeader | None,
    chain: ChainVerifier | None = None,
    on_entry: Callable[[ProvenanceEntry], None] | None = None,
) -> ArchiveContents:
    """Verify one archive: readable to the end, header signed, name and links consistent with `previous`,
    entries hashing to the header's digest and (through `chain`, or a chain of its own) chained and signed."""
    item = f"provenance archive {path.name}"
    try:
        return _check_archive(path, item, bundle, previous, chain, on_entry)
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, VerificationError):
            raise
        raise Mismatch(item, f"archive is truncated or unreadable: {exc}", expected="a complete tar archive",
                       found=f"{path.stat().st_size} bytes, unreadable") from None


def _check_archive(
    path: Path, item: str, bundle: TrustBundle, previous: ArchiveHeader | None,
    chain: ChainVerifier | None, on_entry: Callable[[ProvenanceEntry], None] | None,
) -> ArchiveContents:
    with tarfile.open(path, "r:") as tar:
        member = tar.extractfile(HEADER)
        if member is None:
            raise VerificationError(item, f"no {HEADER}")
        header = ArchiveHeader.model_validate_json(member.read())
        if header.signature is None:
            raise VerificationError(item, "header is not signed")
        verify_signature(bundle, header.signature, header.signed_bytes(), header.created_at, f"{item} header")
        check_signer(bundle, header.signature, Signed.ARCHIVE_HEADER, f"{item} header")
        if not _NAME.match(path.name) or path.name != header.file_name():
            raise Mismatch(item, "file name does not match the signed header (renamed or substituted?)",
                           expected=header.file_name(), found=path.name)
        _check_link(item, header, previous)
        own = chain or ChainVerifier(bundle, seq=header.first_seq - 1, head=header.prev_entry_hash)
        if own.seq != header.first_seq - 1 or own.head != header.prev_entry_hash:
            raise Mismatch(item, "does not continue the chain verified so far",
                           expected=f"seq {own.seq + 1} after {own.head}",
                           found=f"seq {header.first_seq} after {header.prev_entry_hash}")
        entries = tar.extractfile(ENTRIES)
        if entries is None:
            raise VerificationError(item, f"no {ENTRIES}")
        digest = hashlib.sha256()
        count = 0
        for number, line in enumerate(entries, start=1):
            digest.update(line)
            count += 1
            entry = own.feed(f"{item}:{ENTRIES}:{number}", line)
            if on_entry is not None:
                on_entry(entry)
        if count != header.entries or digest.hexdigest() != header.entries_sha256:
            raise Mismatch(item, f"{ENTRIES} differs from the signed header (truncated or edited)",
                           expected=f"{header.entries} entries, SHA-256 {header.entries_sha256}",
                           found=f"{count} entries, SHA-256 {digest.hexdigest()}")
        if own.head != header.last_entry_hash:
            raise Mismatch(item, "last entry differs from the signed header", expected=header.last_entry_hash,
                           found=own.head)
        contents = ArchiveContents(path, header)
        for m in header.manifests:
            data_member = tar.extractfile(m.name)
            data = data_member.read() if data_member is not None else b""
            if sha256_hex(data) != m.sha256:
                raise Mismatch(f"{item}:{m.name}", "carried manifest differs from the signed header",
                               expected=m.sha256, found=sha256_hex(data))
            contents.manifests[m.name] = data
        return contents


def _check_link(item: str, header: ArchiveHeader, previous: ArchiveHeader | None) -> None:
    if previous is None:
        if header.segment == 1 and (header.prev_archive != GENESIS or header.first_seq != 1):
            raise Mismatch(item, "first archive does not start the chain", expected=f"seq 1 after {GENESIS}",
                           found=f"seq {header.first_seq} after {header.prev_archive}")
        return
    expected = (previous.segment + 1, previous.digest(), previous.last_seq + 1, previous.last_entry_hash)
    found = (header.segment, header.prev_archive, header.first_seq, header.prev_entry_hash)
    if expected != found:
        raise Mismatch(item, "does not link to the previous archive (one missing, replaced or reordered?)",
                       expected=f"segment {expected[0]}, prev_archive {expected[1]}, first seq {expected[2]}",
                       found=f"segment {found[0]}, prev_archive {found[1]}, first seq {found[2]}")
