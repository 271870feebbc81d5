"""Anhui: the sandbox's daily XML exports read back through the adapter (real files, no mocks)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from lxml import etree

from adapters.anhui import export
from adapters.anhui.adapter import AnhuiAdapter, build
from adapters.anhui.sandbox import AnhuiSandbox, create
from adapters.base import Landing, PullRequest, Window, adapter_for, sandbox_for
from exchange import intake
from exchange.config import ExchangeSettings
from exchange.datasets import DATASETS as CANONICAL_DATASETS
from exchange.datasets import dataset
from exchange.errors import SourceFormatError
from exchange.synthetic import DEFECT_COLUMN, generate

START = datetime(2024, 5, 1, tzinfo=UTC)
END = START + timedelta(days=3)
LATER = START + timedelta(days=10)
N = 2000
DATASETS = tuple(CANONICAL_DATASETS)  # every province provides every dataset
# 2024-05-01T00:00Z .. 2024-05-04T00:00Z is 08:00 on the 1st to 08:00 on the 4th in Shanghai.
DAYS = ("20240501", "20240502", "20240503", "20240504")


def _generate(
    name: str, n: int = N, seed: int = 21, start: datetime = START, end: datetime = END
) -> pa.Table:
    return generate(name, "anhui", n, seed=seed, start=start, end=end)


def _canonical(table: pa.Table) -> pa.Table:
    return table.drop_columns([DEFECT_COLUMN])


def _pull(
    adapter: AnhuiAdapter, name: str, landing: Path, since: datetime | None = None, end: datetime = LATER
) -> tuple[pa.Table, Landing]:
    land = Landing(landing)
    tables = list(adapter.pull(PullRequest(name, Window(START - timedelta(days=1), end), since), land))
    return (pa.concat_tables(tables, promote_options="default") if tables else dataset(name).schema.empty_table()), land


def _file(box: AnhuiSandbox, name: str, day: str) -> Path:
    return box.exports / f"{box.mapping.dataset(name).source}_{day}.xml"


@pytest.fixture
def sandbox(tmp_path: Path) -> AnhuiSandbox:
    box = create(tmp_path / "anhui")
    for name in DATASETS:
        box.seed(name, _generate(name))
    return box


@pytest.mark.parametrize("name", DATASETS)
def test_pull_returns_every_seeded_record_in_source_order(
    sandbox: AnhuiSandbox, tmp_path: Path, name: str
) -> None:
    generated = _generate(name)
    assert pc.count(generated.column(DEFECT_COLUMN)).as_py() > 0  # the defects must reach the contract

    pulled, _ = _pull(sandbox.adapter(), name, tmp_path / "landing")

    assert pulled.schema == dataset(name).schema
    assert pulled.num_rows == N
    # Files in day order, records in file order: exactly the generator's (time-sorted) order.
    assert pulled.equals(_canonical(generated))


@pytest.mark.parametrize("name", DATASETS)
def test_exports_follow_the_convention_and_conform_to_the_xsd(sandbox: AnhuiSandbox, name: str) -> None:
    source = sandbox.mapping.dataset(name).source
    files = sorted(sandbox.exports.glob(f"{source}_*.xml"))
    assert [f.name for f in files] == [f"{source}_{day}.xml" for day in DAYS]
    schema = etree.XMLSchema(etree.parse(str(export.schema_path(name))))
    total = 0
    for path in files:
        payload = path.read_bytes()
        assert payload.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
        tree = etree.parse(str(path))
        schema.assertValid(tree)
        root = tree.getroot()
        assert root.tag == f"{source}数据"
        assert root.get("省份") == "安徽省"
        assert root.get("数据日期") == datetime.strptime(path.stem[-8:], "%Y%m%d").date().isoformat()
        total += int(root.get("记录数"))
    assert total == N


@pytest.mark.parametrize("name", DATASETS)
def test_the_xsd_declares_the_mapped_fields_in_order(sandbox: AnhuiSandbox, name: str) -> None:
    xsd = etree.parse(str(export.schema_path(name)))
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    fields = xsd.xpath(
        "//xs:element[@name='记录']/xs:complexType/xs:sequence/xs:element/@name", namespaces=ns
    )
    assert fields == sandbox.mapping.dataset(name).native_columns


def test_landing_keeps_each_file_read_with_its_sha256(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    _, landing = _pull(sandbox.adapter(), "e_license", tmp_path / "landing")

    assert [f.name for f in landing.files if f.name.endswith(".xml")] == [f"电子证照_{day}.xml" for day in DAYS]
    for landed in landing.files:
        payload = landed.path.read_bytes()
        assert payload == (sandbox.exports / landed.name).read_bytes()
        assert hashlib.sha256(payload).hexdigest() == landed.sha256
        assert len(payload) == landed.size


def test_pull_since_the_last_update_returns_nothing(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    latest = pc.max(_generate("e_license").column("updated_at")).as_py()

    pulled, landing = _pull(sandbox.adapter(), "e_license", tmp_path / "landing", since=latest)

    assert pulled.num_rows == 0
    # Days that end before `since` are not even read.
    assert [f.name for f in landing.files if f.name.endswith(".xml")] == ["电子证照_20240504.xml"]


@pytest.mark.parametrize("name", DATASETS)
def test_incremental_pull_returns_exactly_the_new_records(
    sandbox: AnhuiSandbox, tmp_path: Path, name: str
) -> None:
    latest = pc.max(_generate(name).column("updated_at")).as_py()
    newer = _generate(name, n=300, seed=22, start=END, end=END + timedelta(days=1))
    before = etree.parse(str(_file(sandbox, name, "20240504"))).getroot().get("记录数")
    sandbox.seed(name, newer)

    pulled, _ = _pull(sandbox.adapter(), name, tmp_path / "landing", since=latest)

    assert pulled.equals(_canonical(newer))
    # The 4th's file was rewritten with its earlier records plus the new ones of that day.
    after = etree.parse(str(_file(sandbox, name, "20240504"))).getroot().get("记录数")
    assert int(after) > int(before)
    everything, _ = _pull(sandbox.adapter(), name, tmp_path / "all")
    assert everything.num_rows == N + 300


def test_window_bounds_are_exclusive(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    generated = _canonical(_generate("e_license"))
    times = generated.column("updated_at")
    since, end = times[300].as_py(), times[1000].as_py()

    pulled, landing = _pull(sandbox.adapter(), "e_license", tmp_path / "landing", since=since, end=end)

    assert pulled.equals(
        generated.filter(pc.and_(pc.greater(times, times[300]), pc.less(times, times[1000])))
    )
    assert "电子证照_20240504.xml" not in [f.name for f in landing.files]  # entirely after the window


def test_pull_reads_in_chunks(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    adapter = AnhuiAdapter(sandbox.exports, chunk_rows=100, trust=sandbox.trust)
    landing = Landing(tmp_path / "landing")

    tables = list(adapter.pull(PullRequest("e_license", Window(START, LATER), None), landing))

    assert max(t.num_rows for t in tables) == 100
    assert pa.concat_tables(tables).equals(_canonical(_generate("e_license")))


def test_a_truncated_file_names_the_file_and_line(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    path = _file(sandbox, "e_license", "20240502")
    payload = path.read_bytes()
    sandbox.publish(path, payload[: len(payload) // 2])  # Anhui itself delivers (and signs) a broken file

    with pytest.raises(SourceFormatError) as caught:
        _pull(sandbox.adapter(), "e_license", tmp_path / "landing")

    assert caught.value.source == "电子证照_20240502.xml"
    assert caught.value.position.startswith("line ")
    assert "column" in caught.value.position


def test_an_unknown_element_violates_the_xsd(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    path = _file(sandbox, "e_license", "20240503")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "<持证人>" in line)
    lines.insert(at + 1, "    <备注>补录</备注>\n")
    sandbox.publish(path, "".join(lines).encode("utf-8"))

    with pytest.raises(SourceFormatError) as caught:
        _pull(sandbox.adapter(), "e_license", tmp_path / "landing")

    assert caught.value.source == "电子证照_20240503.xml"
    assert caught.value.position == f"line {at + 2}"
    assert "备注" in caught.value.problem


def test_a_record_count_mismatch_is_an_incomplete_export(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    path = _file(sandbox, "e_license", "20240501")
    text = path.read_text(encoding="utf-8")
    declared = etree.parse(str(path)).getroot().get("记录数")
    sandbox.publish(path, text.replace(f'记录数="{declared}"', f'记录数="{int(declared) + 1}"', 1).encode("utf-8"))

    with pytest.raises(SourceFormatError, match="记录数") as caught:
        _pull(sandbox.adapter(), "e_license", tmp_path / "landing")
    assert caught.value.source == "电子证照_20240501.xml"


def test_tmp_files_are_ignored(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    (sandbox.exports / "电子证照_20240505.xml.tmp").write_bytes(b"<?xml version='1.0'?><half")

    pulled, landing = _pull(sandbox.adapter(), "e_license", tmp_path / "landing")

    assert pulled.num_rows == N
    assert all(not f.name.endswith(".tmp") for f in landing.files)


def test_an_odd_file_name_is_not_silently_skipped(sandbox: AnhuiSandbox, tmp_path: Path) -> None:
    (sandbox.exports / "电子证照_2024050.xml").write_bytes(b"")

    with pytest.raises(SourceFormatError, match="YYYYMMDD") as caught:
        _pull(sandbox.adapter(), "e_license", tmp_path / "landing")
    assert caught.value.source == "电子证照_2024050.xml"


JULY = datetime(2024, 7, 1, tzinfo=UTC)
HAND_WRITTEN = """<?xml version="1.0" encoding="UTF-8"?>
<!-- hand-written export: absent, empty and unknown-valued fields -->
<电子证照数据 省份="安徽省" 数据日期="2024-06-01" 记录数="2">
  <记录>
    <证照编号>DZZZ340000000001</证照编号>
    <证照类型>导游证</证照类型>
    <身份证件号码>340102199001011234</身份证件号码>
    <发证日期>2020-01-01</发证日期>
    <证照状态>待定</证照状态>
    <更新时间>2024-06-01 09:30:00</更新时间>
  </记录>
  <记录>
    <证照编号>DZZZ340000000002</证照编号>
    <!-- a comment inside a record is not a field -->
    <持证人></持证人>
    <证照状态/>
    <更新时间>2024-06-01 10:00:00</更新时间>
  </记录>
</电子证照数据>
"""


def test_absent_and_empty_elements_are_nulls_and_bad_values_pass_through(tmp_path: Path) -> None:
    box = create(tmp_path)
    box.publish(box.exports / "电子证照_20240601.xml", HAND_WRITTEN.encode("utf-8"))

    pulled, _ = _pull(AnhuiAdapter(box.exports, trust=box.trust), "e_license", tmp_path / "landing", end=JULY)

    rows = pulled.to_pylist()
    assert [r["license_id"] for r in rows] == ["DZZZ340000000001", "DZZZ340000000002"]
    assert rows[0]["holder_name"] is None  # absent
    assert rows[0]["holder_id"] == "340102199001011234"  # not shifted into the absent field's place
    assert rows[0]["status"] == "待定"  # unknown code kept for the enumeration rule
    assert rows[0]["valid_until"] is None
    assert rows[1]["holder_name"] is None  # empty
    assert rows[1]["status"] is None
    assert rows[1]["updated_at"] == datetime(2024, 6, 1, 2, 0, tzinfo=UTC)


def test_an_unreadable_update_time_is_delivered_as_sent_not_the_file_failed(tmp_path: Path) -> None:
    """Issue 16 item 5 changed this: the record is placed at its file's day and quarantined with the time as
    sent (as Jiangsu's are), instead of one record failing the whole file."""
    box = create(tmp_path)
    bad = HAND_WRITTEN.replace("2024-06-01 10:00:00", "2024-13-01 10:00:00")
    box.publish(box.exports / "电子证照_20240601.xml", bad.encode("utf-8"))

    pulled, _ = _pull(AnhuiAdapter(box.exports, trust=box.trust), "e_license", tmp_path / "landing", end=JULY)
    rows = pulled.to_pylist()
    assert [r["license_id"] for r in rows] == ["DZZZ340000000001", "DZZZ340000000002"]
    assert rows[1]["updated_at"] is None
    assert rows[1][intake.AS_SENT] == (
        '{"updated_at":{"sent":"2024-13-01 10:00:00","problem":"not a time in the format %Y-%m-%d %H:%M:%S"}}'
    )
    assert rows[0][intake.AS_SENT] is None


def test_settings_and_registry_point_the_adapter_at_the_sandbox(
    sandbox: AnhuiSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sandbox.env() == {"EXCHANGE_ANHUI_EXPORT_DIR": str(tmp_path / "anhui" / "exports")}
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    # A hub whose trust bundle holds the sandbox's office key (a standalone sandbox keeps it in <root>/keys).
    monkeypatch.setenv("EXCHANGE_HOME", str(sandbox.keyring.dir.parent))

    adapter = adapter_for("anhui", ExchangeSettings())
    landing = Landing(tmp_path / "landing")
    tables = list(adapter.pull(PullRequest("enterprise_registration", Window(START, LATER), None), landing))

    assert adapter.province == "anhui"
    assert list(adapter.datasets()) == list(DATASETS)
    assert sum(t.num_rows for t in tables) == N


def test_defaults_to_the_sandbox_under_exchange_home(tmp_path: Path) -> None:
    adapter = build(ExchangeSettings(home=tmp_path))
    assert adapter.export_dir == tmp_path.resolve() / "sandboxes" / "anhui" / "exports"
    assert isinstance(sandbox_for("anhui", tmp_path / "box"), AnhuiSandbox)
