"""A stand-in for Anhui's exporter: writes daily XML exports that conform to the adapter's XSDs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from adapters.anhui import export
from adapters.anhui.adapter import MAPPING, AnhuiAdapter
from adapters.authenticity import SIGNATURE_SUFFIX, SourceTrust, office, sandbox_keyring, sign
from adapters.mapping import DatasetMapping, ProvinceMapping
from exchange.signing.keys import Keyring
from exchange.synthetic import DEFECT_COLUMN

Record = dict[str, str | None]


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
        texts = {name: _texts(native.column(name)) for name in dm.native_columns}
        local = updated.cast(pa.timestamp("s", tz=dm.timezone))
        rows_by_day: dict[str, list[int]] = {}
        for row, day in enumerate(pc.strftime(local, format="%Y%m%d").to_pylist()):
            rows_by_day.setdefault(day, []).append(row)
        self.exports.mkdir(parents=True, exist_ok=True)
        for key, rows in sorted(rows_by_day.items()):
            day = datetime.strptime(key, "%Y%m%d").date()
            path = self.exports / export.file_name(dm.source, day)
            records = _read(path) if path.exists() else []
            records.extend({name: texts[name][row] for name in dm.native_columns} for row in rows)
            path.with_name(export.manifest_name(path.name)).unlink(missing_ok=True)
            _write(path, dm, day, records)
            self.publish(path, path.read_bytes(), len(records))

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


def _texts(column: pa.ChunkedArray) -> list[str | None]:
    """Element texts; floats use Python's shortest round-trip form so the hub reads back the same value."""
    if pa.types.is_floating(column.type):
        return [None if v is None else repr(v) for v in column.to_pylist()]
    return list(column.cast(pa.string()).to_pylist())


def _read(path: Path) -> list[Record]:
    root = etree.parse(str(path), export.parser()).getroot()
    return [
        {child.tag: child.text for child in record.iterchildren(tag=etree.Element)}
        for record in root.iterchildren(export.RECORD)
    ]


def _write(path: Path, dm: DatasetMapping, day: date, records: Sequence[Record]) -> None:
    """Write the day's export as ``<name>.tmp`` and rename it, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    header = {
        export.PROVINCE_ATTR: export.PROVINCE_NAME,
        export.DAY_ATTR: day.isoformat(),
        export.COUNT_ATTR: str(len(records)),
    }
    try:
        with tmp.open("wb") as out:
            with etree.xmlfile(out, encoding="UTF-8") as xf:
                xf.write_declaration()
                with xf.element(export.root_element(dm.source), header):
                    for record in records:
                        element = etree.Element(export.RECORD)
                        for name in dm.native_columns:
                            # A null is an empty element; the XSD also accepts it absent.
                            etree.SubElement(element, name).text = record.get(name)
                        etree.indent(element, space="  ", level=1)
                        xf.write("\n  ", element)
                    xf.write("\n")
            out.write(b"\n")
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def _atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
