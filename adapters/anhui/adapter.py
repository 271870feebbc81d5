"""Anhui's adapter: reads the province's daily XML exports, checked against the XSDs beside this file.

Each file is landed first and parsed from the landed copy, so what the hub read is exactly what it
hashed. The XSD checks structure; value problems stay in the data for the contract to quarantine.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from adapters.anhui import export
from adapters.base import Landing, PullRequest
from adapters.mapping import DatasetMapping, ProvinceMapping
from exchange.config import ExchangeSettings, Layout
from exchange.datasets import TIMESTAMP
from exchange.errors import SourceFormatError, TerminalError

MAPPING = Path(__file__).parent / "mapping.yaml"
CHUNK_ROWS = 50_000


class AnhuiAdapter:
    """Pulls Anhui's datasets from its export folder, one file (and `chunk_rows` records) at a time."""

    province = "anhui"

    def __init__(self, export_dir: Path, *, chunk_rows: int = CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        self.export_dir = export_dir
        self.chunk_rows = chunk_rows
        self.mapping = ProvinceMapping.load(MAPPING)
        self._schemas: dict[str, etree.XMLSchema] = {}

    def datasets(self) -> Sequence[str]:
        """The datasets Anhui exports."""
        return tuple(self.mapping.datasets)

    def pull(self, request: PullRequest, landing: Landing) -> Iterator[pa.Table]:
        """Yield canonical tables of the records updated in (since, window.end), in file and record order.

        Only the daily files that can hold such records are read (and landed). Nothing is yielded when
        no record changed.
        """
        dm = self.mapping.dataset(request.dataset)
        schema = self._schema(request.dataset)
        for path, day in self._files(dm, request):
            landed = landing.copy(path)
            yield from self._read(landed.path.read_bytes(), path.name, day, dm, schema, request)

    def _schema(self, dataset: str) -> etree.XMLSchema:
        if dataset not in self._schemas:
            self._schemas[dataset] = etree.XMLSchema(etree.parse(str(export.schema_path(dataset))))
        return self._schemas[dataset]

    def _files(self, dm: DatasetMapping, request: PullRequest) -> list[tuple[Path, date]]:
        """The dataset's export files, in name (= day) order, whose day overlaps the request."""
        if not self.export_dir.is_dir():
            raise TerminalError(f"Anhui's export folder {self.export_dir} does not exist")
        tz = ZoneInfo(dm.timezone)
        chosen: list[tuple[Path, date]] = []
        # "*.xml" leaves out "<name>.tmp" files that the exporter has not finished yet.
        for path in sorted(self.export_dir.glob(f"{dm.source}_*.xml")):
            if not path.is_file():
                continue
            try:
                day = export.file_day(dm.source, path)
            except ValueError as exc:
                # Loud rather than skipped: an odd name may be a re-delivery someone expects us to read.
                raise SourceFormatError(
                    path.name, "file name", str(exc), "rename or remove the file"
                ) from None
            first = datetime.combine(day, time(), tz)
            after = datetime.combine(day + timedelta(days=1), time(), tz)
            if (request.since is not None and after <= request.since) or first >= request.window.end:
                continue
            chosen.append((path, day))
        return chosen

    def _read(
        self,
        payload: bytes,
        name: str,
        day: date,
        dm: DatasetMapping,
        schema: etree.XMLSchema,
        request: PullRequest,
    ) -> Iterator[pa.Table]:
        root = _parse(payload, name, schema, export.schema_path(dm.dataset.name).name)
        _check_header(root, name, day, dm)
        records = list(root.iterchildren(export.RECORD))
        declared = int(root.get(export.COUNT_ATTR))
        if declared != len(records):
            raise SourceFormatError(
                name,
                f"line {root.sourceline}",
                f"{export.COUNT_ATTR}={declared} but the file holds {len(records)} records",
                "the export is incomplete; re-export the file",
            )
        for start in range(0, len(records), self.chunk_rows):
            part = records[start : start + self.chunk_rows]
            native = _columns(part, dm.native_columns)
            canonical = dm.to_canonical(native, name)
            _check_times(canonical, native, part, name, dm)
            selected = canonical.filter(_in_window(canonical.column("updated_at"), request))
            if selected.num_rows:
                yield selected


def build(settings: ExchangeSettings) -> AnhuiAdapter:
    """The adapter for EXCHANGE_ANHUI_EXPORT_DIR, or for the embedded sandbox's exports in EXCHANGE_HOME."""
    export_dir = settings.anhui_export_dir
    if export_dir is None:
        export_dir = Layout(settings.home).sandboxes / "anhui" / "exports"
    return AnhuiAdapter(export_dir)


def _parse(payload: bytes, name: str, schema: etree.XMLSchema, xsd: str) -> etree._Element:
    """Parse and validate one export; a broken or non-conforming file names its line."""
    try:
        tree = etree.parse(io.BytesIO(payload), export.parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise SourceFormatError(
            name,
            f"line {line} column {column}",
            str(exc.msg),
            "the file is not well-formed XML; re-export it",
        ) from None
    if not schema.validate(tree):
        error = schema.error_log[0]
        raise SourceFormatError(
            name,
            f"line {error.line}",
            str(error.message),
            f"the file does not conform to {xsd}",
        )
    root: etree._Element = tree.getroot()
    return root


def _check_header(root: etree._Element, name: str, day: date, dm: DatasetMapping) -> None:
    stated = root.get(export.DAY_ATTR)
    if stated != day.isoformat():
        raise SourceFormatError(
            name,
            f"line {root.sourceline}",
            f"{export.DAY_ATTR}={stated} but the file name says {day}",
            f"{dm.source} exports are named by the day they cover",
        )


def _columns(records: Sequence[etree._Element], names: Sequence[str]) -> pa.Table:
    """One string column per native field; an absent or empty element is a null.

    Filled by position rather than by per-field XPath, which would misalign rows when an element is
    absent. The XSD has already guaranteed every child is one of `names`, at most once per record.
    """
    position = {n: i for i, n in enumerate(names)}
    columns: list[list[str | None]] = [[None] * len(records) for _ in names]
    for row, record in enumerate(records):
        # Plain iteration is much faster than iterchildren(tag=...); comments (callable tags) fall out.
        for child in record:
            column = position.get(child.tag)
            if column is not None:
                columns[column][row] = child.text
    return pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})


def _check_times(
    canonical: pa.Table, native: pa.Table, records: Sequence[etree._Element], name: str, dm: DatasetMapping
) -> None:
    """A record whose update time cannot be read fits no window: fail loudly rather than drop it."""
    unreadable = pc.is_null(canonical.column("updated_at"))
    if pc.any(unreadable).as_py():
        row = pc.index(unreadable, True).as_py()
        field = dm.native_name("updated_at")
        value = native.column(field)[row].as_py()
        raise SourceFormatError(
            name,
            f"line {records[row].sourceline}",
            f"{field} {value!r} is not a valid time",
            "every record needs a readable update time",
        )


def _in_window(updated: pa.ChunkedArray, request: PullRequest) -> pa.ChunkedArray:
    mask = pc.less(updated, pa.scalar(request.window.end, TIMESTAMP))
    if request.since is not None:
        mask = pc.and_(mask, pc.greater(updated, pa.scalar(request.since, TIMESTAMP)))
    return mask
