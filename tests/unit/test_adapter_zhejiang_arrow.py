"""Zhejiang's Arrow reader (ADBC) gives exactly what the DBAPI row path gives, or hands the query back to it.

Real SQLite files, no mocks: the same sandbox pulled both ways must give the same canonical tables, the same
landed bytes and the same verified signatures; and for any column contents SQLite can hold, every chunk the
reader does return equals the row path's chunk (types and values) and hashes alike.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import Landing, PullRequest, Window
from adapters.zhejiang import batches
from adapters.zhejiang.adapter import ZhejiangAdapter, _native_table
from adapters.zhejiang.arrow_read import ArrowReader, Unreadable
from adapters.zhejiang.sandbox import ZhejiangSandbox, create
from exchange.datasets import DATASETS
from exchange.synthetic import generate

START = datetime(2024, 5, 1, tzinfo=UTC)
LATER = START + timedelta(days=10)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> ZhejiangSandbox:
    box = create(tmp_path_factory.mktemp("zj") / "zhejiang")
    for name in DATASETS:
        box.seed(name, generate(name, "zhejiang", 1500, seed=5, start=START, end=START + timedelta(days=3)))
    return box


def _pull_both_ways(
    box: ZhejiangSandbox, name: str, tmp: Path, chunk_rows: int
) -> list[tuple[list[pa.Table], Landing]]:
    out = []
    for arrow in (True, False):
        adapter = ZhejiangAdapter(box.url, trust=box.trust, chunk_rows=chunk_rows, arrow=arrow)
        request = PullRequest(name, Window(START - timedelta(days=1), LATER), None)
        landing = Landing(tmp / f"arrow-{arrow}")
        tables = list(adapter.pull(request, landing))
        tables += list(adapter.deletions(request, landing))
        adapter.close()
        out.append((tables, landing))
    return out


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("chunk_rows", [50_000, 97])
def test_the_arrow_pull_equals_the_row_pull(sandbox: ZhejiangSandbox, tmp_path: Path, name: str,
                                            chunk_rows: int) -> None:
    (fast, fast_landing), (rows, rows_landing) = _pull_both_ways(sandbox, name, tmp_path, chunk_rows)
    assert len(fast) == len(rows)
    for a, b in zip(fast, rows, strict=True):
        assert a.schema == b.schema
        assert a.equals(b)
    landed = sorted(p.name for p in fast_landing.root.iterdir())
    assert landed == sorted(p.name for p in rows_landing.root.iterdir())
    for file in landed:  # byte for byte: the landing copy (and so the manifest's digests) do not change
        assert (fast_landing.root / file).read_bytes() == (rows_landing.root / file).read_bytes(), file
    assert fast_landing.signatures == rows_landing.signatures


def test_the_e_license_view_is_read_by_the_arrow_reader(sandbox: ZhejiangSandbox) -> None:
    """Not a silent fallback: the benchmark's view comes through ADBC whole."""
    sql = "SELECT ZZBH, ZZLX, CYRXM, CYRZJHM, FZJG, XZQHDM, FZRQ, YXQZ, ZZZT, GXSJ, SCBZ FROM V_DZZZ_GX"
    read = list(ArrowReader(sa.make_url(sandbox.url)).tables("V_DZZZ_GX", sql, {}, 500))
    assert sum(t.num_rows for t in read) == 1500
    assert [t.num_rows for t in read] == [500, 500, 500]


_VALUES = st.one_of(
    st.none(), st.integers(-(2**62), 2**62), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6), st.sampled_from(["壹佰万元", "1.5", "3", ""]),
)
_DECLARED = ("VARCHAR(20)", "TEXT", "DOUBLE", "REAL", "NUMERIC", "INTEGER", "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    declared=st.lists(st.sampled_from(_DECLARED), min_size=1, max_size=3),
    data=st.data(),
    chunk=st.integers(1, 7),
)
def test_every_chunk_the_reader_returns_is_the_row_paths_chunk(tmp_path: Path, declared: list[str],
                                                               data: st.DataObject, chunk: int) -> None:
    names = [f"C{i}" for i in range(len(declared))]
    rows = data.draw(st.lists(st.tuples(*[_VALUES for _ in names]), max_size=20))
    path = tmp_path / f"t{abs(hash((tuple(declared), tuple(rows), chunk)))}.sqlite"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE T ({', '.join(f'{n} {d}' for n, d in zip(names, declared, strict=True))})")
        db.execute(f"CREATE VIEW V AS SELECT {', '.join(names)} FROM T")
        db.executemany(f"INSERT INTO T VALUES ({', '.join('?' for _ in names)})", rows)
        stored = db.execute(f"SELECT {', '.join(names)} FROM V ORDER BY rowid").fetchall()
    expected = [_native_table(names, stored[i : i + chunk]) for i in range(0, len(stored), chunk)]
    sql = f"SELECT {', '.join(names)} FROM V ORDER BY rowid"
    got: list[pa.Table] = []
    try:
        for table in ArrowReader(sa.make_url(f"sqlite:///{path}")).tables("V", sql, {}, chunk):
            got.append(table)
    except Unreadable:
        pass
    assert len(got) <= len(expected)
    for number, (mine, theirs) in enumerate(zip(got, expected, strict=False)):
        assert mine.schema == theirs.schema
        assert mine.equals(theirs)
        fast, slow = hashlib.sha256(), hashlib.sha256()
        batches._feed_text(fast, [c.cast(pa.string()) for c in mine.columns])
        batches._feed(slow, stored[number * chunk : (number + 1) * chunk], len(names))
        assert fast.hexdigest() == slow.hexdigest()
