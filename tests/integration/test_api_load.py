"""50 concurrent department clients against a real uvicorn server on loopback, mixing queries and checks.

Bounded in time: EXCHANGE_LOAD_SECONDS of traffic (default 60 under CI, as issue 6 asks, else 10), and on
until the writer has made its commits, so a slow machine stretches the run instead of failing it.
Meanwhile another process commits new snapshots through the real lake commit path, as Airflow would: it
must get the catalog while requests keep coming, and every query answer must be the one for the
snapshot it names. Every response must be 200, or a deliberate 429 with Retry-After (one department is
given a tight allowance); every request must appear exactly once in the provenance log, under the token
that made it. Throughput and latency percentiles are printed (`pytest -s` shows them); never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
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
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from tests.unit.access_lake import clean_e_licenses, seed_lake

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 50
LOAD_SECONDS = float(os.environ.get("EXCHANGE_LOAD_SECONDS", "60" if os.environ.get("CI") else "10"))
COMMITS = 3  # snapshots the writer process adds during the run
HANG_GUARD_SECONDS = 900.0  # the load goes on until the writer is done, but never longer than this
ADDED_ROWS = 40  # licences per commit (before the generator's defective ones are dropped)
QUERY = "SELECT status, count(*) AS n FROM e_license GROUP BY ALL ORDER BY status"
REPO = Path(__file__).resolve().parents[2]
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
    licences: list[dict[str, str]]  # licence id and its holder's id: a check answers only for such a pair


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
    # Keep-alive longer than the client's, so the server never closes a connection the client is reusing.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", backlog=256,
                                           timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # a hang guard: the loop ends as soon as uvicorn is up
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    pairs = [{"license_id": str(r["license_id"]), "holder_id": str(r["holder_id"])} for r in table.to_pylist()[:50]]
    yield Served(f"http://127.0.0.1:{port}", hub, bearers, pairs)
    server.should_exit = True
    thread.join(timeout=20)


@dataclass
class Call:
    department: str
    kind: str
    status: int
    seconds: float
    retry_after: str | None
    snapshot: int | None = None
    answer: str | None = None  # a query's result digest


async def _client(n: int, served: Served, client: httpx.AsyncClient, done: Callable[[], bool],
                  calls: list[Call]) -> None:
    department = DEPARTMENTS[n % len(DEPARTMENTS)]
    headers = {"Authorization": f"Bearer {served.bearers[department]}"}
    i = 0
    last = False
    while not last:
        last = done()  # one more request once the load is done: it sees the writer's last snapshot
        kind = "query" if (n + i) % 3 == 0 else "check"
        started = time.perf_counter()
        if kind == "query":
            response = await client.post("/v1/query", headers=headers, json={"sql": QUERY})
        else:
            response = await client.post("/v1/check/e-license", headers=headers,
                                         json=served.licences[(n * 7 + i) % 50])
        body = response.json() if response.status_code == 200 else {}
        snapshot = body.get("snapshot_id", body.get("check", {}).get("snapshot_id"))
        answer = json.dumps(body["rows"]) if kind == "query" and "rows" in body else None
        calls.append(Call(department, kind, response.status_code, time.perf_counter() - started,
                          response.headers.get("retry-after"), snapshot, answer))
        if response.status_code == 429:
            await asyncio.sleep(min(float(response.headers["retry-after"]), 1.0))
        i += 1


async def _run(served: Served, writer_done: Callable[[], bool]) -> list[Call]:
    """LOAD_SECONDS of traffic, and on until the writer has made all its commits (however slow they are
    on this machine; HANG_GUARD_SECONDS at most)."""
    calls: list[Call] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=5)
    started = time.monotonic()

    def done() -> bool:
        elapsed = time.monotonic() - started
        return elapsed >= HANG_GUARD_SECONDS or (elapsed >= LOAD_SECONDS and writer_done())

    async with httpx.AsyncClient(base_url=served.url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(_client(n, served, client, done, calls) for n in range(CLIENTS)))
    return calls


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


# Another process committing snapshots while the API serves, as Airflow's commits do. After each commit it
# prints the snapshot and what the load test's query must answer there (the grant admits region 32*).
_WRITER = f"""
import json, sys, time
from exchange.config import ExchangeSettings
from exchange.lake.connect import LAKE, connect
from exchange.hub import Hub
from tests.unit.access_lake import clean_e_licenses, seed_lake
hub = Hub(ExchangeSettings())
print("ready", flush=True)
pause = float(sys.stdin.readline())
for i in range({COMMITS}):
    time.sleep(pause)
    started = time.monotonic()
    seed_lake(hub, clean_e_licenses({ADDED_ROWS}, seed=100 + i), batch_id=f"writer-{{i}}")
    took = time.monotonic() - started
    with connect(hub.settings, read_only=True) as con:
        snapshot = con.execute(f"SELECT id FROM {{LAKE}}.current_snapshot()").fetchone()[0]
        rows = con.execute(f"SELECT status, count(*) FROM {{LAKE}}.e_license AT (VERSION => {{snapshot}}) "
                           "WHERE starts_with(region_code, '32') GROUP BY ALL ORDER BY status").fetchall()
    print(json.dumps({{"snapshot": snapshot, "rows": [list(r) for r in rows], "commit_seconds": took}}), flush=True)
"""


def _expected_now(hub: Hub) -> tuple[int, str]:
    with connect(hub.settings, read_only=True) as con:
        snapshot = int(con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0])  # type: ignore[index]
        rows = con.execute(f"SELECT status, count(*) FROM {LAKE}.e_license WHERE starts_with(region_code, '32') "
                           "GROUP BY ALL ORDER BY status").fetchall()
    return snapshot, json.dumps([list(r) for r in rows])


def test_fifty_concurrent_clients_no_errors_every_request_logged_once(served: Served) -> None:
    first_snapshot, first_answer = _expected_now(served.hub)
    env = {**os.environ, "EXCHANGE_HOME": str(served.hub.settings.home), "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen([sys.executable, "-c", _WRITER], cwd=REPO, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdin is not None and writer.stdout is not None
    assert writer.stdout.readline().strip() == "ready", writer.stderr.read() if writer.stderr else ""
    writer.stdin.write(f"{LOAD_SECONDS / (COMMITS + 1)}\n")
    writer.stdin.flush()

    before = len(served.hub.log.read())
    started = time.monotonic()
    calls = asyncio.run(_run(served, lambda: writer.poll() is not None))
    elapsed = time.monotonic() - started
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err[-3000:]
    commits = [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    statuses = Counter((c.kind, c.status) for c in calls)
    ok = [c.seconds for c in calls if c.status == 200]
    print(f"\n{len(calls)} requests from {CLIENTS} clients in {elapsed:.1f} s ({len(calls) / elapsed:.1f}/s): "
          f"{dict(statuses)}; p50 {_pct(ok, 50) * 1000:.0f} ms, p99 {_pct(ok, 99) * 1000:.0f} ms")
    took = ", ".join(f"{c['commit_seconds']:.2f}" for c in commits)
    print(f"  writer: {len(commits)} commits from another process, {took} s each (lock wait included)")
    for kind in ("query", "check"):
        times = [c.seconds for c in calls if c.kind == kind and c.status == 200]
        print(f"  {kind}: {len(times)} ok, p50 {_pct(times, 50) * 1000:.0f} ms, p99 {_pct(times, 99) * 1000:.0f} ms")

    unexpected = [c for c in calls if c.status not in (200, 429) or (c.status == 429 and c.department != GREEDY)]
    assert not unexpected, unexpected[:5]
    assert all(c.retry_after and int(c.retry_after) >= 1 for c in calls if c.status == 429)
    assert statuses[("query", 200)] > 0 and statuses[("check", 200)] > 0
    assert any(c.status == 429 for c in calls), "the greedy department should have been limited"

    # The writer was never shut out, and every answer is exactly its snapshot's (a consistent snapshot).
    assert len(commits) == COMMITS
    expected = {first_snapshot: first_answer, **{c["snapshot"]: json.dumps(c["rows"]) for c in commits}}
    answered = [(c.snapshot, c.answer) for c in calls if c.kind == "query" and c.status == 200]
    wrong = [(s, a) for s, a in answered if expected.get(s) != a]  # type: ignore[arg-type]
    assert not wrong, wrong[:3]
    assert {s for s, _ in answered} > {first_snapshot}, "queries never saw the writer's snapshots"

    entries = served.hub.log.read()[before:]
    assert len(entries) == len(calls), "every request is logged exactly once"
    by_action = Counter(e.action for e in entries)
    assert by_action["query"] == statuses[("query", 200)]
    assert by_action["license_check"] == statuses[("check", 200)]
    assert by_action["access_denied"] == sum(1 for c in calls if c.status == 429)
    token_of = {bearer.split(".")[0]: dep for dep, bearer in served.bearers.items()}
    assert Counter(token_of[e.details["token_id"]] for e in entries) == Counter(c.department for c in calls)
