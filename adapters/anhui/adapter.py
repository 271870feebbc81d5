"""Anhui's adapter: reads the province's daily XML exports, checked against the XSDs beside this file.

Each file is landed first and parsed from the landed copy, so what the hub read is exactly what it
hashed. The XSD checks structure; value problems stay in the data for the contract to quarantine.
A file is refused before parsing if it declares a DTD (:func:`export.refuse_hostile`), then streamed
with lxml's iterparse and validated chunk by chunk with lxml's XMLSchema (libxml2, the same XSD 1.0
engine the file-at-once check used), so memory is bounded by `chunk_rows`, not by the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
from lxml import etree

from adapters.anhui import export
from adapters.authenticity import SIGNATURE_SUFFIX, SourceTrust, SourceVerifier, hub_trust, parse_statement
from adapters.base import LandedFile, Landing, PullRequest, in_window
from adapters.mapping import DatasetMapping, ProvinceMapping
from exchange.config import ExchangeSettings, Layout
from exchange.errors import SourceAuthenticityError, SourceFormatError, TerminalError

MAPPING = Path(__file__).parent / "mapping.yaml"
CHUNK_ROWS = 10_000  # an lxml record tree costs ~20 KB: 10k records keep a chunk near 200 MB


class AnhuiAdapter:
    """Pulls Anhui's datasets from its export folder, one file (and `chunk_rows` records) at a time."""

    province = "anhui"

    def __init__(self, export_dir: Path, *, chunk_rows: int = CHUNK_ROWS, trust: SourceTrust | None = None) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        self.export_dir = export_dir
        self.chunk_rows = chunk_rows
        # Whose keys vouch for Anhui's export manifests: by default the trust bundle under EXCHANGE_HOME.
        self.trust = trust or hub_trust()
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
        verifier = self.trust.verifier(self.province)
        for path, day in self._files(dm, request):
            landed = landing.copy(path)
            _check_manifest(path, landed, landing, verifier)
            yield from self._read(landed.path, path.name, day, dm, schema, request)

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
        path: Path,
        name: str,
        day: date,
        dm: DatasetMapping,
        schema: etree.XMLSchema,
        request: PullRequest,
    ) -> Iterator[pa.Table]:
        xsd = export.schema_path(dm.dataset.name).name
        for records in _stream(path, name, day, dm, schema, xsd, self.chunk_rows):
            canonical = dm.to_canonical(_columns(records, dm, name), name)
            # A record whose update time does not read (2026-13-45 10:00:00 matches the XSD's pattern) is
            # placed at its file's day and quarantined with the time as sent: never dropped, never the file.
            day_start = datetime.combine(day, time(), ZoneInfo(dm.timezone))
            selected = canonical.filter(in_window(canonical.column("updated_at"), request, day_start))
            if selected.num_rows:
                yield selected


def build(settings: ExchangeSettings) -> AnhuiAdapter:
    """The adapter for EXCHANGE_ANHUI_EXPORT_DIR, or for the embedded sandbox's exports in EXCHANGE_HOME."""
    export_dir = settings.anhui_export_dir
    if export_dir is None:
        export_dir = Layout(settings.home).sandboxes / "anhui" / "exports"
    return AnhuiAdapter(export_dir, trust=hub_trust(settings.home, settings.trust_anchor))


def _check_manifest(path: Path, landed: LandedFile, landing: Landing, verifier: SourceVerifier) -> None:
    """Verify the export against its manifest (file, SHA-256, record count) and the manifest against the
    data office's detached signature; both are landed beside the export. The XML is parsed only after."""
    manifest = path.with_name(export.manifest_name(path.name))
    signature = manifest.with_name(manifest.name + SIGNATURE_SUFFIX)
    where = f"export {path.name} (manifest {manifest.name})"
    if not manifest.is_file() or not signature.is_file():
        missing = manifest.name if not manifest.is_file() else signature.name
        raise SourceAuthenticityError(
            "anhui", where, f"unsigned: {missing} is missing",
            "Anhui writes the signed manifest right after each export: if an export is running, retry later; "
            "otherwise ask anhui.data_office to re-export the day",
        )
    manifest_bytes = landing.copy(manifest).path.read_bytes()
    signed = parse_statement(landing.copy(signature).path.read_bytes(), "anhui", signature.name)
    landing.signatures.append(
        verifier.verify(signed, manifest.name, hashlib.sha256(manifest_bytes).hexdigest(), where)
    )
    try:
        doc = json.loads(manifest_bytes)
        listed, digest = str(doc["file"]), str(doc["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceFormatError(manifest.name, "manifest", f"not an export manifest: {exc!r}",
                                'expected {"file": ..., "sha256": ..., "records": ...}') from None
    if listed != path.name or digest != landed.sha256:
        raise SourceAuthenticityError(
            "anhui", where, f"the export (SHA-256 {landed.sha256}) is not the one its signed manifest lists "
            f"({listed}, SHA-256 {digest})",
            "the export was changed or replaced after it was signed; ask Anhui to re-deliver it",
        )


def _stream(
    path: Path, name: str, day: date, dm: DatasetMapping, schema: etree.XMLSchema, xsd: str, chunk_rows: int
) -> Iterator[list[etree._Element]]:
    """Stream one export's records in XSD-valid chunks of at most `chunk_rows`, in constant memory.

    lxml's iterparse builds only the records of the current chunk. Each chunk is validated (C speed, with
    the records' source lines) as a document of its own: the root's tag and attributes, the chunk's
    records and anything else found between them. The declared record count is checked at the end, so a
    short file fails the pull after its earlier chunks were read: nothing of it is committed.
    """
    export.refuse_hostile(path, name)
    etree.clear_error_log()  # so a syntax error's log holds this file's errors only (see syntax_error_at)
    root: etree._Element | None = None
    count = 0
    with path.open("rb") as source:
        events = etree.iterparse(
            source, events=("end",), tag=export.RECORD, remove_comments=True, remove_pis=True,
            **export.PARSER_OPTIONS,
        )
        try:
            pending = 0
            for _, record in events:
                if root is None:
                    root = record.getroottree().getroot()
                    _check_root(root, name, day, dm)
                if record.getparent() is root:  # a nested record is left for its enclosing record's check
                    pending += 1
                if pending == chunk_rows:
                    records = _validated_chunk(root, record, schema, name, xsd)
                    count += len(records)
                    pending = 0
                    yield records
            root = events.root
            if root is None:
                raise SourceFormatError(name, "line 1", "no root element", "the file is empty; re-export it")
            if count == 0 and pending == 0:
                _check_root(root, name, day, dm)
            records = _validated_chunk(root, None, schema, name, xsd)
            count += len(records)
        except etree.XMLSyntaxError as exc:
            line, column, message = syntax_error_at(exc)
            raise SourceFormatError(
                name, f"line {line} column {column}", message, "the file is not well-formed XML; re-export it"
            ) from None
    declared = int(root.get(export.COUNT_ATTR, "-1"))
    if declared != count:
        raise SourceFormatError(
            name,
            f"line {root.sourceline}",
            f"{export.COUNT_ATTR}={declared} but the file holds {count} records",
            "the export is incomplete; re-export the file",
        )
    if records:
        yield records


def syntax_error_at(exc: etree.XMLSyntaxError) -> tuple[int, int, str]:
    """Line, column and message of the parse error that stopped lxml.

    The exception's own position can be a follow-on error's (an undeclared entity ends iterparse with
    "no element found" at line 0 column 0); the first fatal error in its log is where the file went wrong.
    """
    # The log can still hold an earlier parse's errors on this thread (_stream clears it first); the last
    # fatal error with a place is this parse's.
    for entry in reversed(list(exc.error_log)):
        if entry.level == etree.ErrorLevels.FATAL and entry.line > 0:
            return entry.line, entry.column, str(entry.message)
    line, column = exc.position
    return line, column, str(exc.msg)


def _validated_chunk(
    root: etree._Element, last: etree._Element | None, schema: etree.XMLSchema, name: str, xsd: str
) -> list[etree._Element]:
    """Move `root`'s children up to `last` (None: all) into a stand-alone copy of the root and validate it.

    The parser reads ahead, so children after `last` may still be incomplete. Moving the records out is
    also what keeps memory constant: the parser's tree never holds more than about one chunk. An XInclude
    element is refused, not just reported as an XSD violation.
    """
    chunk = etree.Element(root.tag, dict(root.attrib))
    chunk.text, root.text = root.text, None  # stray text before the first record (the XSD forbids it)
    for child in list(root):
        chunk.append(child)  # its tail moves with it
        if child is last:
            break
    export.refuse_xinclude(chunk, name)
    if not schema.validate(chunk):
        error = schema.error_log[0]
        raise SourceFormatError(
            name,
            f"line {error.line or root.sourceline}",
            str(error.message),
            f"the file does not conform to {xsd}",
        )
    return list(chunk)


def _check_root(root: etree._Element, name: str, day: date, dm: DatasetMapping) -> None:
    # Behind refuse_hostile: lxml must not have seen a DTD either (it would not expand it).
    info = root.getroottree().docinfo
    if info.internalDTD is not None or info.doctype:
        raise SourceFormatError(name, "line 1", f"refused: the file declares a DTD {info.doctype}")
    _check_header(root, name, day, dm)


def _check_header(root: etree._Element, name: str, day: date, dm: DatasetMapping) -> None:
    stated = root.get(export.DAY_ATTR)
    if stated != day.isoformat():
        raise SourceFormatError(
            name,
            f"line {root.sourceline}",
            f"{export.DAY_ATTR}={stated} but the file name says {day}",
            f"{dm.source} exports are named by the day they cover",
        )


def _columns(records: Sequence[etree._Element], dm: DatasetMapping, name: str) -> pa.Table:
    """One string column per native field; an absent or empty element is a null.

    Filled by position rather than by per-field XPath, which would misalign rows when an element is
    absent. The XSD has already guaranteed every child is one of the mapped fields, at most once per
    record, unless it admits other elements: those are reported as schema drift and ignored.
    """
    names = dm.native_columns
    position = {n: i for i, n in enumerate(names)}
    columns: list[list[str | None]] = [[None] * len(records) for _ in names]
    unknown: set[str] = set()
    for row, record in enumerate(records):
        for child in record:
            column = position.get(child.tag)
            if column is not None:
                columns[column][row] = child.text
            elif isinstance(child.tag, str):
                unknown.add(child.tag)
    if unknown:
        dm.report_drift(sorted(unknown), name)
    return pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
