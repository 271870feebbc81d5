"""Schema drift in the declarative mapping: new native fields are reported and ignored; missing or retyped
mapped fields fail the pull naming the field, the province and the mapping file to update."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from adapters.anhui import export
from adapters.anhui.sandbox import create as anhui_sandbox
from adapters.base import Landing, PullRequest, Window
from adapters.mapping import DRIFT_MIN_VALUES, DatasetMapping, ProvinceMapping, collect_drift
from exchange.errors import SourceFormatError
from exchange.synthetic import DEFECT_COLUMN, generate

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"
START = datetime(2026, 11, 1, tzinfo=UTC)


def _mapping(province: str, dataset: str = "e_license") -> DatasetMapping:
    return ProvinceMapping.load(ADAPTERS / province / "mapping.yaml").dataset(dataset)


def _native(dm: DatasetMapping, n: int = 10, dataset: str = "e_license") -> pa.Table:
    table = generate(dataset, dm.province, n, seed=3, start=START, end=START + timedelta(hours=6), defect_rate=0.0)
    return dm.from_canonical(table.drop_columns([DEFECT_COLUMN]))


def _replace(table: pa.Table, column: str, values: Sequence[str | None]) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.string()))


def test_a_new_native_field_is_reported_once_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    dm = _mapping("jiangsu")
    native = _native(dm)
    expected = dm.to_canonical(native, "电子证照_20261101.csv")
    drifted = native.append_column("电子印章编号", pa.array(["JS-1"] * native.num_rows))

    with caplog.at_level(logging.WARNING, logger="adapters.mapping"), collect_drift() as drift:
        first = dm.to_canonical(drifted, "电子证照_20261101.csv")
        dm.to_canonical(drifted, "电子证照_20261102.csv")  # the next chunk or file: already reported

    assert first.equals(expected)
    assert [d.as_dict() for d in drift] == [{
        "province": "jiangsu", "dataset": "e_license", "field": "电子印章编号",
        "source": "电子证照_20261101.csv", "mapping_file": "adapters/jiangsu/mapping.yaml",
    }]
    assert "new native field '电子印章编号'" in caplog.text
    assert "adapters/jiangsu/mapping.yaml" in caplog.text


def test_drift_outside_a_collection_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    dm = _mapping("shanghai")
    with caplog.at_level(logging.WARNING, logger="adapters.mapping"):
        dm.report_drift(["licenseNo", "sealId"], "page 1")
    assert "sealId" in caplog.text and "licenseNo" not in caplog.text


def test_the_delete_flag_is_not_drift() -> None:
    dm = _mapping("zhejiang")
    assert dm.deleted is not None
    with collect_drift() as drift:
        dm.report_drift([*dm.native_columns, dm.deleted.native], "view V_DZZZ_GX")
    assert drift == []


def test_a_missing_native_field_names_the_field_and_the_mapping() -> None:
    dm = _mapping("jiangsu")
    native = _native(dm).drop_columns(["持证人身份证号"])
    with pytest.raises(SourceFormatError) as caught:
        dm.to_canonical(native, "电子证照_20261101.csv")
    message = str(caught.value)
    assert caught.value.source == "电子证照_20261101.csv"
    assert "missing native field(s) 持证人身份证号" in message
    assert "jiangsu e_license: update adapters/jiangsu/mapping.yaml" in message


def test_a_date_column_in_another_format_fails_the_pull() -> None:
    dm = _mapping("jiangsu")
    native = _native(dm)
    slashed = [v.replace("-", "/") for v in native.column("发证日期").to_pylist()]
    with pytest.raises(SourceFormatError, match=r"field 发证日期: none of its 10 values reads as '%Y-%m-%d'") as caught:
        dm.to_canonical(_replace(native, "发证日期", slashed), "电子证照_20261101.csv")
    assert "adapters/jiangsu/mapping.yaml" in str(caught.value)


def test_a_timestamp_column_in_another_format_fails_the_pull() -> None:
    dm = _mapping("zhejiang")
    native = _native(dm)
    iso = [v.replace(" ", "T") + "+08:00" for v in native.column("GXSJ").to_pylist()]
    with pytest.raises(SourceFormatError, match=r"field GXSJ: none of its 10 values"):
        dm.to_canonical(_replace(native, "GXSJ", iso), "V_DZZZ_GX")


def test_a_few_unreadable_dates_are_bad_records_not_drift() -> None:
    """Below DRIFT_MIN_VALUES, or with some values readable, bad dates are nulls the contract quarantines."""
    dm = _mapping("jiangsu")
    native = _native(dm, n=DRIFT_MIN_VALUES - 1)
    bad = ["2024-13-01"] * native.num_rows
    assert dm.to_canonical(_replace(native, "发证日期", bad), "f.csv").column("issued_on").null_count == len(bad)
    native = _native(dm)
    mixed = native.column("发证日期").to_pylist()
    mixed[:5] = ["2024/01/01"] * 5
    issued = dm.to_canonical(_replace(native, "发证日期", mixed), "f.csv").column("issued_on")
    assert issued.null_count == 5


def test_a_number_column_arriving_as_text_fails_the_pull() -> None:
    """Every value text: the field changed (the pull fails). One value text: a bad record, kept as sent (B-6;
    before issue 16 one such value failed the whole pull, unlike a bad date in the same place)."""
    dm = _mapping("jiangsu", "enterprise_registration")
    native = _native(dm, dataset="enterprise_registration")
    capital = native.column("注册资本").cast(pa.string()).to_pylist()
    capital[4] = "壹佰万元"
    one = dm.to_canonical(_replace(native, "注册资本", capital), "市场主体登记_20261101.csv")
    assert one.column("registered_capital").null_count == 1
    assert one.column("_as_sent").to_pylist()[4] == (
        '{"registered_capital":{"sent":"壹佰万元","problem":"not a number (double)"}}')
    capital = ["壹佰万元"] * len(capital)
    with pytest.raises(SourceFormatError) as caught:
        dm.to_canonical(_replace(native, "注册资本", capital), "市场主体登记_20261101.csv")
    assert caught.value.position == "field 注册资本"
    assert "no longer read as double" in caught.value.problem
    assert "jiangsu enterprise_registration: update adapters/jiangsu/mapping.yaml" in str(caught.value)


LAX = '<xs:any minOccurs="0" maxOccurs="unbounded" processContents="skip"/>'


def test_anhui_reports_elements_its_xsd_admits_but_the_mapping_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an XSD that admits extension elements (xs:any), a new element is drift, not an error."""
    box = anhui_sandbox(tmp_path / "anhui")
    box.seed("e_license", generate("e_license", "anhui", 20, seed=4, start=START, end=START + timedelta(hours=6)))
    path = box.exports / "电子证照_20261101.xml"
    text = path.read_text(encoding="utf-8").replace("</更新时间>", "</更新时间><电子印章编号>AH-1</电子印章编号>")
    box.publish(path, text.encode("utf-8"))
    strict = export.schema_path("e_license")
    lax = tmp_path / "e_license.xsd"
    lax.write_text(strict.read_text(encoding="utf-8").replace(
        '<xs:element name="更新时间" type="更新时间类型"/>', '<xs:element name="更新时间" type="更新时间类型"/>' + LAX
    ), encoding="utf-8")
    request = PullRequest("e_license", Window(START, START + timedelta(days=2)), None)

    with pytest.raises(SourceFormatError, match="电子印章编号"):  # the shipped XSD: a violation
        list(box.adapter().pull(request, Landing(tmp_path / "strict")))
    monkeypatch.setattr(export, "schema_path", lambda dataset: lax)
    with collect_drift() as drift:
        tables = list(box.adapter().pull(request, Landing(tmp_path / "lax")))

    assert sum(t.num_rows for t in tables) == 20
    assert [(d.field, d.mapping_file) for d in drift] == [("电子印章编号", "adapters/anhui/mapping.yaml")]
