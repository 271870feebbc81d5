"""Zhejiang: the SQLite sandbox's views read back through the adapter (real SQLite, no mocks)."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from adapters.base import DELETED_AT, Landing, PullRequest, Window, adapter_for, deletion_schema, sandbox_for
from adapters.zhejiang.adapter import ZhejiangAdapter, _map_error, build
from adapters.zhejiang.ledger import DeliveryLedger
from adapters.zhejiang.sandbox import BASE_TABLES, ZhejiangSandbox, create
from exchange.config import ExchangeSettings
from exchange.datasets import DATASETS as CANONICAL_DATASETS
from exchange.datasets import dataset
from exchange.errors import SourceFormatError, TerminalError, TransientError
from exchange.synthetic import DEFECT_COLUMN, generate

START = datetime(2024, 5, 1, tzinfo=UTC)
END = START + timedelta(days=3)
LATER = START + timedelta(days=10)
N = 2000
DATASETS = tuple(CANONICAL_DATASETS)  # every province provides every dataset


def _generate(
    name: str, n: int = N, seed: int = 11, start: datetime = START, end: datetime = END
) -> pa.Table:
    return generate(name, "zhejiang", n, seed=seed, start=start, end=end)


def _pull(
    adapter: ZhejiangAdapter, name: str, landing: Path, since: datetime | None = None, end: datetime = LATER
) -> tuple[list[pa.Table], Landing]:
    land = Landing(landing)
    return list(adapter.pull(PullRequest(name, Window(START - timedelta(days=1), end), since), land)), land


def _concat(tables: list[pa.Table], name: str) -> pa.Table:
    return pa.concat_tables(tables, promote_options="default") if tables else dataset(name).schema.empty_table()


def _ordered(table: pa.Table, name: str) -> pa.Table:
    """Canonical columns in a total order (the view orders by update time and key; ties may differ)."""
    ds = dataset(name)
    table = table.select(ds.schema.names)
    keys = ["updated_at", ds.key, *[n for n in ds.schema.names if n not in ("updated_at", ds.key)]]
    return table.sort_by([(k, "ascending") for k in keys])


@pytest.fixture
def sandbox(tmp_path: Path) -> ZhejiangSandbox:
    box = create(tmp_path / "zhejiang")
    for name in DATASETS:
        box.seed(name, _generate(name))
    return box


@pytest.mark.parametrize("name", DATASETS)
def test_pull_returns_every_seeded_record_in_canonical_form(
    sandbox: ZhejiangSandbox, tmp_path: Path, name: str
) -> None:
    generated = _generate(name)
    assert pc.count(generated.column(DEFECT_COLUMN)).as_py() > 0  # the defects must reach the contract

    tables, _ = _pull(sandbox.adapter(), name, tmp_path / "landing")

    pulled = _concat(tables, name)
    assert pulled.schema == dataset(name).schema
    assert pulled.num_rows == N
    assert _ordered(pulled, name).equals(_ordered(generated, name))
    times = pulled.column("updated_at")
    assert pc.all(pc.greater_equal(times.slice(1), times.slice(0, len(times) - 1))).as_py()


@pytest.mark.parametrize("name", DATASETS)
def test_landing_keeps_the_native_rows_with_their_sha256(
    sandbox: ZhejiangSandbox, tmp_path: Path, name: str
) -> None:
    _, landing = _pull(sandbox.adapter(), name, tmp_path / "landing")

    assert [f.name for f in landing.files] == ["chunk-00001.parquet"]
    for landed in landing.files:
        payload = landed.path.read_bytes()
        assert hashlib.sha256(payload).hexdigest() == landed.sha256
        assert len(payload) == landed.size
    native = pq.read_table(landing.files[0].path)
    mapping = sandbox.mapping.dataset(name)
    assert native.column_names == [*mapping.native_columns, "SCBZ"]  # the raw copy keeps the delete flag
    assert native.num_rows == N
    assert _ordered(mapping.to_canonical(native, "landed"), name).equals(_ordered(_generate(name), name))


def test_pull_since_the_last_update_returns_nothing(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    latest = pc.max(_generate("e_license").column("updated_at")).as_py()

    tables, landing = _pull(sandbox.adapter(), "e_license", tmp_path / "landing", since=latest)

    assert sum(t.num_rows for t in tables) == 0
    assert landing.files == []


@pytest.mark.parametrize("name", DATASETS)
def test_incremental_pull_returns_exactly_the_new_records(
    sandbox: ZhejiangSandbox, tmp_path: Path, name: str
) -> None:
    latest = pc.max(_generate(name).column("updated_at")).as_py()
    newer = _generate(name, n=300, seed=12, start=END, end=END + timedelta(days=1))
    sandbox.seed(name, newer)

    tables, _ = _pull(sandbox.adapter(), name, tmp_path / "landing", since=latest)

    assert _ordered(_concat(tables, name), name).equals(_ordered(newer, name))


def test_window_bounds_are_exclusive_and_compared_in_local_time(
    sandbox: ZhejiangSandbox, tmp_path: Path
) -> None:
    generated = _generate("e_license")
    times = generated.column("updated_at")
    since = times[300].as_py()
    end = times[1700].as_py()
    # The view's local-time text must be compared with Shanghai time, not UTC: these bounds are UTC.
    assert since.utcoffset() == timedelta(0)

    tables, _ = _pull(sandbox.adapter(), "e_license", tmp_path / "landing", since=since, end=end)

    expected = generated.filter(pc.and_(pc.greater(times, times[300]), pc.less(times, times[1700])))
    assert _ordered(_concat(tables, "e_license"), "e_license").equals(_ordered(expected, "e_license"))


def test_sub_second_bounds_round_the_right_way(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    times = _generate("e_license").column("updated_at")
    first, last = times[0].as_py(), times[N - 1].as_py()
    half = timedelta(milliseconds=500)

    tables, _ = _pull(sandbox.adapter(), "e_license", tmp_path / "l", since=first - half, end=last + half)

    pulled = _concat(tables, "e_license").column("updated_at")
    assert pulled.length() == N
    tables, _ = _pull(sandbox.adapter(), "e_license", tmp_path / "m", since=first + half, end=last - half)
    inner = _concat(tables, "e_license").column("updated_at")
    assert pc.min(inner).as_py() > first
    assert pc.max(inner).as_py() < last


def test_pull_reads_in_chunks(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    adapter = ZhejiangAdapter(sandbox.url, chunk_rows=300, trust=sandbox.trust)

    tables, landing = _pull(adapter, "e_license", tmp_path / "landing")

    assert [t.num_rows for t in tables] == [300] * 6 + [200]
    assert [f.name for f in landing.files] == [f"chunk-{i:05d}.parquet" for i in range(1, 8)]
    assert [pq.read_metadata(f.path).num_rows for f in landing.files] == [t.num_rows for t in tables]
    assert _ordered(pa.concat_tables(tables), "e_license").equals(
        _ordered(_generate("e_license"), "e_license")
    )


def test_a_view_missing_a_column_names_the_view_and_column(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    mapping = sandbox.mapping.dataset("e_license")
    kept = ", ".join(c for c in mapping.native_columns if c != "CYRZJHM")
    engine = sa.create_engine(sandbox.url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP VIEW {mapping.source}"))
        conn.execute(
            sa.text(f"CREATE VIEW {mapping.source} AS SELECT {kept} FROM {BASE_TABLES['e_license']}")
        )
    engine.dispose()

    with pytest.raises(SourceFormatError) as caught:
        _pull(sandbox.adapter(), "e_license", tmp_path / "landing")

    assert caught.value.source == "V_DZZZ_GX"
    assert "CYRZJHM" in str(caught.value)


def test_a_missing_view_is_a_source_format_error(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    engine = sa.create_engine(sandbox.url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP VIEW V_SCZTDJ_GX"))
    engine.dispose()

    with pytest.raises(SourceFormatError, match="V_SCZTDJ_GX"):
        _pull(sandbox.adapter(), "enterprise_registration", tmp_path / "landing")


def test_bad_records_pass_through_to_the_contract(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    generated = _generate("e_license")
    key = generated.column("license_id")[5].as_py()
    with sqlite3.connect(sandbox.path) as conn:
        conn.execute("UPDATE T_DZZZ SET ZZZT = '9', CYRXM = NULL, FZRQ = '2024-13-01' WHERE ZZBH = ?", (key,))
    conn.close()
    sandbox.resign("e_license")  # Zhejiang's own (signed) correction, not a change behind its back

    tables, _ = _pull(sandbox.adapter(), "e_license", tmp_path / "landing")

    pulled = _concat(tables, "e_license")
    assert pulled.num_rows == N
    bad = pulled.filter(pc.equal(pulled.column("license_id"), key)).to_pylist()
    assert {r["status"] for r in bad} == {"9"}  # an unknown code is kept for the enumeration rule
    assert {r["holder_name"] for r in bad} == {None}
    assert {r["issued_on"] for r in bad} == {None}


def test_duplicate_keys_are_kept(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    generated = _generate("e_license")
    duplicates = pc.sum(pc.equal(generated.column(DEFECT_COLUMN), "duplicate_key")).as_py()
    assert duplicates > 0

    tables, _ = _pull(sandbox.adapter(), "e_license", tmp_path / "landing")

    keys = _concat(tables, "e_license").column("license_id")
    assert (
        len(keys) - pc.count_distinct(keys).as_py()
        == len(generated) - pc.count_distinct(generated.column("license_id")).as_py()
    )


def test_seeding_appends(tmp_path: Path) -> None:
    box = create(tmp_path / "zhejiang")
    box.seed("e_license", _generate("e_license", n=10))
    box.seed("e_license", _generate("e_license", n=10))

    tables, _ = _pull(box.adapter(), "e_license", tmp_path / "landing")

    assert _concat(tables, "e_license").num_rows == 20


def test_settings_and_registry_point_the_adapter_at_the_sandbox(
    sandbox: ZhejiangSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sandbox.env() == {
        "EXCHANGE_ZHEJIANG_DB_URL": f"sqlite:///{tmp_path / 'zhejiang' / 'zhejiang.sqlite'}"
    }
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)

    # A hub whose trust bundle holds the sandbox's office key (a standalone sandbox keeps it in <root>/keys).
    monkeypatch.setenv("EXCHANGE_HOME", str(sandbox.keyring.dir.parent))
    adapter = adapter_for("zhejiang", ExchangeSettings())
    tables, _ = _pull(adapter, "enterprise_registration", tmp_path / "landing")  # type: ignore[arg-type]

    assert adapter.province == "zhejiang"
    assert list(adapter.datasets()) == list(DATASETS)
    assert _concat(tables, "enterprise_registration").num_rows == N


def test_defaults_to_the_sandbox_under_exchange_home(tmp_path: Path) -> None:
    adapter = build(ExchangeSettings(home=tmp_path))
    assert adapter.url == "sqlite:///" + str(
        tmp_path.resolve() / "sandboxes" / "zhejiang" / "zhejiang.sqlite"
    )
    box = sandbox_for("zhejiang", tmp_path / "box")
    assert isinstance(box, ZhejiangSandbox)


def test_a_missing_database_file_is_terminal(tmp_path: Path) -> None:
    adapter = ZhejiangAdapter(f"sqlite:///{tmp_path / 'absent.sqlite'}")

    with pytest.raises(TerminalError, match="absent.sqlite"):
        _pull(adapter, "e_license", tmp_path / "landing")
    assert not (tmp_path / "absent.sqlite").exists()


def test_lock_waits_are_transient_and_sql_errors_are_format_errors() -> None:
    locked = sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))
    broken = sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such column: ZZBH"))

    assert isinstance(_map_error(locked, "V_DZZZ_GX", "row 1"), TransientError)
    error = _map_error(broken, "V_DZZZ_GX", "row 1")
    assert isinstance(error, SourceFormatError)
    assert error.source == "V_DZZZ_GX"
    assert "ZZBH" in str(error)


# --- overlap, de-duplication and soft deletes -------------------------------------------------------------

OVERLAP = timedelta(minutes=10)


def _overlapping(sandbox: ZhejiangSandbox, state: Path, chunk_rows: int = 50_000) -> ZhejiangAdapter:
    return ZhejiangAdapter(
        sandbox.url, chunk_rows=chunk_rows, overlap=OVERLAP, delivered=DeliveryLedger(state), trust=sandbox.trust
    )


def _clean(table: pa.Table, n: int) -> pa.Table:
    """`n` generated records without defects, so keys and times are all present."""
    return table.filter(pc.is_null(table.column(DEFECT_COLUMN))).slice(0, n)


def test_overlap_delivers_late_rows_and_newer_versions_once(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    adapter = _overlapping(sandbox, tmp_path / "state")
    first, _ = _pull(adapter, "e_license", tmp_path / "l1")
    assert _concat(first, "e_license").num_rows == N
    watermark = pc.max(_concat(first, "e_license").column("updated_at")).as_py()

    # A row stamped before the watermark but committed after the first pull, and a newer version of a
    # record already delivered (same key, later update time).
    late = _clean(_generate("e_license", n=40, seed=21, start=watermark - timedelta(minutes=5),
                            end=watermark - timedelta(minutes=1)), 1)
    delivered = _clean(_generate("e_license"), 1)
    newer = delivered.set_column(
        delivered.schema.get_field_index("updated_at"), "updated_at",
        pa.array([watermark + timedelta(minutes=1)], delivered.schema.field("updated_at").type),
    )
    sandbox.seed("e_license", late)
    sandbox.seed("e_license", newer)

    second, _ = _pull(adapter, "e_license", tmp_path / "l2", since=watermark, end=LATER + timedelta(days=1))
    got = _concat(second, "e_license")
    expected = pa.concat_tables([late, newer]).drop_columns([DEFECT_COLUMN])
    assert _ordered(got, "e_license").equals(_ordered(expected, "e_license"))

    # The next run re-reads the same overlap: everything in it was delivered, so nothing comes back.
    latest = pc.max(got.column("updated_at")).as_py()
    third, _ = _pull(adapter, "e_license", tmp_path / "l3", since=latest, end=LATER + timedelta(days=2))
    assert _concat(third, "e_license").num_rows == 0


def test_without_the_ledger_the_overlap_would_duplicate(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    adapter = _overlapping(sandbox, tmp_path / "state")
    first, _ = _pull(adapter, "e_license", tmp_path / "l1")
    times = _concat(first, "e_license").column("updated_at")
    watermark = pc.max(times).as_py()
    in_overlap = pc.sum(pc.greater(times, pa.scalar(watermark - OVERLAP - timedelta(seconds=1), times.type)))
    assert in_overlap.as_py() > 0  # the test is only meaningful if the overlap holds delivered rows

    fresh = _overlapping(sandbox, tmp_path / "other-state")  # same database, no memory of the first pull
    again, _ = _pull(fresh, "e_license", tmp_path / "l2", since=watermark, end=LATER + timedelta(days=1))
    assert _concat(again, "e_license").num_rows == in_overlap.as_py()
    remembered, _ = _pull(adapter, "e_license", tmp_path / "l3", since=watermark, end=LATER + timedelta(days=1))
    assert _concat(remembered, "e_license").num_rows == 0


def test_a_retried_window_redelivers_what_its_uncommitted_attempt_read(
    sandbox: ZhejiangSandbox, tmp_path: Path
) -> None:
    adapter = _overlapping(sandbox, tmp_path / "state")
    first, _ = _pull(adapter, "e_license", tmp_path / "l1")
    watermark = pc.max(_concat(first, "e_license").column("updated_at")).as_py()
    newer = _clean(_generate("e_license", n=40, seed=22, start=watermark + timedelta(minutes=1),
                             end=watermark + timedelta(minutes=2)), 3)
    sandbox.seed("e_license", newer)
    end = LATER + timedelta(days=1)

    attempt, _ = _pull(adapter, "e_license", tmp_path / "l2", since=watermark, end=end)
    # The attempt's batch never committed, so the hub's watermark did not move and Airflow retries it.
    retry, _ = _pull(adapter, "e_license", tmp_path / "l3", since=watermark, end=end)

    assert _concat(attempt, "e_license").num_rows == 3
    assert _ordered(_concat(retry, "e_license"), "e_license").equals(_ordered(_concat(attempt, "e_license"),
                                                                              "e_license"))


def test_a_pull_abandoned_half_way_records_nothing(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    adapter = _overlapping(sandbox, tmp_path / "state", chunk_rows=500)
    chunks = adapter.pull(PullRequest("e_license", Window(START, LATER), None), Landing(tmp_path / "l1"))
    assert next(chunks).num_rows == 500
    chunks.close()  # e.g. the task died: the hub never committed these rows

    assert not DeliveryLedger(tmp_path / "state").path("e_license").exists()


def test_the_ledger_stays_within_the_overlap(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    adapter = _overlapping(sandbox, tmp_path / "state", chunk_rows=300)
    tables, _ = _pull(adapter, "e_license", tmp_path / "l1")
    times = _concat(tables, "e_license").column("updated_at")
    horizon = pc.max(times).as_py() - OVERLAP - timedelta(seconds=1)

    kept = pq.read_table(DeliveryLedger(tmp_path / "state").path("e_license"))

    assert kept.num_rows == pc.sum(pc.greater(times, pa.scalar(horizon, times.type))).as_py() < N


def test_soft_deleted_rows_are_deletions_not_records(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    generated = _clean(_generate("e_license"), 5)
    keys = generated.column("license_id").to_pylist()[:3]
    deleted_at = LATER - timedelta(days=1)
    sandbox.delete("e_license", keys, deleted_at)
    adapter = sandbox.adapter()
    request = PullRequest("e_license", Window(START - timedelta(days=1), LATER), None)

    records = _concat(list(adapter.pull(request, Landing(tmp_path / "l1"))), "e_license")
    landing = Landing(tmp_path / "l2")
    deletions = pa.concat_tables(list(adapter.deletions(request, landing)))

    remaining = _generate("e_license").filter(pc.invert(pc.is_in(_generate("e_license").column("license_id"),
                                                                 value_set=pa.array(keys))))
    assert records.num_rows == remaining.num_rows
    assert not pc.any(pc.is_in(records.column("license_id"), value_set=pa.array(keys))).as_py()
    assert deletions.schema == deletion_schema("e_license")
    assert sorted(deletions.column("license_id").to_pylist()) == sorted(keys)
    assert set(deletions.column(DELETED_AT).to_pylist()) == {deleted_at}
    assert [f.name for f in landing.files] == ["deleted-00001.parquet"]


def test_deletions_are_incremental(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    key = _clean(_generate("enterprise_registration"), 1).column("uscc")[0].as_py()
    sandbox.delete("enterprise_registration", [key], LATER + timedelta(hours=1))
    adapter = sandbox.adapter()

    def deleted(since: datetime, end: datetime) -> list[str]:
        request = PullRequest("enterprise_registration", Window(START, end), since)
        return [k for t in adapter.deletions(request) for k in t.column("uscc").to_pylist()]

    assert deleted(LATER, LATER + timedelta(days=1)) == [key]
    assert deleted(LATER + timedelta(hours=2), LATER + timedelta(days=1)) == []
    assert deleted(START, LATER) == []


def test_a_null_delete_flag_is_a_live_record(sandbox: ZhejiangSandbox, tmp_path: Path) -> None:
    with sqlite3.connect(sandbox.path) as conn:
        conn.execute("UPDATE T_DZZZ SET SCBZ = NULL")
    conn.close()
    sandbox.resign("e_license")

    tables, _ = _pull(sandbox.adapter(), "e_license", tmp_path / "landing")

    assert _concat(tables, "e_license").num_rows == N


def test_build_configures_the_overlap_and_ledger(tmp_path: Path) -> None:
    adapter = build(ExchangeSettings(home=tmp_path, zhejiang_overlap_minutes=15))
    assert adapter.overlap == timedelta(minutes=15)
    assert adapter.delivered == DeliveryLedger(tmp_path.resolve() / "adapters" / "zhejiang")
    assert build(ExchangeSettings(home=tmp_path, zhejiang_overlap_minutes=0)).delivered is None
    with pytest.raises(ValueError, match="DeliveryLedger"):
        ZhejiangAdapter("sqlite://", overlap=OVERLAP)


def test_deletions_after_a_pull_reuse_its_day_signatures_and_nothing_else_does(
    sandbox: ZhejiangSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.zhejiang import batches

    checked: list[str | None] = []
    real = batches.verify_days

    def counting(conn: sa.Connection, dm: object, lower: str | None, upper: str, verifier: object) -> list[object]:
        checked.append(upper)
        return real(conn, dm, lower, upper, verifier)  # type: ignore[arg-type]

    monkeypatch.setattr(batches, "verify_days", counting)
    adapter = sandbox.adapter()
    request = PullRequest("e_license", Window(START - timedelta(days=1), LATER), None)
    list(adapter.pull(request, Landing(tmp_path / "l1")))
    list(adapter.deletions(request, Landing(tmp_path / "l1")))
    assert len(checked) == 1, "one window, one check of its days (a day's signature covers its deleted rows)"
    list(adapter.deletions(request))  # not right after a pull: checked again
    later = PullRequest("e_license", Window(START - timedelta(days=1), LATER + timedelta(days=1)), None)
    list(adapter.pull(request, Landing(tmp_path / "l2")))
    list(adapter.deletions(later))  # another range than the pull's
    list(adapter.pull(request, Landing(tmp_path / "l3")))  # every pull checks afresh
    assert len(checked) == 5
