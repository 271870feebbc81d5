"""A stand-in for Anhui's exporter: writes daily XML exports that conform to the adapter's XSDs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from adapters.anhui import export
from adapters.anhui.adapter import MAPPING, AnhuiAdapter
from adapters.authenticity import SIGNATURE_SUFFIX, SourceTrust, office, sandbox_keyring, sign
from adapters.mapping import DatasetMapping, ProvinceMapping
from exchange.signing.keyring import Keyring
from exchange.synthetic import DEFECT_COLUMN

Record = dict[str, str | None]
_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>"
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;"))
# What lxml refuses in text: C0 controls other than tab, LF and CR, and the non-characters U+FFFE/U+FFFF.
_NOT_XML = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{fffe}\x{ffff}]"
_RENDER_ROWS = 50_000


class AnhuiSandbox:
    """Anhui's export folder ``<root>/exports``; seeding adds records to the day files they belong in."""

    province = "anhui"

    def __init__(self, root: Path, keyring: Keyring | None = None) -> None:
        self.root = root
        self.exports = root / "exports"
        self.mapping = ProvinceMapping.load(MAPPING)
        # Anhui's data office signs each export's manifest; its public key is in this keyring's trust bundle.
        self.keyring = keyring or sandbox_keyring(root)

    @property
    def trust(self) -> SourceTrust:
        """The trust bundle that holds this sandbox's signing key (what a hub reading it must trust)."""
        return SourceTrust(self.keyring.dir)

    def publish(self, path: Path, payload: bytes, records: int | None = None) -> None:
        """(Re)deliver one export as Anhui does: withdraw its manifest, write the file, then the signed manifest.

        `records` is the manifest's record count (default: the `<记录>` elements in `payload`).
        """
        if records is None:
            records = payload.count(f"<{export.RECORD}>".encode())
        manifest = path.with_name(export.manifest_name(path.name))
        signature = manifest.with_name(manifest.name + SIGNATURE_SUFFIX)
        manifest.unlink(missing_ok=True)
        _atomic(path, payload)
        rendered = export.render_manifest(path.name, payload, records)
        _atomic(signature, sign(self.keyring.signer(office(self.province)), self.province, manifest.name,
                                rendered).to_bytes())
        _atomic(manifest, rendered)

    def seed(self, dataset: str, table: pa.Table) -> None:
        """Export canonical records in native form, one file per local day of update.

        A day that already has a file is rewritten with its old records followed by the new ones.
        """
        dm = self.mapping.dataset(dataset)
        if DEFECT_COLUMN in table.column_names:
            table = table.drop_columns([DEFECT_COLUMN])
        updated = table.column("updated_at")
        if updated.null_count:
            raise ValueError("every seeded record needs updated_at: it decides the export file")
        native = dm.from_canonical(table)
        texts = pa.table({name: _texts(native.column(name)) for name in dm.native_columns})
        days = pc.strftime(updated.cast(pa.timestamp("s", tz=dm.timezone)), format="%Y%m%d")
        self.exports.mkdir(parents=True, exist_ok=True)
        for key in sorted(pc.unique(days).to_pylist()):
            day = datetime.strptime(key, "%Y%m%d").date()
            path = self.exports / export.file_name(dm.source, day)
            rows = texts.filter(pc.equal(days, key))  # keeps the records' order within the day
            if path.exists():
                rows = pa.concat_tables([_columns(_read(path), dm.native_columns), rows])
            path.with_name(export.manifest_name(path.name)).unlink(missing_ok=True)
            self.publish(path, _render(dm, day, rows), rows.num_rows)

    def start(self) -> None:
        """Nothing to serve: the adapter reads the export folder directly."""
        self.exports.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        """Nothing was started."""

    def env(self) -> dict[str, str]:
        """Point the hub's Anhui adapter at this export folder."""
        return {"EXCHANGE_ANHUI_EXPORT_DIR": str(self.exports)}

    def adapter(self) -> AnhuiAdapter:
        """An adapter reading this sandbox's exports."""
        return AnhuiAdapter(self.exports, trust=self.trust)


def create(root: Path, keyring: Keyring | None = None) -> AnhuiSandbox:
    """An Anhui sandbox under `root`, with an empty export folder, signing with the office key in `keyring`
    (default: see :func:`adapters.authenticity.sandbox_keyring`)."""
    sandbox = AnhuiSandbox(root, keyring)
    sandbox.start()
    return sandbox


def _texts(column: pa.ChunkedArray) -> pa.Array:
    """Element texts; floats use Python's shortest round-trip form so the hub reads back the same value."""
    if pa.types.is_floating(column.type):
        return pa.array([None if v is None else repr(v) for v in column.to_pylist()], pa.string())
    return column.cast(pa.string()).combine_chunks()


def _read(path: Path) -> list[Record]:
    root = etree.parse(str(path), export.parser()).getroot()
    return [
        {child.tag: child.text for child in record.iterchildren(tag=etree.Element)}
        for record in root.iterchildren(export.RECORD)
    ]


def _columns(records: Sequence[Record], names: Sequence[str]) -> pa.Table:
    """A day file's records (as :func:`_read` returns them) as string columns; absent elements are null."""
    return pa.table({name: pa.array([r.get(name) for r in records], pa.string()) for name in names})


def _render(dm: DatasetMapping, day: date, rows: pa.Table) -> bytes:
    """The day's export, byte for byte what lxml's xmlfile wrote for it with ``etree.indent(space="  ")``:
    single-quoted declaration, one record per ``\n  <记录>``, one field per ``\n    <名>text</名>`` (a null is
    ``<名/>``), text escaped as libxml2 does (& < > and CR). Built column-wise with Arrow string kernels
    and joined in chunks: an lxml element per field cost ~1.3 s per 100k records.
    """
    header = (
        f'{_DECLARATION}\n<{export.root_element(dm.source)} {export.PROVINCE_ATTR}="{export.PROVINCE_NAME}" '
        f'{export.DAY_ATTR}="{day.isoformat()}" {export.COUNT_ATTR}="{rows.num_rows}">'
    )
    parts = [header.encode()]
    for batch in rows.to_batches(max_chunksize=_RENDER_ROWS):
        fields = [_field(name, batch.column(name)) for name in dm.native_columns]
        records = pc.binary_join_element_wise(f"\n  <{export.RECORD}>", *fields, f"\n  </{export.RECORD}>", "")
        parts.append(_joined(records))
    parts.append(f"\n</{export.root_element(dm.source)}>\n".encode())
    return b"".join(parts)


def _field(name: str, texts: pa.Array) -> pa.Array:
    """``\n    <name>escaped</name>`` per record, ``\n    <name/>`` for a null."""
    if pc.any(pc.match_substring_regex(texts, _NOT_XML)).as_py():
        # lxml refuses such text when the element is built; a file must not silently carry it either.
        raise ValueError(f"{name}: All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control "
                         "characters")
    if pc.any(pc.match_substring_regex(texts, "[&<>\r]")).as_py():  # rare: skip four copies of the column
        for char, entity in _ESCAPES:  # & first, so the entities' own & are not escaped again
            texts = pc.replace_substring(texts, char, entity)
    element = pc.binary_join_element_wise(f"\n    <{name}>", texts, f"</{name}>", "")
    return pc.fill_null(element, f"\n    <{name}/>")


def _joined(strings: pa.Array) -> bytes:
    """The UTF-8 bytes of every string of `strings` (no nulls) back to back, straight from Arrow's buffer."""
    array = strings.cast(pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    return b"" if data is None else data[int(offsets[0]) : int(offsets[-1])].to_pybytes()


def _atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
