"""What every province adapter implements, and the helpers they share.

An adapter is the only code that knows a province's native system. It pulls native payloads, keeps a
raw landing copy of exactly what it received (with SHA-256), and yields canonical Arrow tables.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from adapters.authenticity import VerifiedSource
from adapters.connection import ConnectionLike
from exchange import atomic
from exchange.config import ExchangeSettings
from exchange.datasets import TIMESTAMP
from exchange.datasets import dataset as canonical_dataset
from exchange.datasets import province as known_province
from exchange.errors import BadWindow

DELETED_AT = "deleted_at"



@dataclass(frozen=True)
class Window:
    """The data interval a run is responsible for: records updated in [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name, bound in (("start", self.start), ("end", self.end)):
            if bound.tzinfo is None or bound.utcoffset() is None:
                raise BadWindow(
                    f"window {name} {bound.isoformat()} has no UTC offset; give one, e.g. "
                    f"{bound.replace(microsecond=0).isoformat()}+08:00"
                )
        if self.end <= self.start:
            raise BadWindow(
                f"empty window: the end {self.end.isoformat()} is not after the start {self.start.isoformat()}"
            )

    def pullable(self, now: datetime, skew: timedelta) -> Window:
        """This window, if a run may pull it at `now`: it must end no later than `now` plus `skew`.

        A window ending in the future would commit records that are still pending at the province and move
        the watermark past them, so the real window later finds nothing. `skew` tolerates clocks that
        differ a little between the hub and the scheduler. Raises BadWindow otherwise.
        """
        if self.end > now + skew:
            raise BadWindow(
                f"window end {self.end.isoformat()} is in the future (now {now.isoformat()}, allowed skew "
                f"{skew.total_seconds():.0f} s, EXCHANGE_WINDOW_FUTURE_SKEW_SECONDS): pull a window that has ended"
            )
        return self


@dataclass(frozen=True)
class PullRequest:
    """What to pull: records of `dataset` updated after `since` (exclusive, None = from the beginning)
    and before `window.end` (exclusive)."""

    dataset: str
    window: Window
    since: datetime | None


@dataclass(frozen=True)
class LandedFile:
    """One raw payload exactly as the province delivered it."""

    name: str
    path: Path
    sha256: str
    size: int


@dataclass
class Landing:
    """A batch's raw landing folder; every payload written here is hashed as it is written."""

    root: Path
    files: list[LandedFile] = field(default_factory=list)
    # The province signatures the adapter verified over what it landed (recorded in provenance).
    signatures: list[VerifiedSource] = field(default_factory=list)

    def write(self, name: str, payload: bytes) -> LandedFile:
        """Store `payload` under `name` and record its SHA-256."""
        path = self.root / name
        atomic.write_bytes(path, payload)
        landed = LandedFile(name, path, hashlib.sha256(payload).hexdigest(), len(payload))
        self.files.append(landed)
        return landed

    def copy(self, source: Path, name: str | None = None) -> LandedFile:
        """Copy a delivered file into the landing folder, hashing it on the way (in blocks: exports can be GBs)."""
        with source.open("rb") as stream:
            return self.write_stream(name or source.name, stream)

    def write_stream(self, name: str, stream: BinaryIO) -> LandedFile:
        """Store what `stream` yields under `name`, hashing it in 1 MiB blocks (memory stays flat)."""
        path = self.root / name
        digest, size = hashlib.sha256(), 0
        with atomic.atomic_path(path) as tmp, tmp.open("wb") as out:
            while block := stream.read(1 << 20):
                digest.update(block)
                out.write(block)
                size += len(block)
        landed = LandedFile(path.name, path, digest.hexdigest(), size)
        self.files.append(landed)
        return landed


class SourceAdapter(Protocol):
    """A province's system as the hub sees it."""

    province: str

    def datasets(self) -> Sequence[str]:
        """The canonical datasets this province provides."""
        ...

    def pull(self, request: PullRequest, landing: Landing) -> Iterator[pa.Table]:
        """Yield canonical tables (the dataset's schema, in source order) for the request.

        Every native payload read is first written to `landing`. A payload that cannot be parsed
        raises SourceFormatError naming the source and position. The same request yields the same rows.
        """
        ...


def in_window(updated: pa.ChunkedArray | pa.Array, request: PullRequest, stand_in: datetime) -> pa.ChunkedArray:
    """Which records a pull takes: since < updated_at < end, vectorized.

    A record whose update time is missing or unreadable (null) cannot be placed by it, yet must reach the
    contract, which quarantines it with what was sent: it is taken as updated at `stand_in` (its file's
    local midnight, or when the province signed it), so it is pulled by the window holding that moment.
    """
    effective = pc.fill_null(updated, pa.scalar(stand_in, TIMESTAMP))
    keep = pc.less(effective, pa.scalar(request.window.end, TIMESTAMP))
    if request.since is not None:
        keep = pc.and_(keep, pc.greater(effective, pa.scalar(request.since, TIMESTAMP)))
    return keep


def deletion_schema(dataset: str) -> pa.Schema:
    """A deletions table: the dataset's record key and when the province deleted the record (UTC)."""
    ds = canonical_dataset(dataset)
    return pa.schema([pa.field(ds.key, pa.string()), pa.field(DELETED_AT, TIMESTAMP)])


class SupportsDeletions(Protocol):
    """Optional capability: a province that soft-deletes records reports them instead of dropping them.

    The canonical schemas have no "deleted" column, so deletions travel apart from the records: tables of
    :func:`deletion_schema`. Applying a deletion is idempotent (deleting a deleted key is a no-op), so
    a deletion may be reported again by a later pull, but none is ever skipped.
    """

    def deletions(self, request: PullRequest, landing: Landing | None = None) -> Iterator[pa.Table]:
        """Yield the records of `request.dataset` deleted in the request's range, in deletion order."""
        ...


class Sandbox(Protocol):
    """A runnable stand-in for a province's system that speaks the province's real protocol."""

    province: str

    def seed(self, dataset: str, table: pa.Table) -> None:
        """Publish canonical records (the generator's output) in the province's native form."""
        ...

    def start(self) -> None:
        """Start serving (a server on 127.0.0.1 with an ephemeral port, or nothing for file/DB sandboxes)."""
        ...

    def stop(self) -> None:
        """Stop whatever start() started."""
        ...

    def env(self) -> dict[str, str]:
        """EXCHANGE_* settings that point the province's adapter at this sandbox."""
        ...

    def adapter(self) -> SourceAdapter:
        """An adapter configured to read from this sandbox."""
        ...


def adapter_for(province: str, settings: ExchangeSettings) -> SourceAdapter:
    """Build the province's adapter from settings, importing its drivers only now."""
    module = importlib.import_module(f"adapters.{known_province(province)}.adapter")
    adapter: SourceAdapter = module.build(settings)
    return adapter


def sandbox_for(province: str, root: Path) -> Sandbox:
    """Import and build the province's sandbox lazily, so importing this module loads no drivers."""
    module = importlib.import_module(f"adapters.{known_province(province)}.sandbox")
    sandbox: Sandbox = module.create(root)
    return sandbox


def connection_overrides(province: str, conn: ConnectionLike) -> dict[str, Any]:
    """ExchangeSettings values from the province's Airflow Connection (adapters/<province>/connection.py).

    KeyError for a province with no such module; importing it loads only what that province's mapping needs.
    """
    if not province.isidentifier():
        raise KeyError(f"no connection mapping for province {province!r}")
    try:
        module = importlib.import_module(f"adapters.{province}.connection")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"adapters.{province}", f"adapters.{province}.connection"):
            raise  # a dependency of the province's module is missing: not an unknown province
        raise KeyError(f"no connection mapping for province {province!r}") from None
    overrides: dict[str, Any] = module.overrides(conn)
    return overrides
