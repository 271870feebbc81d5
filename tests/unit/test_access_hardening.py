"""Access hardening: refused clients limited and aggregated before the log, lockout counting, malformed
bodies logged, a sandbox that shows no host path, query output printed as data."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from exchange.access.errors import QueryRejected
from exchange.access.models import Department, Grant
from exchange.access.query import QueryLimits, open_sandbox, run_in_sandbox
from exchange.access.registry import Registry
from exchange.api.app import create_app
from exchange.api.ratelimit import CheckFailures, FailureLimits, Rate, RateLimited, RejectedClients
from exchange.cli import app as cli
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.provenance.log import ProvenanceEntry
from tests.unit.access_lake import clean_e_licenses, seed_lake

DEPARTMENT = "js.public_security"


@pytest.fixture
def hub(home: Path) -> Hub:
    hub = Hub(ExchangeSettings(home=home))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEPARTMENT, name="江苏省公安厅", province="jiangsu"))
    return hub


def _anonymous(entries: list[ProvenanceEntry]) -> list[ProvenanceEntry]:
    return [e for e in entries if e.actor == "anonymous"]


# --- refused clients: limited per address, aggregated before the log ---------------------------------


def test_300_bad_tokens_leave_a_handful_of_entries_that_count_all_of_them(hub: Hub) -> None:
    before = len(hub.log.read())
    bad = [None, "Bearer garbage", "Bearer yrd_0123456789abcdef." + "A" * 43, "Basic anM6cHc="]
    statuses = []
    # The hub's own limits, on a clock the test moves: 10 ms per request (3 s in all, inside one minute's
    # aggregation interval), however long the requests really take on this machine.
    now = [0.0]
    settings = hub.settings
    rejected = RejectedClients(Rate(settings.api_reject_rate_per_second, settings.api_reject_burst),
                               interval=60.0, clock=lambda: now[0])
    with TestClient(create_app(hub, rejected=rejected)) as client:  # `with`: the lifespan runs, shutdown flushes
        for i in range(300):
            header = bad[i % len(bad)]
            r = client.get("/v1/me", headers={"Authorization": header} if header else None)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "rate_limited"
            now[0] += 0.01
        during = _anonymous(hub.log.read()[before:])
        elapsed = now[0]
    after = _anonymous(hub.log.read()[before:])
    burst = settings.api_reject_burst
    assert statuses[:burst] == [401] * burst and statuses[burst] == 429  # limited per address ...
    refilled = math.ceil(elapsed * settings.api_reject_rate_per_second)  # ... at its sustained rate after
    assert burst < statuses.count(401) <= burst + refilled and statuses.count(429) == 300 - statuses.count(401)
    assert len(during) == 1 and during[0].details.get("count") == 1  # the first at once, the rest counted
    assert len(after) == 2 and all(e.action == "access_denied" for e in after)  # ... and written at shutdown
    assert sum(e.details.get("count", 1) for e in after) == 300
    assert {e.details["client"] for e in after} == {"testclient"}
    reasons = after[-1].details["reasons"]
    assert "missing bearer token" in " ".join(reasons) and "malformed token" in " ".join(reasons)
    assert all("A" * 43 not in e.model_dump_json() for e in after)  # never a secret


def test_a_valid_token_is_not_refused_because_its_address_was(hub: Hub) -> None:
    _, bearer = Registry(hub.layout.access).issue_token(DEPARTMENT)
    with TestClient(create_app(hub)) as client:
        for _ in range(hub.settings.api_reject_burst + 5):
            client.get("/v1/me", headers={"Authorization": "Bearer garbage"})
        assert client.get("/v1/me", headers={"Authorization": f"Bearer {bearer}"}).status_code == 200


@pytest.mark.parametrize(("gaps", "written"), [
    # seconds between refusals of one client -> how many refusals each written entry counts (drain: last)
    ([0, 1, 1, 1], [1, 3]),
    ([0, 30, 31, 1], [1, 2, 1]),  # the third refusal comes 61 s after the first entry: the two are written
    ([0, 61, 61, 61], [1, 1, 1, 1]),  # a slow client: every refusal its own entry, still one per minute
    ([0] * 50, [1, 49]),
])
def test_refusals_are_written_at_most_once_a_minute_per_client_with_their_count(gaps: list[float],
                                                                              written: list[int]) -> None:
    now = [0.0]
    rejected = RejectedClients(Rate(1000.0, 1000), interval=60.0, clock=lambda: now[0])
    entries: list[int] = []
    times: list[float] = []
    for gap in gaps:
        now[0] += gap
        _, due = rejected.refuse("10.0.0.1", "malformed token")
        entries += [t.count for t in due]
        times += [now[0]] * len(due)
    entries += [t.count for t in rejected.drain()]
    assert entries == written and sum(entries) == len(gaps)
    assert all(b - a >= 60 for a, b in zip(times, times[1:], strict=False))


def test_a_pending_tally_is_written_on_any_later_request_after_its_minute(hub: Hub) -> None:
    now = [0.0]
    rejected = RejectedClients(Rate(1000.0, 1000), interval=60.0, clock=lambda: now[0])
    _, bearer = Registry(hub.layout.access).issue_token(DEPARTMENT)
    client = TestClient(create_app(hub, rejected=rejected), client=("10.0.0.9", 5000))
    for _ in range(5):
        client.get("/v1/me", headers={"Authorization": "Bearer garbage"})
    before = len(hub.log.read())
    now[0] += 61
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
    flushed = _anonymous(hub.log.read()[before:])
    assert [e.details["count"] for e in flushed] == [4] and flushed[0].details["client"] == "10.0.0.9"


def test_refusals_are_limited_per_client_address() -> None:
    now = [0.0]
    rejected = RejectedClients(Rate(1.0, 2), interval=60.0, clock=lambda: now[0])
    assert [rejected.refuse("a", "x")[0] is None for _ in range(3)] == [True, True, False]
    assert rejected.refuse("b", "x")[0] is None  # another address has its own allowance
    limited = rejected.refuse("a", "x")[0]
    assert isinstance(limited, RateLimited) and limited.retry_after_header == "1"


# --- failed e-licence checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(("events", "locked"), [
    # (seconds since start, token) failures -> which keys are locked right after the last one
    ([(0, "t1")] * 4, set()),
    ([(0, "t1")] * 5, {"token:t1"}),
    ([(i, f"t{i % 3}") for i in range(10)], {"department:d"}),  # spread over tokens: the department's limit
    ([(0, "t1")] * 4 + [(3601, "t1")], set()),  # failures older than the window no longer count
    ([(0, "t1")] * 5 + [(901, "t1")], {"token:t1"}),  # lockout over, but the window still holds 6: again
])
def test_failed_checks_lock_out_the_token_or_the_department(events: list[tuple[float, str]],
                                                            locked: set[str]) -> None:
    now = [0.0]
    failures = CheckFailures(FailureLimits(per_token=5, per_department=10, window_seconds=3600.0,
                                           lockout_seconds=900.0), clock=lambda: now[0])
    for at, token in events:
        now[0] = at
        failures.failed("d", token)
    tokens = {token for _, token in events}
    seen = set()
    for token in tokens:
        try:
            failures.admit("d", token)
        except RateLimited as refused:
            assert 0 < refused.retry_after <= 900
            seen.add(token)
    expect = tokens if "department:d" in locked else {k.split(":")[1] for k in locked}
    assert seen == expect
    failures.admit("other", "t9")  # another department is not affected


# --- malformed bodies ---------------------------------------------------------------------------------


def test_malformed_json_from_a_valid_token_is_a_logged_422(hub: Hub) -> None:
    _, bearer = Registry(hub.layout.access).issue_token(DEPARTMENT)
    with TestClient(create_app(hub)) as client:
        for path in ("/v1/query", "/v1/extracts", "/v1/check/e-license"):
            before = len(hub.log.read())
            r = client.post(path, content=b'{"sql": "SELECT 1",', headers={
                "Authorization": f"Bearer {bearer}", "content-type": "application/json"})
            assert r.status_code == 422 and r.json()["error"] == "invalid_request"
            entries = hub.log.read()[before:]
            assert [(e.action, e.actor, e.details["attempt"]) for e in entries] == [
                ("access_denied", DEPARTMENT, "request")]
        anonymous = client.post("/v1/query", content=b"{", headers={"content-type": "application/json"})
        assert anonymous.status_code == 401  # no token: refused as unauthenticated, counted per client


# --- the sandbox shows no host path --------------------------------------------------------------------

# Each probe either answers (and its answer must name no host path) or is refused as a sandbox escape.
PATH_PROBES = [
    "SELECT name, value FROM duckdb_settings()",
    "SELECT current_setting('home_directory'), current_setting('temp_directory')",
    "SELECT current_setting('secret_directory'), current_setting('extension_directory')",
    "SELECT current_setting('allowed_paths'), current_setting('allowed_directories')",
    "SELECT * FROM pragma_database_size()",
    "SELECT * FROM duckdb_settings() WHERE value LIKE '%/%'",
    "SELECT * FROM duckdb_databases()",
    "SELECT extension_name, install_path FROM duckdb_extensions()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM duckdb_temporary_files()",
    "SELECT * FROM pragma_platform()",
    "SELECT * FROM glob('*')",
    "SELECT * FROM read_text('.')",
]


@pytest.mark.parametrize("sql", PATH_PROBES)
def test_sandbox_settings_name_no_host_path(sql: str, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(hub.layout.home)  # the hub's working directory, as `exchange serve` would have it
    secrets = {str(hub.layout.home), str(Path.home()), os.getcwd(), os.environ.get("TMPDIR", "/tmp")}
    with open_sandbox(QueryLimits()) as sandbox:
        try:
            table = run_in_sandbox(sandbox, sql, QueryLimits())
        except QueryRejected as refused:
            assert "disabled in the query sandbox" in str(refused)
            text = str(refused)
        else:
            text = str(table.to_pylist())
        # The statements a department cannot send (PRAGMA is refused before the sandbox) name none either.
        text += str(sandbox.execute("PRAGMA database_list").fetchall())
    leaked = [s for s in secrets if s and s != "/" and s in text]
    assert not leaked, (sql, leaked, text[:300])


def test_the_sandbox_configuration_stays_locked() -> None:
    with open_sandbox(QueryLimits()) as sandbox, pytest.raises(duckdb.Error):
        sandbox.execute("SET enable_external_access = true")


# --- query output is data, never markup ------------------------------------------------------------------


@pytest.fixture
def granted(hub: Hub) -> Iterator[Hub]:
    seed_lake(hub, clean_e_licenses(20, seed=3))
    Registry(hub.layout.access).add_grant(Grant(
        id="g-markup", department=DEPARTMENT, dataset="e_license", columns=["license_id", "status"],
        purpose="test", legal_basis="test", approved_by="jiangsu.data_office",
        expires_on=datetime.now(UTC).date() + timedelta(days=3), issued_at=datetime.now(UTC)), hub.signer)
    yield hub


@pytest.mark.parametrize("value", ["[/x]", "[bold red]x[/bold red]", "[link=file:///etc/passwd]x", ":cn:", "[/]"])
def test_query_values_are_printed_as_data(granted: Hub, value: str) -> None:
    sql = f"SELECT '{value}' AS v, count(*) AS n FROM e_license"
    done = CliRunner().invoke(cli, ["query", sql, "--department", DEPARTMENT])
    assert done.exit_code == 0, done.output
    assert value in done.output
    assert granted.log.read()[-1].action == "query"
