"""Jiangsu's adapter against its sandbox: real GB18030 files in a drop folder, no mocks."""

from __future__ import annotations

import codecs
import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from adapters.authenticity import sign
from adapters.base import Landing, PullRequest, Window, adapter_for
from adapters.jiangsu import native
from adapters.jiangsu.adapter import build
from adapters.jiangsu.manifest import DropManifest, FileEntry
from adapters.jiangsu.sandbox import JiangsuSandbox, create
from exchange.config import ExchangeSettings
from exchange.datasets import DATASETS as CANONICAL_DATASETS
from exchange.datasets import TIMESTAMP, dataset
from exchange.errors import SourceFormatError
from exchange.signing.keyring import Keyring
from exchange.synthetic import DEFECT_COLUMN, generate

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 1, tzinfo=CST)
END = datetime(2026, 11, 4, tzinfo=CST)
N = 2000
DATASETS = tuple(CANONICAL_DATASETS)  # every province provides every dataset
LICENSE_DAY_FILES = ["电子证照_20261101.csv", "电子证照_20261102.csv", "电子证照_20261103.csv"]


@pytest.fixture
def sandbox(tmp_path: Path) -> JiangsuSandbox:
    return create(tmp_path / "jiangsu")


def _records(name: str, n: int = N, seed: int = 11, start: datetime = START, end: datetime = END) -> pa.Table:
    return generate(name, "jiangsu", n, seed=seed, start=start, end=end)


def _pull(
    box: JiangsuSandbox, name: str, landing: Landing | Path, since: datetime | None, end: datetime = END
) -> pa.Table:
    landing = landing if isinstance(landing, Landing) else Landing(landing)
    tables = list(box.adapter().pull(PullRequest(name, Window(START, end), since), landing))
    return pa.concat_tables(tables, promote_options="default") if tables else dataset(name).schema.empty_table()


def _canonical(seeded: pa.Table) -> pa.Table:
    return seeded.drop_columns([DEFECT_COLUMN])


@pytest.mark.parametrize("name", DATASETS)
def test_full_pull_returns_every_seeded_record(sandbox: JiangsuSandbox, tmp_path: Path, name: str) -> None:
    seeded = _records(name)
    sandbox.seed(name, seeded)
    landing = Landing(tmp_path / "landing")
    pulled = _pull(sandbox, name, landing, None)

    assert pulled.schema == dataset(name).schema
    assert pulled.num_rows == N  # defective records pass through; the contract quarantines them
    assert pc.sum(pc.is_valid(seeded.column(DEFECT_COLUMN))).as_py() > 0
    # Files are read in date order and rows in update order, so source order is the generator's.
    assert pulled.equals(_canonical(seeded))

    drops = sorted(sandbox.drop.glob(f"{sandbox.mapping.dataset(name).source}_*.csv"))
    landed_data = [f for f in landing.files if f.name.endswith(".csv")]
    assert [f.name for f in landed_data] == [p.name for p in drops]
    assert [f.name for f in landing.files if f.name.endswith(".manifest.json")] == [
        p.name.replace(".csv", ".manifest.json") for p in drops
    ]
    assert len(drops) == 3
    for landed, drop in zip(landed_data, drops, strict=True):
        payload = landed.path.read_bytes()
        assert payload == drop.read_bytes()
        assert hashlib.sha256(payload).hexdigest() == landed.sha256


def test_files_are_gb18030_with_chinese_headers(sandbox: JiangsuSandbox) -> None:
    sandbox.seed("e_license", _records("e_license", n=200))
    assert sorted(p.name for p in sandbox.drop.glob("*.csv")) == LICENSE_DAY_FILES
    payload = (sandbox.drop / LICENSE_DAY_FILES[0]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        payload.decode("utf-8")
    text = payload.decode("gb18030")
    assert text.startswith('"证照编号","证照类型"')
    assert any(status in text for status in ("有效", "注销", "过期"))


@pytest.mark.parametrize("name", DATASETS)
def test_incremental_pulls(sandbox: JiangsuSandbox, tmp_path: Path, name: str) -> None:
    sandbox.seed(name, _records(name))
    first = _pull(sandbox, name, tmp_path / "l1", None)
    watermark = pc.max(first.column("updated_at")).as_py()

    landing = Landing(tmp_path / "l2")
    assert _pull(sandbox, name, landing, watermark).num_rows == 0
    # Files of days entirely before the watermark's day are not even read.
    assert [f.name.rsplit("_", 1)[1] for f in landing.files] == [
        "20261103.csv", "20261103.manifest.json", "20261103.manifest.json.sig"
    ]

    # More records, starting on the last seeded day (its file is rewritten) and going on a day later.
    later_end = END + timedelta(days=1)
    more = _records(name, n=300, seed=12, start=watermark + timedelta(seconds=1), end=later_end)
    sandbox.seed(name, more)
    new = _pull(sandbox, name, tmp_path / "l3", watermark, end=later_end)
    assert new.equals(_canonical(more))
    # The rewritten day file still holds the old records too.
    assert _pull(sandbox, name, tmp_path / "l4", None, end=later_end).num_rows == N + 300


def test_window_end_is_exclusive(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    seeded = _records("e_license")
    sandbox.seed("e_license", seeded)
    cut = seeded.column("updated_at")[N // 2].as_py()
    landing = Landing(tmp_path / "l")
    pulled = _pull(sandbox, "e_license", landing, None, end=cut)
    expected = seeded.filter(pc.less(seeded.column("updated_at"), pa.scalar(cut, TIMESTAMP)))
    assert pulled.num_rows == expected.num_rows < N
    assert pulled.equals(_canonical(expected))
    cut_day = cut.astimezone(CST).strftime("%Y%m%d")
    assert all(f.name.rsplit("_", 1)[1][:8] <= cut_day for f in landing.files)


def test_since_is_exclusive(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    seeded = _records("e_license")
    sandbox.seed("e_license", seeded)
    since = seeded.column("updated_at")[1234].as_py()
    pulled = _pull(sandbox, "e_license", tmp_path / "l", since)
    later = seeded.filter(pc.greater(seeded.column("updated_at"), pa.scalar(since, TIMESTAMP)))
    assert pulled.equals(_canonical(later))


def test_undecodable_file_names_file_and_byte_offset(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=200))
    path = sandbox.drop / LICENSE_DAY_FILES[1]
    good = path.read_bytes()
    # A holder name exported as Latin-1 with stray bytes that neither UTF-8 nor GB18030 accept.
    offset = good.index(b"\n", 200) + 1
    sandbox.deliver(path.name, good[:offset] + b"\"M\xfcller\xff\xff\"," + good[offset:])
    landing = Landing(tmp_path / "l")
    with pytest.raises(SourceFormatError) as caught:
        _pull(sandbox, "e_license", landing, None)
    error = caught.value
    assert error.source == str(path)
    bad_offset = path.read_bytes().index(b"\xff")
    assert error.position == f"byte {bad_offset}"
    assert "GB18030" in str(error)
    assert path.name in [f.name for f in landing.files]  # landed before it was parsed


def test_an_undecodable_byte_deep_in_a_large_file_is_named_too(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    # GB18030 is decoded once, while parsing: a bad byte after the first block is found there, not up front.
    sandbox.seed("e_license", _records("e_license", n=40_000))
    path = max((sandbox.drop / f for f in LICENSE_DAY_FILES), key=lambda p: p.stat().st_size)
    good = path.read_bytes()
    assert len(good) > 1_300_000, "the day file must span several read blocks"
    offset = good.index(b"\n", 1_200_000) + 1
    sandbox.deliver(path.name, good[:offset] + b"\"M\xfcller\xff\xff\"," + good[offset:])
    with pytest.raises(SourceFormatError) as caught:
        _pull(sandbox, "e_license", tmp_path / "l", None)
    bad = path.read_bytes()
    at, line = bad.index(b"\xff"), bad[:offset].count(b"\n") + 1
    assert caught.value.position == f"byte {at}"
    assert f"not valid GB18030 (line {line}, bytes ff ff" in str(caught.value)


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8], ids=["utf8", "utf8-bom"])
def test_utf8_files_read_like_gb18030(sandbox: JiangsuSandbox, tmp_path: Path, bom: bytes) -> None:
    seeded = _records("e_license", n=300)
    sandbox.seed("e_license", seeded)
    for path in sandbox.drop.glob("*.csv"):
        sandbox.deliver(path.name, bom + path.read_bytes().decode("gb18030").encode("utf-8"))
    assert _pull(sandbox, "e_license", tmp_path / "l", None).equals(_canonical(seeded))


def test_missing_column_names_file_and_column(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=200))
    path = sandbox.drop / LICENSE_DAY_FILES[0]
    table = native.read_table(path.read_bytes(), str(path))
    columns = [c for c in table.column_names if c != "持证人身份证号"]
    sandbox.deliver(path.name, native.to_bytes(table, columns))
    with pytest.raises(SourceFormatError) as caught:
        _pull(sandbox, "e_license", tmp_path / "l", None)
    assert caught.value.source == str(path)
    assert "持证人身份证号" in caught.value.problem


def test_tmp_files_are_ignored(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    seeded = _records("e_license", n=200)
    sandbox.seed("e_license", seeded)
    (sandbox.drop / "电子证照_20261103.csv.tmp").write_bytes(b"\xff\xfe half-written garbage")
    landing = Landing(tmp_path / "l")
    assert _pull(sandbox, "e_license", landing, None).equals(_canonical(seeded))
    assert not any(f.name.endswith(".tmp") for f in landing.files)


def test_broken_row_and_bad_file_name_are_format_errors(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=200))
    path = sandbox.drop / LICENSE_DAY_FILES[2]
    sandbox.deliver(path.name, path.read_bytes() + "\"DZZZ32只有一列\"\n".encode("gb18030"))
    with pytest.raises(SourceFormatError, match="Expected 10 columns") as caught:
        _pull(sandbox, "e_license", tmp_path / "l1", None)
    assert caught.value.source == str(path)
    path.unlink()
    (sandbox.drop / "电子证照_2026-11-05.csv").write_bytes(b"")
    with pytest.raises(SourceFormatError, match="YYYYMMDD"):
        _pull(sandbox, "e_license", tmp_path / "l2", None, end=END + timedelta(days=5))


def test_unreadable_update_time_is_kept_once(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=200))
    path = sandbox.drop / LICENSE_DAY_FILES[1]
    table = native.read_table(path.read_bytes(), str(path))
    broken = table.set_column(
        table.schema.get_field_index("更新时间"), "更新时间",
        pa.concat_arrays([pa.array(["2026/11/02"]), table.column("更新时间").combine_chunks()[1:]]),
    )
    sandbox.deliver(path.name, native.to_bytes(broken, table.column_names))
    day_two = datetime(2026, 11, 2, tzinfo=CST)
    before = _pull(sandbox, "e_license", tmp_path / "l1", None, end=day_two + timedelta(hours=1))
    after = _pull(sandbox, "e_license", tmp_path / "l2", day_two + timedelta(hours=1))
    assert before.column("updated_at").null_count == 1
    assert after.column("updated_at").null_count == 0
    assert before.num_rows + after.num_rows == 200


def test_build_from_settings_and_env(
    sandbox: JiangsuSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = build(ExchangeSettings(home=tmp_path / "home", jiangsu_drop_dir=None, sandbox_dir=None))
    assert default.drop_dir == (tmp_path / "home").resolve() / "sandboxes" / "jiangsu" / "drop"

    # The hub at tmp_path/home trusts the sandbox's office key only if it is in that hub's keyring.
    sandbox = JiangsuSandbox(sandbox.root, Keyring(tmp_path / "home" / "keys"))
    sandbox.seed("enterprise_registration", _records("enterprise_registration", n=30))
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    assert sandbox.env() == {"EXCHANGE_JIANGSU_DROP_DIR": str(sandbox.drop)}
    adapter = adapter_for("jiangsu", ExchangeSettings(home=tmp_path / "home"))
    assert set(adapter.datasets()) == set(DATASETS)
    request = PullRequest("enterprise_registration", Window(START, END), None)
    assert sum(t.num_rows for t in adapter.pull(request, Landing(tmp_path / "l"))) == 30


# --- drop manifests: partial drops are never read, damaged files are errors --------------------------------

MANIFESTS = [name.replace(".csv", ".manifest.json") for name in LICENSE_DAY_FILES]


def test_sandbox_writes_a_manifest_per_drop(sandbox: JiangsuSandbox) -> None:
    sandbox.seed("e_license", _records("e_license", n=200))
    for data, manifest in zip(LICENSE_DAY_FILES, MANIFESTS, strict=True):
        payload = (sandbox.drop / data).read_bytes()
        doc = DropManifest.parse((sandbox.drop / manifest).read_bytes(), manifest)
        assert doc.files == (FileEntry(data, hashlib.sha256(payload).hexdigest(), len(payload)),)


@pytest.mark.parametrize("missing", ["manifest", "data"])
def test_a_partial_drop_stops_the_pull_before_it(sandbox: JiangsuSandbox, tmp_path: Path, missing: str) -> None:
    seeded = _records("e_license")
    sandbox.seed("e_license", seeded)
    if missing == "manifest":  # the data file is renamed, its manifest not written yet
        (sandbox.drop / MANIFESTS[1]).unlink()
    else:  # the manifest arrived but the data file is still being written
        (sandbox.drop / LICENSE_DAY_FILES[1]).rename(sandbox.drop / (LICENSE_DAY_FILES[1] + ".tmp"))
    landing = Landing(tmp_path / "l")

    pulled = _pull(sandbox, "e_license", landing, None)

    day_one = pc.strftime(seeded.column("updated_at").cast(pa.timestamp("us", tz="Asia/Shanghai")), format="%d")
    assert pulled.equals(_canonical(seeded.filter(pc.equal(day_one, "01"))))
    # Neither the partial day nor the complete day after it was read: the watermark stays before the gap.
    assert [f.name for f in landing.files] == [LICENSE_DAY_FILES[0], MANIFESTS[0], MANIFESTS[0] + ".sig"]


def test_a_file_differing_from_its_manifest_is_an_error_naming_it(sandbox: JiangsuSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=200))
    path = sandbox.drop / LICENSE_DAY_FILES[2]
    path.write_bytes(path.read_bytes().replace("有效".encode("gb18030"), "注销".encode("gb18030"), 1))

    with pytest.raises(SourceFormatError, match="SHA-256") as caught:
        _pull(sandbox, "e_license", tmp_path / "l", None)

    assert caught.value.source == str(path)
    assert "re-deliver" in str(caught.value)


@pytest.mark.parametrize(
    "body, problem",
    [(b"{not json", "not a drop manifest"), (b'{"files": [{"name": "x"}]}', "not a drop manifest"),
     ('{"files": [{"name": "电子证照_20261101.csv", "sha256": "abc", "size": 1}]}'.encode(), "64 hex"),
     (b'{"files": []}', "does not list")],
    ids=["invalid-json", "missing-keys", "short-digest", "file-not-listed"],
)
def test_a_bad_manifest_is_an_error(sandbox: JiangsuSandbox, tmp_path: Path, body: bytes, problem: str) -> None:
    sandbox.seed("e_license", _records("e_license", n=200))
    (sandbox.drop / MANIFESTS[0]).write_bytes(body)
    # Signed by Jiangsu itself: a bad manifest from the source, not one tampered with on the way.
    signed = sign(sandbox.keyring.signer("jiangsu.data_office"), "jiangsu", MANIFESTS[0], body)
    (sandbox.drop / (MANIFESTS[0] + ".sig")).write_bytes(signed.to_bytes())

    with pytest.raises(SourceFormatError, match=problem) as caught:
        _pull(sandbox, "e_license", tmp_path / "l", None)

    assert LICENSE_DAY_FILES[0].removesuffix(".csv") in caught.value.source
