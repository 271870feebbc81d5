"""The sandboxes render native payloads column-wise (for fast seeding); what they write must stay exactly
what the per-record writers produced: lxml's serialisation for Anhui, json.dumps for Shanghai, the same
stored rows for Zhejiang."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from lxml import etree

from adapters.anhui import export
from adapters.anhui import sandbox as anhui
from adapters.anhui.adapter import MAPPING as ANHUI_MAPPING
from adapters.mapping import ProvinceMapping
from adapters.shanghai.sandbox import _json_objects
from adapters.zhejiang import sandbox as zhejiang
from adapters.zhejiang.adapter import MAPPING as ZHEJIANG_MAPPING
from exchange.synthetic import DEFECT_COLUMN, generate

CST = timezone(timedelta(hours=8))
AWKWARD = ["a&b<c>d\"e'f", "x\r\ny\tz", "  ", "", "\u2028é𝄞", "]]>", None, "\\u0041"]


def _lxml_export(source: str, day: date, names: list[str], records: list[dict[str, str | None]]) -> bytes:
    """Anhui's export as the sandbox wrote it before: lxml's xmlfile, one indented element per record."""
    out = io.BytesIO()
    header = {export.PROVINCE_ATTR: export.PROVINCE_NAME, export.DAY_ATTR: day.isoformat(),
              export.COUNT_ATTR: str(len(records))}
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(export.root_element(source), header):
            for record in records:
                element = etree.Element(export.RECORD)
                for name in names:
                    etree.SubElement(element, name).text = record.get(name)
                etree.indent(element, space="  ", level=1)
                xf.write("\n  ", element)
            xf.write("\n")
    return out.getvalue() + b"\n"


def test_anhui_export_is_byte_for_byte_lxml() -> None:
    dm = ProvinceMapping.load(ANHUI_MAPPING).dataset("e_license")
    names = dm.native_columns
    table = generate("e_license", "anhui", 300, seed=5, start=datetime(2026, 11, 1, tzinfo=CST),
                     end=datetime(2026, 11, 2, tzinfo=CST)).drop_columns([DEFECT_COLUMN])
    texts = pa.table({n: anhui._texts(dm.from_canonical(table).column(n)) for n in names})
    awkward = texts.column(names[2]).to_pylist()
    awkward[: len(AWKWARD)] = AWKWARD
    texts = texts.set_column(2, names[2], pa.array(awkward, pa.string()))
    day = date(2026, 11, 1)

    rendered = anhui._render(dm, day, texts)

    assert rendered == _lxml_export(dm.source, day, names, texts.to_pylist())
    etree.XMLSchema(etree.parse(str(export.schema_path("e_license")))).assertValid(etree.fromstring(rendered))


def test_anhui_refuses_text_lxml_refuses() -> None:
    dm = ProvinceMapping.load(ANHUI_MAPPING).dataset("e_license")
    texts = pa.table({n: pa.array(["ok\x01"], pa.string()) for n in dm.native_columns})
    with pytest.raises(ValueError, match="XML compatible"):
        anhui._render(dm, date(2026, 11, 1), texts)


def test_shanghai_records_are_json_dumps() -> None:
    table = pa.table({
        "s": pa.array(AWKWARD + ["\x00\x01\x1f\x7f", "\b\f\n\r\t"]),
        "f": pa.array([1.5, None, float("nan"), float("inf"), -0.0, 1e-7, 123456789.123, 2.0, 3.0, 4.0]),
        'key"quoted': pa.array(["x"] * 10),
    })
    assert _json_objects(table).to_pylist() == [json.dumps(row, ensure_ascii=False) for row in table.to_pylist()]


def test_zhejiang_bulk_insert_stores_what_sqlalchemy_stored(tmp_path: Path) -> None:
    dm = ProvinceMapping.load(ZHEJIANG_MAPPING).dataset("enterprise_registration")  # text and a Double column
    table = generate("enterprise_registration", "zhejiang", 500, seed=9, start=datetime(2026, 11, 1, tzinfo=CST),
                     end=datetime(2026, 11, 2, tzinfo=CST)).drop_columns([DEFECT_COLUMN])
    native = dm.from_canonical(table)
    stored = []
    for name in ("bulk", "orm"):
        engine = sa.create_engine(f"sqlite:///{tmp_path / name}.sqlite")
        target = zhejiang._base_table(sa.MetaData(), "T", dm)
        with engine.begin() as conn:
            target.create(conn)
            if name == "bulk":
                zhejiang._bulk_insert(conn, target, native)
            else:
                conn.execute(target.insert(), native.to_pylist())
            stored.append(repr(conn.exec_driver_sql("SELECT * FROM T ORDER BY rowid").fetchall()))
        engine.dispose()
    assert stored[0] == stored[1]
