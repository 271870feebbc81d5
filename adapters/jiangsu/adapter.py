"""Jiangsu's adapter: reads the daily GB18030 CSV drops `<source>_<YYYYMMDD>.csv` from a folder."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from adapters.base import Landing, PullRequest
from adapters.jiangsu import native
from adapters.mapping import DatasetMapping, ProvinceMapping
from exchange.config import ExchangeSettings, Layout
from exchange.datasets import TIMESTAMP
from exchange.errors import SourceFormatError, TerminalError

MAPPING_FILE = Path(__file__).parent / "mapping.yaml"
DROP_DIR_SETTING = "EXCHANGE_JIANGSU_DROP_DIR"


class JiangsuAdapter:
    """Pulls Jiangsu's file drops; one file per dataset per local day, read in name (= date) order."""

    province = "jiangsu"

    def __init__(self, drop_dir: Path, mapping: ProvinceMapping | None = None) -> None:
        self.drop_dir = drop_dir
        self.mapping = mapping or ProvinceMapping.load(MAPPING_FILE)

    def datasets(self) -> Sequence[str]:
        """The canonical datasets Jiangsu drops files for."""
        return list(self.mapping.datasets)

    def pull(self, request: PullRequest, landing: Landing) -> Iterator[pa.Table]:
        """Yield canonical tables of the drops' records with since < updated_at < window.end.

        Each file is landed byte for byte before it is parsed; chunks are the CSV reader's blocks.
        """
        if request.since is not None and request.since.tzinfo is None:
            # A naive `since` would be read in some arbitrary zone and shift the window.
            raise ValueError(f"since must be timezone-aware, got {request.since.isoformat()}")
        mapping = self.mapping.dataset(request.dataset)
        tz = ZoneInfo(mapping.timezone)
        for path, day in self.files(mapping, request.since, request.window.end):
            # Read once and land those very bytes, so the landed hash is of exactly what was parsed
            # even if the province replaces the file meanwhile.
            payload = path.read_bytes()
            landing.write(path.name, payload)
            source = str(path)
            day_start = datetime.combine(day, time(), tz)
            for batch in native.read_batches(native.decode(payload, source), source):
                canonical = mapping.to_canonical(pa.Table.from_batches([batch]), source)
                selected = canonical.filter(_in_window(canonical, request, day_start))
                if selected.num_rows:
                    yield selected

    def files(
        self, mapping: DatasetMapping, since: datetime | None, end: datetime
    ) -> list[tuple[Path, date]]:
        """The dataset's drops that can hold records of (since, end), in name order, with their day.

        `*.tmp` files are still being written and never match. A file named like the dataset's drops
        but without a valid date is an error rather than silently skipped: it may hold records.
        """
        if not self.drop_dir.is_dir():
            raise TerminalError(
                f"Jiangsu drop folder {self.drop_dir} does not exist; set {DROP_DIR_SETTING} to the folder "
                "Jiangsu delivers its CSV files to"
            )
        tz = ZoneInfo(mapping.timezone)
        first = since.astimezone(tz).date() if since is not None else date.min
        last = end.astimezone(tz).date()
        pattern = re.compile(re.escape(mapping.source) + r"_(\d{8})\.csv")
        selected: list[tuple[Path, date]] = []
        for path in sorted(self.drop_dir.glob(f"{mapping.source}_*.csv")):
            match = pattern.fullmatch(path.name)
            try:
                day = datetime.strptime(match.group(1), "%Y%m%d").date() if match else None
            except ValueError:
                day = None
            if day is None:
                raise SourceFormatError(
                    str(path), "file name", "not a valid drop name",
                    f"expected {mapping.source}_YYYYMMDD.csv (the local date of the records' update time)",
                )
            if first <= day <= last:
                selected.append((path, day))
        return selected


def _in_window(table: pa.Table, request: PullRequest, day_start: datetime) -> pa.ChunkedArray:
    """since < updated_at < end, vectorized.

    A record whose update time cannot be read (null) still has to reach the contract, which
    quarantines it; it is taken as updated at its file's local midnight so exactly one of a series of
    contiguous windows carries it.
    """
    updated = table.column("updated_at")
    stand_in = pa.scalar(day_start, TIMESTAMP)
    effective = pc.fill_null(updated, stand_in)
    keep = pc.less(effective, pa.scalar(request.window.end, TIMESTAMP))
    if request.since is not None:
        keep = pc.and_(keep, pc.greater(effective, pa.scalar(request.since, TIMESTAMP)))
    return keep


def build(settings: ExchangeSettings) -> JiangsuAdapter:
    """Jiangsu's adapter reading EXCHANGE_JIANGSU_DROP_DIR (default: the embedded sandbox's drop folder)."""
    drop = settings.jiangsu_drop_dir
    if drop is None:
        sandboxes = settings.sandbox_dir or Layout(settings.home).sandboxes
        drop = sandboxes / "jiangsu" / "drop"
    return JiangsuAdapter(drop)
