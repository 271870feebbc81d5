"""50 concurrent department clients against a real uvicorn server on loopback, mixing queries and checks.

Bounded in time (LOAD_SECONDS of traffic). Every response must be 200, or a deliberate 429 with
Retry-After (one department is given a tight allowance); every request must appear exactly once in the
provenance log, under the token that made it. Latency percentiles are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from exchange.access.models import Department, Grant, RowCondition
from exchange.access.registry import Registry
from exchange.api.app import CHECK, DATA, create_app
from exchange.api.ratelimit import Rate, TokenBuckets
from exchange.config import ExchangeSettings
from exchange.pipeline import Hub
from tests.unit.access_lake import clean_e_licenses, seed_lake

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 50
LOAD_SECONDS = 10.0
GREEDY = "ah.healthcare_security"  # the department given a small allowance, so 429s do happen
DEPARTMENTS = ["js.public_security", "sh.market_regulation", "zj.housing_provident_fund", GREEDY,
               "sh.public_security"]


class GreedyLimited(TokenBuckets):
    """Generous buckets for everyone but GREEDY (buckets are per department, so its 429s touch no one else)."""

    def __init__(self) -> None:
        super().__init__({DATA: Rate(200.0, 400), CHECK: Rate(200.0, 400)})
        self.greedy = TokenBuckets({DATA: Rate(0.5, 2), CHECK: Rate(0.5, 2)})

    def take(self, department: str, kind: str) -> None:
        (self.greedy if department == GREEDY else super()).take(department, kind)


@dataclass
class Served:
    url: str
    hub: Hub
    bearers: dict[str, str]
    license_ids: list[str]


@pytest.fixture
def served(home: Path) -> Iterator[Served]:
    hub = Hub(ExchangeSettings(home=home))
    table = clean_e_licenses(400, seed=21)
    seed_lake(hub, table)
    registry = Registry(hub.layout.access)
    bearers: dict[str, str] = {}
    for dep in DEPARTMENTS:
        registry.add_department(Department(id=dep, name=dep, province="jiangsu"))
        registry.add_grant(Grant(
            id=f"g-{dep}", department=dep, dataset="e_license", columns=["license_id", "region_code", "status"],
            row_filter=[RowCondition(column="region_code", op="prefix_in", values=["32"])], purpose="load test",
            legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
            expires_on=datetime.now(UTC).date() + timedelta(days=5), issued_at=datetime.now(UTC)), hub.signer)
        bearers[dep] = registry.issue_token(dep)[1]
    app = create_app(hub, buckets=GreedyLimited())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", backlog=256))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Served(f"http://127.0.0.1:{port}", hub, bearers, [str(x) for x in table["license_id"].to_pylist()[:50]])
    server.should_exit = True
    thread.join(timeout=20)


@dataclass
class Call:
    department: str
    kind: str
    status: int
    seconds: float
    retry_after: str | None


async def _client(n: int, served: Served, client: httpx.AsyncClient, stop: float, calls: list[Call]) -> None:
    department = DEPARTMENTS[n % len(DEPARTMENTS)]
    headers = {"Authorization": f"Bearer {served.bearers[department]}"}
    i = 0
    while time.monotonic() < stop:
        kind = "query" if (n + i) % 3 == 0 else "check"
        started = time.perf_counter()
        if kind == "query":
            response = await client.post("/v1/query", headers=headers,
                                         json={"sql": "SELECT status, count(*) AS n FROM e_license GROUP BY ALL"})
        else:
            response = await client.post("/v1/check/e-license", headers=headers,
                                         json={"license_id": served.license_ids[(n * 7 + i) % 50]})
        calls.append(Call(department, kind, response.status_code, time.perf_counter() - started,
                          response.headers.get("retry-after")))
        if response.status_code == 429:
            await asyncio.sleep(min(float(response.headers["retry-after"]), 1.0))
        i += 1


async def _run(served: Served) -> list[Call]:
    calls: list[Call] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=served.url, timeout=120, limits=limits) as client:
        stop = time.monotonic() + LOAD_SECONDS
        await asyncio.gather(*(_client(n, served, client, stop, calls) for n in range(CLIENTS)))
    return calls


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def test_fifty_concurrent_clients_no_errors_every_request_logged_once(served: Served) -> None:
    before = len(served.hub.log.read())
    started = time.monotonic()
    calls = asyncio.run(_run(served))
    elapsed = time.monotonic() - started

    statuses = Counter((c.kind, c.status) for c in calls)
    ok = [c.seconds for c in calls if c.status == 200]
    print(f"\n{len(calls)} requests from {CLIENTS} clients in {elapsed:.1f} s: {dict(statuses)}; "
          f"p50 {_pct(ok, 50) * 1000:.0f} ms, p99 {_pct(ok, 99) * 1000:.0f} ms")
    for kind in ("query", "check"):
        times = [c.seconds for c in calls if c.kind == kind and c.status == 200]
        print(f"  {kind}: {len(times)} ok, p50 {_pct(times, 50) * 1000:.0f} ms, p99 {_pct(times, 99) * 1000:.0f} ms")

    unexpected = [c for c in calls if c.status not in (200, 429) or (c.status == 429 and c.department != GREEDY)]
    assert not unexpected, unexpected[:5]
    assert all(c.retry_after and int(c.retry_after) >= 1 for c in calls if c.status == 429)
    assert statuses[("query", 200)] > 0 and statuses[("check", 200)] > 0
    assert any(c.status == 429 for c in calls), "the greedy department should have been limited"

    entries = served.hub.log.read()[before:]
    assert len(entries) == len(calls), "every request is logged exactly once"
    by_action = Counter(e.action for e in entries)
    assert by_action["query"] == statuses[("query", 200)]
    assert by_action["license_check"] == statuses[("check", 200)]
    assert by_action["access_denied"] == sum(1 for c in calls if c.status == 429)
    token_of = {bearer.split(".")[0]: dep for dep, bearer in served.bearers.items()}
    assert Counter(token_of[e.details["token_id"]] for e in entries) == Counter(c.department for c in calls)
