"""Zhejiang's ADBC reader against the real PostgreSQL server on loopback: the same pull as the row path.

The server comes from EXCHANGE_TEST_POSTGRES_URL (loopback default); unreachable skips on a laptop and fails
under CI, as in test_adapter_zhejiang_servers.py. Each test seeds a schema of its own and drops it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.base import Landing, PullRequest, Window
from adapters.zhejiang.adapter import ZhejiangAdapter
from adapters.zhejiang.arrow_read import ArrowReader
from adapters.zhejiang.sandbox import ZhejiangSandbox, create
from exchange.synthetic import generate

pytestmark = pytest.mark.integration

VARIABLE, DEFAULT = "EXCHANGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START = datetime(2024, 5, 1, tzinfo=UTC)
DATASETS = ("e_license", "enterprise_registration")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[ZhejiangSandbox]:
    server = sa.make_url(os.environ.get(VARIABLE, DEFAULT))
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"zj_arrow_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {name}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unreachable ({exc}); set {VARIABLE}")
        pytest.skip(f"PostgreSQL unreachable ({exc}); set {VARIABLE}")
    url = server.update_query_dict({"options": f"-csearch_path={name}"})
    box = create(tmp_path / "zhejiang", url.render_as_string(hide_password=False))
    try:
        for ds in DATASETS:
            box.seed(ds, generate(ds, "zhejiang", 1200, seed=3, start=START, end=START + timedelta(days=3)))
        yield box
    finally:
        box.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        admin.dispose()


@pytest.mark.parametrize("name", DATASETS)
def test_the_arrow_pull_equals_the_row_pull_on_postgres(sandbox: ZhejiangSandbox, tmp_path: Path, name: str) -> None:
    pulled = {}
    for arrow in (True, False):
        adapter = ZhejiangAdapter(sandbox.url, trust=sandbox.trust, chunk_rows=250, arrow=arrow)
        request = PullRequest(name, Window(START - timedelta(days=1), START + timedelta(days=10)), None)
        landing = Landing(tmp_path / f"arrow-{arrow}")
        try:
            tables = list(adapter.pull(request, landing)) + list(adapter.deletions(request, landing))
        finally:
            adapter.close()
        files = {p.name: p.read_bytes() for p in sorted(landing.root.iterdir())}
        pulled[arrow] = (tables, files, landing.signatures)
    (fast, fast_files, fast_signed), (rows, row_files, row_signed) = pulled[True], pulled[False]
    assert len(fast) == len(rows) > 0
    for a, b in zip(fast, rows, strict=True):
        assert a.schema == b.schema
        assert a.equals(b)
    assert fast_files == row_files
    assert fast_signed == row_signed


def test_postgres_views_come_through_adbc_whole(sandbox: ZhejiangSandbox) -> None:
    """Not a silent fallback: PostgreSQL's text and float8 columns are read by ADBC."""
    reader = ArrowReader(sa.make_url(sandbox.url))
    for view in ("V_DZZZ_GX", "V_SCZTDJ_GX"):
        read = list(reader.tables(view, f"SELECT * FROM {view} WHERE GXSJ > :since", {"since": "2000"}, 500))
        assert sum(t.num_rows for t in read) == 1200
