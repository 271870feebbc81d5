"""Shanghai's adapter against its sandbox: a real HTTP server on 127.0.0.1, no mocks."""

from __future__ import annotations

import hashlib
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from adapters.base import Landing, PullRequest, Window, adapter_for, sandbox_for
from adapters.shanghai.adapter import PAGE_SIZE, ShanghaiAdapter, build
from adapters.shanghai.auth import ClientCredentials, StaticToken
from adapters.shanghai.retry import RetryPolicy, retry_after_seconds
from adapters.shanghai.sandbox import Fault, ShanghaiSandbox, create
from exchange.config import ExchangeSettings
from exchange.datasets import DATASETS as CANONICAL_DATASETS
from exchange.datasets import TIMESTAMP, dataset
from exchange.errors import SourceAuthError, SourceFormatError, TerminalError, TransientError
from exchange.synthetic import DEFECT_COLUMN, generate

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 1, tzinfo=CST)
END = datetime(2026, 11, 4, tzinfo=CST)
N = 2000
PAGES = -(-N // PAGE_SIZE)  # the adapter asks for the API's maximum page size
DATASETS = tuple(CANONICAL_DATASETS)  # every province provides every dataset


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
    return pa.concat_tables(tables, promote_options="default") if tables else dataset(name).schema.empty_table()


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
    assert max(t.num_rows for t in tables) <= PAGE_SIZE  # bounded chunks: one page each
    assert pulled.num_rows == N  # defective records pass through; the contract quarantines them
    assert pc.sum(pc.is_valid(seeded.column(DEFECT_COLUMN))).as_py() > 0
    expected = seeded.drop_columns([DEFECT_COLUMN])
    assert _sorted(pulled).equals(_sorted(expected))
    # Source order: update time never goes backwards.
    times = pulled.column("updated_at")
    assert pc.all(pc.greater_equal(times[1:], times[:-1])).as_py()

    assert [f.name for f in landing.files] == [f"page-{i:05d}.json" for i in range(1, PAGES + 1)]
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
    assert next(chunks).num_rows == PAGE_SIZE
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
    sleeps: list[float] = []
    adapter = ShanghaiAdapter(
        sandbox.url, sandbox.token, trust=sandbox.trust, retry=RetryPolicy(max_retries=2, sleep=sleeps.append)
    )
    request = PullRequest("e_license", Window(START, END), None)
    sandbox.fail_next_request(503, times=3)
    with pytest.raises(TransientError, match=r"503.*gave up after 3 attempts"):
        list(adapter.pull(request, Landing(tmp_path / "l1")))
    assert len(sleeps) == 2
    assert len(list(adapter.pull(request, Landing(tmp_path / "l2")))) == 1  # the next run works
    sandbox.stop()
    with pytest.raises(TransientError, match="unreachable"):
        list(adapter.pull(request, Landing(tmp_path / "l3")))
    assert len(sleeps) == 4  # network failures are retried too


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
    # The hub's home is the sandbox root, whose keyring holds the office key the pages are signed with.
    adapter = adapter_for("shanghai", ExchangeSettings(home=sandbox.root))
    assert set(adapter.datasets()) == set(DATASETS)
    request = PullRequest("enterprise_registration", Window(START, END), None)
    assert sum(t.num_rows for t in adapter.pull(request, Landing(tmp_path / "l"))) == 20
    assert isinstance(sandbox_for("shanghai", tmp_path / "other"), ShanghaiSandbox)


# --- OAuth2 client credentials, retries, timeouts ---------------------------------------------------------


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _no_sleep(sleeps: list[float], max_retries: int = 5, random: float = 0.5) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, sleep=sleeps.append, random=lambda: random)


def _request(name: str = "e_license") -> PullRequest:
    return PullRequest(name, Window(START, END), None)


def test_client_credentials_fetch_one_token_for_a_whole_pull(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license"))
    adapter = sandbox.oauth_adapter()

    tables = list(adapter.pull(_request(), Landing(tmp_path / "l")))

    assert sum(t.num_rows for t in tables) == N
    assert len(tables) == PAGES > 1
    assert sandbox.tokens_issued == 1
    assert isinstance(adapter.credentials, ClientCredentials)


def test_a_token_is_refreshed_before_it_expires(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license"))
    clock = FakeClock()
    adapter = sandbox.oauth_adapter(clock=clock)
    chunks = adapter.pull(_request(), Landing(tmp_path / "l"))
    next(chunks)
    clock.now += sandbox.token_ttl - 10  # inside the refresh leeway: the cached token is not used again

    rest = list(chunks)

    assert len(rest) == PAGES - 1 > 0
    assert sandbox.tokens_issued == 2


def test_a_token_expired_by_the_server_mid_run_is_refreshed_once(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license"))
    chunks = sandbox.oauth_adapter().pull(_request(), Landing(tmp_path / "l"))
    first = next(chunks)
    sandbox.expire_tokens()  # e.g. the gateway restarted: our cached token now gets a 401

    rest = list(chunks)

    assert first.num_rows + sum(t.num_rows for t in rest) == N
    assert sandbox.tokens_issued == 2


def test_a_401_after_a_fresh_token_is_an_auth_error(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=10))
    sandbox.fail_next_request(401, times=2)

    with pytest.raises(SourceAuthError, match="EXCHANGE_SHANGHAI_CLIENT_ID"):
        list(sandbox.oauth_adapter().pull(_request(), Landing(tmp_path / "l")))
    assert sandbox.tokens_issued == 2  # one refresh, not a loop


def test_wrong_client_secret_names_the_settings(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    source = ClientCredentials(sandbox.url + "/oauth/token", sandbox.client_id, "not-the-secret")
    adapter = ShanghaiAdapter(sandbox.url, source)

    with pytest.raises(SourceAuthError, match=r"invalid_client.*EXCHANGE_SHANGHAI_CLIENT_SECRET"):
        list(adapter.pull(_request(), Landing(tmp_path / "l")))
    assert sandbox.tokens_issued == 0


def test_429_waits_at_least_retry_after(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=10))
    sleeps: list[float] = []
    adapter = ShanghaiAdapter(sandbox.url, sandbox.token, trust=sandbox.trust, retry=_no_sleep(sleeps))
    sandbox.fail_next_request(429, retry_after="7")

    tables = list(adapter.pull(_request(), Landing(tmp_path / "l")))

    assert sum(t.num_rows for t in tables) == 10
    assert sleeps == [7.0]


def test_a_retry_after_beyond_the_bound_fails_fast(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sleeps: list[float] = []
    adapter = ShanghaiAdapter(sandbox.url, sandbox.token, trust=sandbox.trust, retry=_no_sleep(sleeps))
    sandbox.fail_next_request(429, retry_after="3600")

    with pytest.raises(TransientError, match="retry after 3600 s"):
        list(adapter.pull(_request(), Landing(tmp_path / "l")))
    assert sleeps == []


def test_5xx_backoff_is_exponential_jittered_and_bounded(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    sandbox.seed("e_license", _records("e_license", n=10))
    sleeps: list[float] = []
    adapter = ShanghaiAdapter(sandbox.url, sandbox.token, trust=sandbox.trust, retry=_no_sleep(sleeps, random=0.5))
    for status in (503, 502, 500, 504):
        sandbox.fail_next_request(status)

    assert sum(t.num_rows for t in adapter.pull(_request(), Landing(tmp_path / "l"))) == 10
    assert sleeps == [0.25, 0.5, 1.0, 2.0]  # random() * base * 2**n with base 0.5, random 0.5

    policy = RetryPolicy(base=1, cap=8, random=lambda: 1.0)
    assert [policy.delay(n, None) for n in range(6)] == [1, 2, 4, 8, 8, 8]
    assert RetryPolicy(random=lambda: 0.0).delay(3, None) == 0.0  # full jitter reaches zero


class TimesOut(httpx.BaseTransport):
    """The real HTTP transport, except that the next `n` records requests time out as a slow answer would."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/records") and self.n:
            self.n -= 1
            raise httpx.ReadTimeout("timed out (injected)", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_slow_answer_times_out_and_is_retried(sandbox: ShanghaiSandbox, tmp_path: Path) -> None:
    """Which answers are "too slow" is the test's choice, not the machine's: the transport says so."""
    sandbox.seed("e_license", _records("e_license", n=10))
    sleeps: list[float] = []

    def adapter(transport: TimesOut) -> ShanghaiAdapter:
        return ShanghaiAdapter(sandbox.url, sandbox.token, retry=_no_sleep(sleeps, max_retries=1),
                               transport=transport, trust=sandbox.trust)

    assert sum(t.num_rows for t in adapter(TimesOut(1)).pull(_request(), Landing(tmp_path / "l1"))) == 10
    assert len(sleeps) == 1

    with pytest.raises(TransientError, match="timed out"):
        list(adapter(TimesOut(2)).pull(_request(), Landing(tmp_path / "l2")))
    assert len(sleeps) == 2  # one retry, then the error


def test_the_configured_timeout_ends_the_wait_for_an_answer_that_never_comes(sandbox: ShanghaiSandbox,
                                                                             tmp_path: Path) -> None:
    """On a real socket: the server holds the answer until the test ends, so only the timeout can end it."""
    sandbox.seed("e_license", _records("e_license", n=10))
    timeout = httpx.Timeout(60.0, read=0.2)  # connecting may take long on a loaded machine; the answer never comes
    adapter = ShanghaiAdapter(sandbox.url, sandbox.token, retry=_no_sleep([], max_retries=0), timeout=timeout,
                              trust=sandbox.trust)
    assert adapter._client().timeout == timeout
    hold = threading.Event()
    sandbox.inject(Fault(hold=hold))
    try:
        with pytest.raises(TransientError, match="timed out: ReadTimeout"):
            list(adapter.pull(_request(), Landing(tmp_path / "l")))
    finally:
        hold.set()


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 3, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Tue, 03 Nov 2026 08:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Tue, 03 Nov 2026 07:59:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_build_prefers_client_credentials(
    sandbox: ShanghaiSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sandbox.oauth_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EXCHANGE_SHANGHAI_API_TOKEN", sandbox.token)
    monkeypatch.setenv("EXCHANGE_SHANGHAI_MAX_RETRIES", "2")
    sandbox.seed("e_license", _records("e_license", n=20))

    adapter = build(ExchangeSettings(home=sandbox.root))  # a hub trusting the sandbox's office key

    assert isinstance(adapter.credentials, ClientCredentials)
    assert adapter.credentials.token_url == sandbox.url + "/oauth/token"
    assert adapter.retry.max_retries == 2
    assert sum(t.num_rows for t in adapter.pull(_request(), Landing(tmp_path / "l"))) == 20
    assert sandbox.tokens_issued == 1
    assert "client_secret" not in repr(ExchangeSettings(home=tmp_path).shanghai_client_secret)

    monkeypatch.delenv("EXCHANGE_SHANGHAI_CLIENT_SECRET")
    with pytest.raises(TerminalError, match="both"):
        build(ExchangeSettings(home=tmp_path))
    monkeypatch.delenv("EXCHANGE_SHANGHAI_CLIENT_ID")
    assert isinstance(build(ExchangeSettings(home=tmp_path)).credentials, StaticToken)
