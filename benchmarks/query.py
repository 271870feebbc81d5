"""Scenario 3: department queries on a large lake table, through the access layer vs raw DuckDB.

One subprocess builds an EXCHANGE_HOME whose lake holds `rows` e-licences (generated in chunks with
``exchange.synthetic.generate``, inserted through DuckLake, one snapshot per chunk) and registers a
department with a grant (columns incl. masked holder ID and name, row filter: region prefixes). Then,
each in a fresh subprocess:

- ours: ``query_for_department`` with the API's shared lake lease and sandbox cache. The first query
  at the snapshot builds the department's sandbox (copies its masked, filtered view): reported as
  "cold" (the process's first query). The repeated queries are "warm". The full extract is
  ``extract_for_department`` (masked, filtered, sorted Parquet, SHA-256, signed manifest). Then, `repeat`
  times, a nightly batch (1 % of the rows) is committed through the same insert path as the lake, from
  another process (as Airflow's commit), and the first query at the new snapshot is timed: the realistic
  case, where the API's warmer (exchange/access/warmer.py, as `exchange serve` runs it) has advanced the
  previous snapshot's sandbox by the change feed once the commit settled (waited for outside the clock,
  since a batch lands hours before the first query; the delay is reported). Then `repeat` more batches
  without the warmer, where the first query advances the sandbox itself. Raw's same aggregate over the
  same files (then one file more per batch) is timed in that process afterwards.
- raw: the same SQL text on plain DuckDB over ``read_parquet`` of the same lake files (no grant, no
  masking, no filter), and for the extract a ``COPY`` of the grant's columns and rows, sorted the same way.
- http: ``exchange serve`` in its own process, 20 concurrent clients (point lookups and aggregates).

Times are the median of `repeat` runs after one untimed run (which warms the OS page cache for both).
Target (issue 8): each query through the access layer at most 1.5x the raw one.

With `catalog` (a PostgreSQL server's postgresql:// URL), the lake's catalog is a throwaway database created
on that server for the run (EXCHANGE_LAKE_CATALOG in every subprocess) and dropped afterwards; the data
stays in the home's folder, so raw DuckDB reads the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.table import Table

from benchmarks.harness import Stopwatch, run_task
from benchmarks.report import Target, ratio

DEPARTMENT = "js.public_security"
GRANT_ID = "grant-bench-js-e-license"
COLUMNS = ["license_id", "license_type", "holder_id", "holder_name", "region_code", "status", "issued_on",
           "valid_until"]
PREFIXES = ["3202", "3204"]  # Wuxi and Changzhou (~29 % of the generated rows): the grant's row filter
TARGET_RATIO = 1.5
CHUNK_ROWS = 1_000_000
BATCH_FRACTION = 0.01  # a nightly batch adds about 1 % of the rows
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)


def point_sql(license_id: str) -> str:
    """A point lookup by licence number (the id is generated, never user input)."""
    return ("SELECT license_id, holder_id, holder_name, status, valid_until FROM e_license "
            f"WHERE license_id = '{license_id}'")


AGGREGATE_SQL = ("SELECT status, count(*) AS n, min(issued_on) AS first_issued, max(valid_until) AS last_valid "
                 "FROM e_license WHERE issued_on >= DATE '2015-01-01' GROUP BY status ORDER BY status")


# --- subprocess tasks (called from benchmarks.worker) ------------------------------------------------


def lake_chunk(rows: int, seed: int, batch_id: str) -> Any:
    """`rows` generated e-licences with the lake's lineage columns (a pyarrow Table)."""
    import pyarrow as pa

    from exchange.datasets import dataset as canonical_dataset
    from exchange.synthetic import generate

    schema = canonical_dataset("e_license").schema
    table = generate("e_license", "jiangsu", rows, seed=seed, start=START, end=END, defect_rate=0.0)
    table = table.select(schema.names)
    return table.append_column("province", pa.array(["jiangsu"] * rows, pa.string())) \
        .append_column("batch_id", pa.array([batch_id] * rows, pa.string()))


def insert_chunk(home: Path, table: Any) -> None:
    """Append `table` to the lake's e_license table as one snapshot (how the lake is built, and each new batch)."""
    from exchange.config import ExchangeSettings
    from exchange.lake.connect import LAKE, connect, ensure_table

    with connect(ExchangeSettings(home=home)) as con:
        ensure_table(con, "e_license", table.schema)
        con.register("incoming_rows", table)
        con.execute(f"INSERT INTO {LAKE}.e_license BY NAME SELECT * FROM incoming_rows")
        con.unregister("incoming_rows")


def insert_file(home: str, parquet: str) -> None:
    """`insert_chunk` of a Parquet file, for a writer process of its own (`python -c`)."""
    import pyarrow.parquet as pq

    insert_chunk(Path(home), pq.read_table(parquet))


def build_home(home: Path, rows: int, chunk_rows: int = CHUNK_ROWS) -> tuple[float, int, dict[str, Any]]:
    """Fill the lake with `rows` e-licences and register the department, grant and a token."""
    from exchange.access.models import Department, Grant, RowCondition
    from exchange.access.registry import Registry
    from exchange.config import ExchangeSettings
    from exchange.hub import Hub
    from exchange.lake.connect import LAKE, connect

    hub = Hub(ExchangeSettings(home=home))
    with Stopwatch() as watch:
        done = 0
        for i in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - i)
            insert_chunk(home, lake_chunk(n, seed=1000 + i // chunk_rows, batch_id=f"bench-{i // chunk_rows}"))
            done += n
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEPARTMENT, name="江苏省公安厅", province="jiangsu"))
    registry.add_grant(Grant(
        id=GRANT_ID, department=DEPARTMENT, dataset="e_license", columns=COLUMNS,
        row_filter=[RowCondition(column="region_code", op="prefix_in", values=PREFIXES)],
        purpose="benchmark", legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
        expires_on=datetime.now(UTC).date() + timedelta(days=30), issued_at=datetime.now(UTC)), hub.signer)
    _, bearer = registry.issue_token(DEPARTMENT)
    condition = " OR ".join(f"starts_with(region_code, '{p}')" for p in PREFIXES)
    with connect(hub.settings, read_only=True) as con:
        row = con.execute(f"SELECT count(*) FROM {LAKE}.e_license WHERE {condition}").fetchone()
        sample = [r[0] for r in con.execute(f"SELECT license_id FROM {LAKE}.e_license WHERE {condition} "
                                            "USING SAMPLE 50 ROWS").fetchall()]
    files = sorted(str(p) for p in hub.layout.lake_data.rglob("*.parquet"))
    size = sum(Path(f).stat().st_size for f in files)
    return watch.seconds, done, {"bearer": bearer, "filtered_rows": int(row[0]) if row else 0, "sample": sample,
                                 "files": files, "parquet_mb": round(size / 2**20, 1)}


def _timed(run: Any, repeat: int) -> dict[str, Any]:
    run()  # untimed: page cache (and, for ours, nothing else: the sandbox is built before)
    times = []
    for _ in range(repeat):
        with Stopwatch() as watch:
            run()
        times.append(watch.seconds)
    return {"median": statistics.median(times), "min": min(times), "runs": times}


def run_ours(home: Path, sample: list[str], repeat: int, out: Path) -> tuple[float, int, dict[str, Any]]:
    """The three queries through the access layer (shared lake lease, sandbox cache), as the API runs them."""
    from exchange.access.lakeshare import SharedLake
    from exchange.access.service import extract_for_department, query_for_department
    from exchange.access.viewcache import ViewCache
    from exchange.config import ExchangeSettings
    from exchange.hub import Hub

    hub = Hub(ExchangeSettings(home=home))
    lake, views = SharedLake(hub.settings), ViewCache(max_rows=50_000_000)
    details: dict[str, Any] = {}
    warnings = _keep_warnings("exchange.access")  # e.g. an advance that fell back to a full copy
    with Stopwatch() as cold:
        first = query_for_department(hub, DEPARTMENT, AGGREGATE_SQL, lake=lake, views=views)
    details["cold"] = cold.seconds
    details["sandbox_rows"] = sum(int(n) for n in first.table["n"].to_pylist())
    ids = iter(sample * (repeat + 2))
    details["point"] = _timed(
        lambda: query_for_department(hub, DEPARTMENT, point_sql(next(ids)), lake=lake, views=views), repeat)
    details["aggregate"] = _timed(
        lambda: query_for_department(hub, DEPARTMENT, AGGREGATE_SQL, lake=lake, views=views), repeat)
    counter = iter(range(repeat + 2))
    details["extract"] = _timed(
        lambda: extract_for_department(hub, DEPARTMENT, "e_license", out / f"extract-{next(counter)}", lake=lake),
        repeat)
    for name, warmed in (("after_snapshot", True), ("after_snapshot_unwarmed", False)):
        details[name] = _after_new_snapshots(hub, lake, views, repeat, out, warmed=warmed)
        raw = _raw_view(sorted(str(p) for p in hub.layout.lake_data.rglob("*.parquet")))
        details[name]["raw"] = _timed(lambda: raw.execute(AGGREGATE_SQL).to_arrow_table(), repeat)  # noqa: B023
        raw.close()
    details["access_warnings"] = warnings[-10:]
    details["lake_attaches"] = lake.attaches
    details["sandbox_builds"] = views.builds - views.advanced  # full copies
    details["sandbox_advanced"] = views.advanced  # advanced from the previous snapshot's sandbox
    lake.close()
    views.clear()
    return details["aggregate"]["median"], details["sandbox_rows"], details


def _keep_warnings(logger: str) -> list[str]:
    """A list that collects the warnings (with tracebacks) `logger` emits from now on in this process."""
    import logging

    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(self.format(record)[-3000:])

    logging.getLogger(logger).addHandler(Keep(logging.WARNING))
    return kept


def _after_new_snapshots(hub: Any, lake: Any, views: Any, batches: int, out: Path, *,
                         warmed: bool) -> dict[str, Any]:
    """`batches` times: commit a nightly batch (BATCH_FRACTION of the rows), time the first query after it.

    The batch goes through the lake build's own insert path in a writer process of its own, which waits for
    the API's lease as Airflow's commit does. `warmed`: the API's warmer runs (as in `exchange serve`) and
    the query is timed once it has caught up; else the query advances the sandbox itself. Generating the
    batch, the commit and the wait are outside the clock.
    """
    import pyarrow.parquet as pq

    from exchange.access.service import query_for_department
    from exchange.access.warmer import SandboxWarmer
    from exchange.lake.connect import LAKE

    with lake.cursor() as con:
        row = con.execute(f"SELECT count(*) FROM {LAKE}.e_license").fetchone()
    batch_rows = max(1, int(int(row[0]) * BATCH_FRACTION))
    advanced = views.advanced
    warmer = SandboxWarmer(hub, lake, views) if warmed else None
    times: list[float] = []
    caught_up: list[float] = []
    out.mkdir(parents=True, exist_ok=True)
    try:
        if warmer is not None:
            warmer.start()
        for k in range(batches):
            batch = out / f"nightly-{warmed}-{k}.parquet"
            pq.write_table(lake_chunk(batch_rows, seed=5000 + 100 * warmed + k, batch_id=f"nightly-{warmed}-{k}"),
                           batch)
            code = f"from benchmarks.query import insert_file; insert_file({str(hub.settings.home)!r}, {str(batch)!r})"
            subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
            committed = time.monotonic()
            os.sync()  # the batch lands at night, long before the first query: its writeback is not that query's
            if warmer is not None:
                deadline = committed + 120
                while not warmer.caught_up() and time.monotonic() < deadline:
                    time.sleep(0.01)
                caught_up.append(time.monotonic() - committed)
            with Stopwatch() as first:
                query_for_department(hub, DEPARTMENT, AGGREGATE_SQL, lake=lake, views=views)
            times.append(first.seconds)
            batch.unlink()
    finally:
        if warmer is not None:
            warmer.stop()
    return {"median": statistics.median(times), "min": min(times), "runs": times, "batch_rows": batch_rows,
            "advanced": views.advanced - advanced, "warmed": warmer.warmed if warmer else 0,
            "warmer_errors": warmer.errors[-5:] if warmer else [],
            "caught_up_seconds": caught_up}


def _raw_view(files: list[str]) -> Any:
    """Plain DuckDB with view e_license over the Parquet files (no grant, masking or filter)."""
    import duckdb

    con = duckdb.connect()
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f"CREATE VIEW e_license AS SELECT * FROM read_parquet([{listing}])")
    return con


def run_raw(files: list[str], sample: list[str], repeat: int, out: Path) -> tuple[float, int, dict[str, Any]]:
    """The same SQL on plain DuckDB over the lake's Parquet files; the extract as a sorted COPY."""
    con = _raw_view(files)
    details: dict[str, Any] = {}
    ids = iter(sample * (repeat + 2))
    details["point"] = _timed(lambda: con.execute(point_sql(next(ids))).to_arrow_table(), repeat)
    details["aggregate"] = _timed(lambda: con.execute(AGGREGATE_SQL).to_arrow_table(), repeat)
    condition = " OR ".join(f"starts_with(region_code, '{p}')" for p in PREFIXES)
    counter = iter(range(repeat + 2))

    def extract() -> None:
        target = out / f"raw-{next(counter)}.parquet"
        con.execute(f"COPY (SELECT {', '.join(COLUMNS)} FROM e_license WHERE {condition} "
                    f"ORDER BY license_id, batch_id) TO '{target}' (FORMAT parquet)")

    details["extract"] = _timed(extract, repeat)
    return details["aggregate"]["median"], 0, details


def run_http(home: Path, sample: list[str], clients: int, seconds: float) -> tuple[float, int, dict[str, Any]]:
    """`exchange serve` in its own process; `clients` concurrent clients for `seconds` (lookups + aggregates)."""
    import httpx

    bearer = (home / "bench-bearer.txt").read_text().strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "EXCHANGE_HOME": str(home), "EXCHANGE_API_RATE_PER_SECOND": "1000000",
           "EXCHANGE_API_RATE_BURST": "1000000"}
    exe = Path(sys.executable).with_name("exchange")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "exchange.cli"]
    server = subprocess.Popen([*command, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {bearer}"}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    reason = server.stderr.read() if server.stderr else ""
                    raise RuntimeError(f"exchange serve did not start: {reason}") from None
                time.sleep(0.2)
        with Stopwatch() as cold:  # the first query builds the sandbox in the server
            first = httpx.post(f"{url}/v1/query", headers=headers, json={"sql": AGGREGATE_SQL}, timeout=600)
        first.raise_for_status()
        latencies, statuses = asyncio.run(_load(url, headers, sample, clients, seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = sorted(latencies)
    q = statistics.quantiles(ok, n=100, method="inclusive") if len(ok) > 1 else ok * 99
    return seconds, len(ok), {"requests": len(ok), "per_second": len(ok) / seconds, "p50": q[49], "p99": q[98],
                              "cold": cold.seconds, "statuses": statuses, "clients": clients}


async def _load(url: str, headers: dict[str, str], sample: list[str], clients: int,
                seconds: float) -> tuple[list[float], dict[str, int]]:
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    stop = time.monotonic() + seconds
    rng = random.Random(8)

    async def client(n: int, http: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < stop:
            sql = AGGREGATE_SQL if (n + i) % 4 == 0 else point_sql(rng.choice(sample))
            started = time.perf_counter()
            response = await http.post("/v1/query", headers=headers, json={"sql": sql})
            took = time.perf_counter() - started
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            if response.status_code == 200:
                latencies.append(took)
            i += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        await asyncio.gather(*(client(n, http) for n in range(clients)))
    return latencies, statuses


# --- the scenario ---------------------------------------------------------------------------------------


@dataclass
class QueryScenario:
    """Everything scenario 3 measured, with its targets."""

    rows: int
    build_seconds: float
    catalog: str  # "duckdb file" or "postgresql" (never the URL: it may hold a password)
    details: dict[str, Any]
    ours: dict[str, Any]
    raw: dict[str, Any]
    http: dict[str, Any] | None
    peak_rss_mb: dict[str, float]
    catalog_database: str | None = None  # the throwaway PostgreSQL database (dropped when the run ends)
    targets: list[Target] = field(default_factory=list)

    def table(self) -> Table:
        """One row per query: raw, ours (warm), ratio; plus the cold sandbox build."""
        table = Table(title=f"department queries: {self.rows:,} e-licences ({self.details['parquet_mb']} MB Parquet, "
                            f"{len(self.details['files'])} files, {self.catalog} catalog), grant admits "
                            f"{self.details['filtered_rows']:,} rows")
        for col in ("query", "raw DuckDB s", "ours s", "ours / raw", "notes"):
            table.add_column(col, justify="left" if col in ("query", "notes") else "right")
        notes = {"point": "license_id = ?, 5 columns (2 masked)", "aggregate": "count/min/max by status",
                 "extract": "ours: masked, filtered, sorted Parquet + SHA-256 + signed manifest; raw: sorted COPY"}
        for name in ("point", "aggregate", "extract"):
            raw, ours = self.raw[name]["median"], self.ours[name]["median"]
            table.add_row(name, f"{raw:.4f}", f"{ours:.4f}", f"{ratio(ours, raw) or 0:.2f}", notes[name])
        for name, label in (("after_snapshot", "first query after a new snapshot (warmer on)"),
                            ("after_snapshot_unwarmed", "first query after a new snapshot (no warmer)")):
            after = self.ours[name]
            raw_after = float(after["raw"]["median"])
            how = (f"warmer advanced {after['warmed']} of {len(after['runs'])}, caught up "
                   f"{statistics.median(after['caught_up_seconds']):.2f} s after the commit"
                   if after["warmed"] or after["caught_up_seconds"] else
                   f"the query advanced {after['advanced']} of {len(after['runs'])}")
            table.add_row(label, f"{raw_after:.4f}", f"{after['median']:.4f}",
                          f"{ratio(after['median'], raw_after) or 0:.2f}",
                          f"nightly batch of {after['batch_rows']:,} rows; {how}; raw: same aggregate, same files")
        cold = self.ours["cold"]
        table.add_row("first query of the process (cold)", f"{self.raw['aggregate']['median']:.4f}", f"{cold:.2f}",
                      f"{ratio(cold, self.raw['aggregate']['median']) or 0:.2f}",
                      f"copies {self.ours['sandbox_rows']:,} masked rows; later snapshots advance it")
        return table

    @property
    def raw_after(self) -> float:
        """Raw DuckDB's aggregate over the lake's files after the warmed batches (median)."""
        return float(self.ours["after_snapshot"]["raw"]["median"])

    def http_table(self) -> Table | None:
        """Throughput and latency of the HTTP API under concurrent clients."""
        if self.http is None:
            return None
        h = self.http
        table = Table(title=f"HTTP API (`exchange serve`), {h['clients']} concurrent clients, 3 lookups : 1 aggregate")
        for col in ("requests", "per second", "p50 ms", "p99 ms", "first request s (cold)", "statuses"):
            table.add_column(col, justify="right")
        table.add_row(str(h["requests"]), f"{h['per_second']:.1f}", f"{h['p50'] * 1000:.0f}",
                      f"{h['p99'] * 1000:.0f}", f"{h['cold']:.2f}", str(h["statuses"]))
        return table

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict (file list left out)."""
        details = {k: v for k, v in self.details.items() if k not in ("files", "bearer", "sample")}
        return {"rows": self.rows, "catalog": self.catalog, "catalog_database": self.catalog_database,
                "build_seconds": self.build_seconds,
                "details": details, "ours": self.ours,
                "raw": self.raw, "http": self.http, "peak_rss_mb": self.peak_rss_mb,
                "targets": [t.to_json() for t in self.targets]}


@contextlib.contextmanager
def throwaway_catalog(server: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server at `server` (a postgresql:// URL whose database is one the
    user may connect to and create databases from), as a catalog URL; dropped afterwards, even on failure."""
    import psycopg

    parts = urlsplit(server)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"--catalog takes a postgresql:// URL, not {parts.scheme or server!r}")
    name = f"bench_query_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(server, autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_query_scenario(rows: int, *, repeat: int = 5, clients: int = 20, http_seconds: float = 15.0,
                       workdir: Path | None = None, chunk_rows: int = CHUNK_ROWS,
                       catalog: str | None = None) -> QueryScenario:
    """Build the lake, run ours, raw and the HTTP load, each in a fresh subprocess; compute the targets.

    `catalog`: a PostgreSQL server's URL to catalogue the lake in (see the module docstring); default a
    DuckDB file in the home."""
    with contextlib.ExitStack() as stack:
        env = {"EXCHANGE_LAKE_CATALOG": stack.enter_context(throwaway_catalog(catalog))} if catalog else None
        scenario = _run_query_scenario(rows, repeat, clients, http_seconds, workdir, chunk_rows, env)
        if env is not None:
            scenario.catalog_database = urlsplit(env["EXCHANGE_LAKE_CATALOG"]).path.lstrip("/")
        return scenario


def _run_query_scenario(rows: int, repeat: int, clients: int, http_seconds: float, workdir: Path | None,
                        chunk_rows: int, env: dict[str, str] | None) -> QueryScenario:
    root = Path(tempfile.mkdtemp(prefix="bench-query-", dir=workdir))
    try:
        home, out = root / "home", root / "out"
        out.mkdir()
        built = run_task("query_build", {"home": str(home), "rows": rows, "chunk_rows": chunk_rows}, env=env)
        details = built["details"]
        (home / "bench-bearer.txt").write_text(details["bearer"])
        ours = run_task("query_ours", {"home": str(home), "sample": details["sample"], "repeat": repeat,
                                       "out": str(out / "ours")}, env=env)
        shutil.rmtree(out / "ours", ignore_errors=True)
        raw = run_task("query_raw", {"files": details["files"], "sample": details["sample"], "repeat": repeat,
                                     "out": str(out / "raw")})
        shutil.rmtree(out / "raw", ignore_errors=True)
        http = run_task("query_http", {"home": str(home), "sample": details["sample"], "clients": clients,
                                       "seconds": http_seconds}, env=env) if clients > 0 else None
        scenario = QueryScenario(
            rows=rows, build_seconds=float(built["seconds"]), catalog="postgresql" if env else "duckdb file",
            details=details, ours=ours["details"],
            raw=raw["details"], http=http["details"] if http else None,
            peak_rss_mb={"build": built["peak_rss_mb"], "ours": ours["peak_rss_mb"], "raw": raw["peak_rss_mb"],
                         **({"http client": http["peak_rss_mb"]} if http else {})},
        )
        for name in ("point", "aggregate", "extract"):
            scenario.targets.append(Target(
                f"{name}: ours / raw DuckDB", ratio(scenario.ours[name]["median"], scenario.raw[name]["median"]),
                TARGET_RATIO, note="warm sandbox" if name != "extract" else "straight from the lake"))
        scenario.targets.append(Target(
            "first query after a new snapshot: ours / raw aggregate",
            ratio(scenario.ours["after_snapshot"]["median"], scenario.raw_after), TARGET_RATIO,
            note=f"a nightly batch of {scenario.ours['after_snapshot']['batch_rows']:,} rows; the API's warmer "
                 "advanced the sandbox once the commit settled"))
        return scenario
    finally:
        shutil.rmtree(root, ignore_errors=True)
