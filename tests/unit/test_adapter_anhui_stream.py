"""Anhui (issue 20): the validating streaming parse reads every export exactly as the chunk-wise validator did.

The reference is the reader it replaced: :func:`adapters.anhui.adapter._stream` (each chunk moved into a
document of its own and validated with lxml's XMLSchema) and the per-record column fill below (the
adapter's former ``_columns``). Over hostile files (any text, markup in values, broken syntax, truncation,
unknown and XInclude elements, wrong headers and counts) both give the same tables chunk for chunk, the
same Parquet bytes (what the hub lands), the same drift, or the same refusal word for word.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.anhui import adapter, export
from adapters.mapping import DatasetMapping, ProvinceMapping, collect_drift
from exchange.errors import SourceFormatError

DAY = date(2026, 11, 1)
DM = ProvinceMapping.load(adapter.MAPPING).dataset("e_license")
SCHEMA = etree.XMLSchema(etree.parse(str(export.schema_path("e_license"))))
XSD = export.schema_path("e_license").name
NAME = export.file_name(DM.source, DAY)
FIELDS = DM.native_columns
UPDATED = FIELDS.index("更新时间")


def _reference_columns(records: Sequence[etree._Element], dm: DatasetMapping, name: str) -> pa.Table:
    """The adapter's former per-chunk column fill, kept here as the reference."""
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


def _read(path: Path, chunk_rows: int, new: bool) -> tuple[list[pa.Table] | str, list[tuple[str, str]]]:
    """The tables (or the refusal) and the drift reported, by the new or the reference reader."""
    with collect_drift() as drift:
        try:
            if new:
                tables = list(adapter._tables(path, NAME, DAY, DM, SCHEMA, chunk_rows))
            else:
                tables = [
                    _reference_columns(chunk, DM, NAME)
                    for chunk in adapter._stream(path, NAME, DAY, DM, SCHEMA, XSD, chunk_rows)
                ]
        except SourceFormatError as exc:
            return str(exc), [(d.field, d.source) for d in drift]
    return tables, [(d.field, d.source) for d in drift]


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


# Text the XML can carry, escaped as an exporter would (quotes, ampersands, newlines, CJK, astral planes);
# raw markup is mixed in below through the "raw" pieces.
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("\n\t\"'&<>"),
               max_size=12)
RAW = st.sampled_from([
    "", "<!-- c -->", "<?pi x?>", "<![CDATA[a<b&c]]>", "&amp;", "&#13;", "&#x1F600;", "&", "<", "]]>",
    "<备注>x</备注>", '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/>',
    "<记录/>", "&undeclared;", "</记录>", "\x01",
])


@st.composite
def exports(draw: st.DrawFn) -> bytes:
    records = []
    for _ in range(draw(st.integers(0, 7))):
        fields = []
        for i, field in enumerate(FIELDS):
            if i == UPDATED:
                value = draw(st.sampled_from(["2026-11-01 08:00:00", "2026-13-45 10:00:00", "2026-11-01", ""]))
            elif draw(st.booleans()):
                continue  # absent
            else:
                value = escape(draw(TEXT)) + draw(RAW) + escape(draw(TEXT))
            fields.append(f"<{field}>{value}</{field}>" if value or draw(st.booleans()) else f"<{field}/>")
        if draw(st.integers(0, 9)) == 0:
            fields.insert(draw(st.integers(0, len(fields))), draw(RAW))
        records.append("<记录>" + "".join(fields) + "</记录>" + draw(st.sampled_from(["\n", "", " ", "<!--x-->"])))
    day = draw(st.sampled_from([DAY.isoformat(), "2026-11-02", "bad"]))
    count = len(records) + draw(st.sampled_from([0, 0, 0, 1, -1]))
    root = export.root_element(DM.source)
    text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} 省份="{export.PROVINCE_NAME}" 数据日期="{day}" '
            f'记录数="{count}">\n' + "".join(records) + f"</{root}>\n")
    payload = text.encode("utf-8")
    if draw(st.integers(0, 4)) == 0:
        payload = payload[: draw(st.integers(0, len(payload)))]
    return payload


@given(payload=exports(), chunk_rows=st.integers(1, 4))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_streaming_parse_reads_every_export_as_the_chunkwise_validator(
    tmp_path: Path, payload: bytes, chunk_rows: int
) -> None:
    path = tmp_path / NAME
    path.write_bytes(payload)
    new, new_drift = _read(path, chunk_rows, new=True)
    old, old_drift = _read(path, chunk_rows, new=False)
    if isinstance(old, str) or isinstance(new, str):
        assert new == old
        return
    assert [t.num_rows for t in new] == [t.num_rows for t in old]
    assert all(n.equals(o) for n, o in zip(new, old, strict=True))
    assert [_parquet(t) for t in new] == [_parquet(t) for t in old]
    assert new_drift == old_drift


def test_a_sandbox_export_reads_alike_in_both(tmp_path: Path) -> None:
    """A real export of the sandbox (2,000 records, 3 % defective), in chunks of 300 and of 10,000."""
    from datetime import UTC, datetime, timedelta

    from adapters.anhui.sandbox import create
    from exchange.synthetic import generate

    box = create(tmp_path / "anhui")
    start = datetime(2026, 10, 31, 16, tzinfo=UTC)  # 2026-11-01 00:00 in Shanghai
    box.seed("e_license", generate("e_license", "anhui", 2000, seed=3, start=start, end=start + timedelta(hours=20)))
    path = box.exports / NAME
    for chunk_rows in (300, adapter.CHUNK_ROWS):
        new, _ = _read(path, chunk_rows, new=True)
        old, _ = _read(path, chunk_rows, new=False)
        assert not isinstance(new, str) and not isinstance(old, str)
        assert sum(t.num_rows for t in new) == 2000
        assert [_parquet(t) for t in new] == [_parquet(t) for t in old]
