"""Zhejiang's adapter against the real MariaDB and PostgreSQL servers on loopback.

Each test installs the sandbox's tables and views in a schema (PostgreSQL) or database (MariaDB) of its
own, named uniquely, and drops it afterwards. Server addresses come from EXCHANGE_TEST_MARIADB_URL and
EXCHANGE_TEST_POSTGRES_URL (loopback defaults). An unreachable server skips the tests on a laptop and
fails them when CI is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from adapters.base import DELETED_AT, Landing, PullRequest, Window
from adapters.zhejiang.adapter import ZhejiangAdapter
from adapters.zhejiang.ledger import DeliveryLedger
from adapters.zhejiang.sandbox import BASE_TABLES, ZhejiangSandbox, create
from exchange.datasets import dataset
from exchange.errors import SourceFormatError, TransientError
from exchange.synthetic import DEFECT_COLUMN, generate

pytestmark = pytest.mark.integration

SERVERS = {
    "mariadb": ("EXCHANGE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    "postgresql": ("EXCHANGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
}
START = datetime(2024, 5, 1, tzinfo=UTC)
END = START + timedelta(days=3)
LATER = START + timedelta(days=10)
N = 2000
DATASETS = ("e_license", "enterprise_registration")
OVERLAP = timedelta(minutes=10)


def _server(backend: str) -> sa.URL:
    """The server's URL, or skip (fail under CI) with the reason it cannot be used."""
    variable, default = SERVERS[backend]
    url = sa.make_url(os.environ.get(variable, default))
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        reason = f"{backend} at {url.render_as_string(hide_password=True)} is unreachable ({exc}); set {variable}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=sorted(SERVERS))
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ZhejiangSandbox]:
    """A seeded sandbox in a schema/database of its own on the real server, dropped afterwards."""
    backend: str = request.param
    server = _server(backend)
    name = f"zj_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    if backend == "postgresql":
        create_sql, drop_sql = f"CREATE SCHEMA {name}", f"DROP SCHEMA IF EXISTS {name} CASCADE"
        # Unqualified names (the adapter's) resolve in the test schema only.
        url = server.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        create_sql = f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        drop_sql = f"DROP DATABASE IF EXISTS {name}"
        url = server.set(database=name)
    with admin.connect() as conn:
        conn.execute(sa.text(create_sql))
    box = create(tmp_path / "zhejiang", url.render_as_string(hide_password=False))
    try:
        for ds in DATASETS:
            box.seed(ds, _generate(ds))
        yield box
    finally:
        box.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(drop_sql))
        admin.dispose()


@pytest.fixture
def adapters(sandbox: ZhejiangSandbox) -> Iterator[list[ZhejiangAdapter]]:
    """Adapters a test builds; their pools are closed before the test schema is dropped."""
    made: list[ZhejiangAdapter] = []
    yield made
    for adapter in made:
        adapter.close()


def _adapter(made: list[ZhejiangAdapter], box: ZhejiangSandbox, **options: object) -> ZhejiangAdapter:
    adapter = ZhejiangAdapter(box.url, trust=box.trust, **options)  # type: ignore[arg-type]
    made.append(adapter)
    return adapter


def _generate(name: str, n: int = N, seed: int = 11, start: datetime = START, end: datetime = END) -> pa.Table:
    return generate(name, "zhejiang", n, seed=seed, start=start, end=end)


def _pull(
    adapter: ZhejiangAdapter, name: str, landing: Path, since: datetime | None = None, end: datetime = LATER
) -> pa.Table:
    request = PullRequest(name, Window(START - timedelta(days=1), end), since)
    tables = list(adapter.pull(request, Landing(landing)))
    return pa.concat_tables(tables, promote_options="default") if tables else dataset(name).schema.empty_table()


def _ordered(table: pa.Table, name: str) -> pa.Table:
    ds = dataset(name)
    table = table.select(ds.schema.names)
    keys = ["updated_at", ds.key, *[n for n in ds.schema.names if n not in ("updated_at", ds.key)]]
    return table.sort_by([(k, "ascending") for k in keys])


def _clean(table: pa.Table, n: int) -> pa.Table:
    return table.filter(pc.is_null(table.column(DEFECT_COLUMN))).slice(0, n)


@pytest.mark.parametrize("name", DATASETS)
def test_pull_returns_every_seeded_record(
    sandbox: ZhejiangSandbox, adapters: list[ZhejiangAdapter], tmp_path: Path, name: str
) -> None:
    pulled = _pull(_adapter(adapters, sandbox), name, tmp_path / "landing")

    assert pulled.schema == dataset(name).schema
    assert pulled.num_rows == N
    assert _ordered(pulled, name).equals(_ordered(_generate(name), name))
    times = pulled.column("updated_at")
    assert pc.all(pc.greater_equal(times.slice(1), times.slice(0, len(times) - 1))).as_py()


def test_pull_reads_in_bounded_chunks(
    sandbox: ZhejiangSandbox, adapters: list[ZhejiangAdapter], tmp_path: Path
) -> None:
    adapter = _adapter(adapters, sandbox, chunk_rows=300)
    landing = Landing(tmp_path / "landing")
    request = PullRequest("e_license", Window(START, LATER), None)

    tables = list(adapter.pull(request, landing))

    assert [t.num_rows for t in tables] == [300] * 6 + [200]
    assert len(landing.files) == 7


def test_incremental_window_in_local_time(
    sandbox: ZhejiangSandbox, adapters: list[ZhejiangAdapter], tmp_path: Path
) -> None:
    generated = _generate("e_license")
    times = generated.column("updated_at")
    since, end = times[300].as_py(), times[1700].as_py()

    pulled = _pull(_adapter(adapters, sandbox), "e_license", tmp_path / "l", since=since, end=end)

    expected = generated.filter(pc.and_(pc.greater(times, times[300]), pc.less(times, times[1700])))
    assert _ordered(pulled, "e_license").equals(_ordered(expected, "e_license"))


def test_overlap_delivers_late_rows_and_newer_versions_once(
    sandbox: ZhejiangSandbox, adapters: list[ZhejiangAdapter], tmp_path: Path
) -> None:
    adapter = _adapter(adapters, sandbox, overlap=OVERLAP, delivered=DeliveryLedger(tmp_path / "state"))
    first = _pull(adapter, "e_license", tmp_path / "l1")
    watermark = pc.max(first.column("updated_at")).as_py()
    late = _clean(_generate("e_license", n=40, seed=21, start=watermark - timedelta(minutes=5),
                            end=watermark - timedelta(minutes=1)), 2)
    delivered = _clean(_generate("e_license"), 1)
    newer = delivered.set_column(
        delivered.schema.get_field_index("updated_at"), "updated_at",
        pa.array([watermark + timedelta(minutes=1)], delivered.schema.field("updated_at").type),
    )
    sandbox.seed("e_license", late)
    sandbox.seed("e_license", newer)

    second = _pull(adapter, "e_license", tmp_path / "l2", since=watermark, end=LATER + timedelta(days=1))
    latest = pc.max(second.column("updated_at")).as_py()
    third = _pull(adapter, "e_license", tmp_path / "l3", since=latest, end=LATER + timedelta(days=2))

    assert first.num_rows == N
    expected = pa.concat_tables([late, newer]).drop_columns([DEFECT_COLUMN])
    assert _ordered(second, "e_license").equals(_ordered(expected, "e_license"))
    assert third.num_rows == 0


def test_soft_deletes_become_deletions(
    sandbox: ZhejiangSandbox, adapters: list[ZhejiangAdapter], tmp_path: Path
) -> None:
    keys = _clean(_generate("enterprise_registration"), 4).column("uscc").to_pylist()
    deleted_at = LATER - timedelta(days=1)
    sandbox.delete("enterprise_registration", keys, deleted_at)
    adapter = _adapter(adapters, sandbox)
    request = PullRequest("enterprise_registration", Window(START, LATER), START)

    records = _pull(adapter, "enterprise_registration", tmp_path / "l", since=START)
    deletions = pa.concat_tables(list(adapter.deletions(request)))

    assert not pc.any(pc.is_in(records.column("uscc"), value_set=pa.array(keys))).as_py()
    assert sorted(deletions.column("uscc").to_pylist()) == sorted(keys)
    assert set(deletions.column(DELETED_AT).to_pylist()) == {deleted_at}


def test_a_view_missing_a_column_names_it(
    sandbox: ZhejiangSandbox, adapters: list[ZhejiangAdapter], tmp_path: Path
) -> None:
    mapping = sandbox.mapping.dataset("e_license")
    kept = ", ".join(c for c in [*mapping.native_columns, "SCBZ"] if c != "CYRZJHM")
    engine = sa.create_engine(sandbox.url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP VIEW {mapping.source}"))
        conn.execute(sa.text(f"CREATE VIEW {mapping.source} AS SELECT {kept} FROM {BASE_TABLES['e_license']}"))
    engine.dispose()

    with pytest.raises(SourceFormatError) as caught:
        _pull(_adapter(adapters, sandbox), "e_license", tmp_path / "landing")

    assert caught.value.source == "V_DZZZ_GX"
    assert "CYRZJHM" in str(caught.value)


def test_a_connection_the_server_dropped_is_transient_and_the_retry_reconnects(
    sandbox: ZhejiangSandbox, adapters: list[ZhejiangAdapter], tmp_path: Path
) -> None:
    url = sa.make_url(sandbox.url)
    postgres = url.get_backend_name() == "postgresql"
    tag = f"zj_adapter_{uuid.uuid4().hex[:12]}"
    if postgres:  # name the adapter's sessions so only they are killed (the server is shared)
        url = url.update_query_dict({"application_name": tag})
    adapter = ZhejiangAdapter(url.render_as_string(hide_password=False), trust=sandbox.trust)
    adapters.append(adapter)
    assert _pull(adapter, "e_license", tmp_path / "l1").num_rows == N  # leaves a pooled connection
    engine = sa.create_engine(sandbox.url, isolation_level="AUTOCOMMIT")
    # The server drops the adapter's sessions, as a failover or a DBA's kill would.
    find = (
        f"SELECT pid FROM pg_stat_activity WHERE application_name = '{tag}'"
        if postgres
        else "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"
    )
    with engine.connect() as conn:
        sessions = [row[0] for row in conn.execute(sa.text(find))]
        assert sessions, "the adapter's session was not found"
        for session in sessions:
            conn.execute(sa.text(f"SELECT pg_terminate_backend({session})" if postgres else f"KILL {session}"))
    engine.dispose()

    with pytest.raises(TransientError, match="Zhejiang|V_DZZZ_GX"):
        _pull(adapter, "e_license", tmp_path / "l2")
    assert _pull(adapter, "e_license", tmp_path / "l3").num_rows == N  # what Airflow's retry would do


def test_rows_without_an_update_time_are_pulled_signed_and_kept_as_sent(
    sandbox: ZhejiangSandbox, adapters: list[ZhejiangAdapter], tmp_path: Path
) -> None:
    """Issue 16 B-1 on the real servers: NULL or malformed GXSJ rows are in the undated signed batch (LIKE,
    NULL ordering and the digest agree on MariaDB and PostgreSQL), and delivered once, as sent."""
    import json

    from exchange import intake
    from exchange.errors import SourceAuthenticityError

    table = _generate("e_license")
    keys = table.column("license_id").to_pylist()
    engine = sa.create_engine(sandbox.url)
    base = BASE_TABLES["e_license"]
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {base} SET GXSJ = NULL WHERE ZZBH = :k"), {"k": keys[0]})
        conn.execute(sa.text(f"UPDATE {base} SET GXSJ = 'soon' WHERE ZZBH = :k"), {"k": keys[1]})
    sandbox.resign("e_license")
    end = datetime.now(UTC) + timedelta(minutes=1)
    pulled = _pull(_adapter(adapters, sandbox), "e_license", tmp_path / "l1", end=end)
    assert pulled.num_rows == N
    sent = {k: json.loads(v)["updated_at"]["sent"] for k, v in zip(
        pulled.column("license_id").to_pylist(), pulled.column(intake.AS_SENT).to_pylist(), strict=True) if v}
    assert sent == {keys[0]: None, keys[1]: "soon"}
    with engine.begin() as conn:  # changed after Zhejiang signed it: refused, like a changed day
        conn.execute(sa.text(f"UPDATE {base} SET CYRXM = 'x' WHERE ZZBH = :k"), {"k": keys[0]})
    engine.dispose()
    with pytest.raises(SourceAuthenticityError, match="rows without a readable update time"):
        _pull(_adapter(adapters, sandbox), "e_license", tmp_path / "l2", end=end)
