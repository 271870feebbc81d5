"""Shanghai's adapter against its sandbox: a real HTTP server on 127.0.0.1, no mocks."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from adapters.base import Landing, PullRequest, Window, adapter_for, sandbox_for
from adapters.shanghai.adapter import build
from adapters.shanghai.sandbox import ShanghaiSandbox, create
from exchange.config import ExchangeSettings
from exchange.datasets import TIMESTAMP, dataset
from exchange.errors import SourceAuthError, SourceFormatError, TerminalError, TransientError
from exchange.synthetic import DEFECT_COLUMN, generate

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 1, tzinfo=CST)
END = datetime(2026, 11, 4, tzinfo=CST)
N = 2000
DATASETS = ["e_license", "enterprise_registration"]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[ShanghaiSandbox]:
    box = create(tmp_path / "shanghai")
    box.start()
    yield box
    box.stop()


def _records(name: str, n: int = N, seed: int = 7, start: datetime = START, end: datetime = END) -> pa.Table:
    return generate(name, "shanghai", n, seed=seed, start=start, end=end)


def _pull(
    box: ShanghaiSandbox, name: str, landing: Path, since: datetime | None, end: datetime = END
) -> pa.Table:
    tables = list(box.adapter().pull(PullRequest(name, Window(START, end), since), Landing(landing)))
    return pa.concat_tables(tables) if tables else dataset(name).schema.empty_table()


def _sorted(table: pa.Table) -> pa.Table:
    """Order-independent comparison: the API orders ties in update time by key, the generator does not."""
    return table.sort_by([(c, "ascending") for c in table.column_names])


@pytest.mark.parametrize("name", DATASETS)
def test_full_pull_returns_every_seeded_record(sandbox: ShanghaiSandbox, tmp_path: Path, name: str) -> None:
    seeded = _records(name)
    sandbox.seed(name, seeded)
    landing = Landing(tmp_path / "landing")
    tables = list(sandbox.adapter().pull(PullRequest(name, Window(START, END), None), landing))

    pulled = pa.concat_tables(tables)
    assert pulled.schema == dataset(name).schema
    assert max(t.num_rows for t in tables) <= 500  # bounded chunks: one page each
    assert pulled.num_rows == N  # defective records pass through; the contract quarantines them
    assert pc.sum(pc.is_valid(seeded.column(DEFECT_COLUMN))).as_py() > 0
    expected = seeded.drop_columns([DEFECT_COLUMN])
    assert _sorted(pulled).equals(_sorted(expected))
    # Source order: update time never goes backwards.
    times = pulled.column("updated_at")
    assert pc.all(pc.greater_equal(times[1:], times[:-1])).as_py()

    assert [f.name for f in landing.files] == [f"page-{i:05d}.json" for i in range(1, 5)]
    for landed in landing.files:
        assert hashlib.sha256(landed.path.read_bytes()).hexdigest() == landed.sha256
        assert landed.path.stat().st_size == landed.size


@pytest.mark.parametrize("name", DATASETS)
def test_incremental_pulls(sandbox: ShanghaiSandbox, tmp_path: Path, name: str) -> None:
    sandbox.seed(name, _records(name))
    first = _pull(sandbox, name, tmp_path / "l1", None)
    watermark = pc.max(first.column("updated_at")).as_py()

    assert _pull(sandbox, name, tmp_path / "l2", watermark).num_rows == 0

    later_end = END + timedelta(days=1)
    more = _records(name, n=300, seed=8, start=END, end=later_end)
    sandbox.seed(name, more)
    new = _pull(sandbox, name, tmp_path / "l3", watermark, end=later_end)
    assert _sorted(new).equals(_sorted(more.drop_columns([DEFECT_COLUMN])))


def test_window_end_is_exclusive(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    seeded = _records("e_license")
    sandbox.seed("e_license", seeded)
    cut = seeded.column("updated_at")[N // 2].as_py()  # a real record's update time: excluded
    pulled = _pull(sandbox, "e_license", tmp_path / "l", None, end=cut)
    expected = seeded.filter(pc.less(seeded.column("updated_at"), pa.scalar(cut, TIMESTAMP)))
    assert pulled.num_rows == expected.num_rows < N
    assert _sorted(pulled).equals(_sorted(expected.drop_columns([DEFECT_COLUMN])))


def test_since_is_exclusive(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    seeded = _records("e_license")
    sandbox.seed("e_license", seeded)
    since = seeded.column("updated_at")[100].as_py()
    pulled = _pull(sandbox, "e_license", tmp_path / "l", since)
    bound = pa.scalar(since, TIMESTAMP)
    assert pc.all(pc.greater(pulled.column("updated_at"), bound)).as_py()
    later = pc.sum(pc.greater(seeded.column("updated_at"), bound))
    assert pulled.num_rows == later.as_py()


def test_missing_or_wrong_token_is_an_auth_error(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    from adapters.shanghai.adapter import ShanghaiAdapter

    sandbox.seed("e_license", _records("e_license", n=10))
    request = PullRequest("e_license", Window(START, END), None)
    for token in ("wrong-token", ""):
        with pytest.raises(SourceAuthError, match="401"):
            list(ShanghaiAdapter(sandbox.url, token).pull(request, Landing(tmp_path / "l1")))
    response = httpx.get(f"{sandbox.url}/api/v1/e-licenses/records")
    assert response.status_code == 401


def test_corrupt_page_names_the_page(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license"))
    adapter = sandbox.adapter()
    chunks = adapter.pull(PullRequest("e_license", Window(START, END), None), Landing(tmp_path / "l"))
    assert next(chunks).num_rows == 500
    sandbox.corrupt_next_page()
    with pytest.raises(SourceFormatError) as caught:
        next(chunks)
    error = caught.value
    assert error.source.endswith("/api/v1/e-licenses/records")
    assert error.position.startswith("page 2 (cursor ")
    assert "line 1 column" in error.position
    # The corrupt body was landed before parsing, so the office can see exactly what was sent.
    assert (tmp_path / "l" / "page-00002.json").exists()


def test_server_errors_and_unreachable_server_are_transient(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=10))
    adapter = sandbox.adapter()
    request = PullRequest("e_license", Window(START, END), None)
    sandbox.fail_next_request(503)
    with pytest.raises(TransientError, match="503"):
        list(adapter.pull(request, Landing(tmp_path / "l1")))
    assert len(list(adapter.pull(request, Landing(tmp_path / "l2")))) == 1  # the retry works
    sandbox.stop()
    with pytest.raises(TransientError, match="unreachable"):
        list(adapter.pull(request, Landing(tmp_path / "l3")))


def test_seeded_data_survives_a_restart(tmp_path: Path) -> None:
    box = create(tmp_path / "sh")
    box.seed("e_license", _records("e_license", n=50))
    token = box.token
    again = create(tmp_path / "sh")
    again.start()
    try:
        assert again.token == token
        assert _pull(again, "e_license", tmp_path / "l", None).num_rows == 50
    finally:
        again.stop()
    assert stat.S_IMODE((tmp_path / "sh" / "api-token").stat().st_mode) == 0o600


def test_build_from_settings_and_env(
    sandbox: ShanghaiSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TerminalError, match="EXCHANGE_SHANGHAI_API_URL"):
        build(ExchangeSettings(home=tmp_path, shanghai_api_url=None, shanghai_api_token=None))
    with pytest.raises(TerminalError, match="EXCHANGE_SHANGHAI_API_TOKEN"):
        build(ExchangeSettings(home=tmp_path, shanghai_api_url=sandbox.url, shanghai_api_token=None))

    sandbox.seed("enterprise_registration", _records("enterprise_registration", n=20))
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    adapter = adapter_for("shanghai", ExchangeSettings(home=tmp_path))
    assert set(adapter.datasets()) == set(DATASETS)
    request = PullRequest("enterprise_registration", Window(START, END), None)
    assert sum(t.num_rows for t in adapter.pull(request, Landing(tmp_path / "l"))) == 20
    assert isinstance(sandbox_for("shanghai", tmp_path / "other"), ShanghaiSandbox)
