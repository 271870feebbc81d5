"""The batch manifests verify walks through, each read once, with their files' hashing started ahead.

Manifests are read in listing order. Those a check will look at (new, or changed since the last verify) are
kept whole and their local lake and landing files are handed to the :class:`Prefetcher` as soon as they are
read, up to a bounded look-ahead; those an incremental verify skips keep only what the lake-wide checks
need (batch, digest, snapshot, file names). A first batch can be read before the provenance chain is
checked (:meth:`ManifestStream.prime`), so hashing runs beside the chain check and the catalog attach.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exchange.errors import VerificationError
from exchange.lake import files as lake_files
from exchange.provenance.hashing import Prefetcher
from exchange.provenance.manifest import SignedManifest, landing_dir

LOOKAHEAD_BYTES = 1 << 30  # files being hashed ahead of the checks: enough to keep the threads busy
LOOKAHEAD_MANIFESTS = 256  # whole manifests held ahead: bounds memory when the files are small


@dataclass
class ReadManifest:
    """One manifest as read: `signed` is kept only when it is to be checked; `error` if unreadable."""

    item: str
    batch_id: str = ""
    digest: str = ""
    signed: SignedManifest | None = None
    error: VerificationError | None = None


@dataclass
class ListedManifests:
    """What every manifest read so far says, for the lake-wide checks (complete once the stream is done)."""

    batches: set[str] = field(default_factory=set)
    snapshots: dict[str, int] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)


@dataclass
class Locations:
    """Where a manifest's files are: the lake's local data folder (None: object storage, hashed through the
    lake connection) and the landing root (None: no landing copies to check)."""

    lake_root: str | None
    landing: Path | None


class ManifestStream:
    """Iterate the manifests (duplicates of a batch id dropped, the first one kept) with files hashed ahead."""

    def __init__(
        self, manifests: list[tuple[str, Callable[[], bytes]]], known: dict[str, str], where: Locations,
        hashes: Prefetcher,
    ) -> None:
        self.hashes = hashes
        self.listed = ListedManifests()
        self._pending = iter(manifests)
        self._known = known
        self._where = where
        self._ahead: deque[tuple[ReadManifest, int]] = deque()  # (manifest, bytes it put in flight)
        self._bytes = 0
        self._whole = 0

    def prime(self) -> None:
        """Read ahead until the look-ahead is full or every manifest is read."""
        while self._bytes < LOOKAHEAD_BYTES and self._whole < LOOKAHEAD_MANIFESTS and self._read_next():
            pass

    def __iter__(self) -> Iterator[ReadManifest]:
        while True:
            self.prime()
            if not self._ahead:
                return
            doc, wanted = self._ahead.popleft()
            self._bytes -= wanted
            self._whole -= doc.signed is not None
            yield doc

    def close(self) -> None:
        """Stop the hashing threads."""
        self.hashes.close()

    def _read_next(self) -> bool:
        step = next(self._pending, None)
        if step is None:
            return False
        item, read = step
        try:
            signed = SignedManifest.model_validate_json(read())
        except ValueError as exc:
            self._ahead.append((ReadManifest(item, error=VerificationError(item, f"unreadable manifest: {exc}")), 0))
            return True
        m = signed.manifest
        if m.batch_id in self.listed.batches:
            return True  # the same manifest from an archive and from the manifests folder
        self.listed.batches.add(m.batch_id)
        self.listed.snapshots[m.batch_id] = m.snapshot_id
        self.listed.files |= {f.name for f in m.files}
        digest = signed.digest()
        doc = ReadManifest(item, m.batch_id, digest)
        wanted = 0
        if self._known.get(m.batch_id) != digest:
            doc.signed = signed
            wanted = self._want(signed)
            self._whole += 1
        self._ahead.append((doc, wanted))
        self._bytes += wanted
        return True

    def _want(self, signed: SignedManifest) -> int:
        """Start hashing the manifest's local lake files and landing copies, in the order they are checked."""
        m = signed.manifest
        wanted = 0
        if self._where.lake_root is not None:
            for f in m.files:
                self.hashes.want(Path(lake_files.join(self._where.lake_root, f.name)))
                wanted += max(f.size, 0)  # a claimed size: a tampered one must not unbound the look-ahead
        if self._where.landing is not None:
            folder = landing_dir(self._where.landing, m.province, m.dataset, m.batch_id)
            for d in m.landing:
                self.hashes.want(folder / d.name)
                wanted += max(d.size, 0)
        return wanted
