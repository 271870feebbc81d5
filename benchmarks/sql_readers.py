"""Issue 20, target 1: which Arrow-native reader is the honest limit for a SQL province (Zhejiang).

Zhejiang's views live in SQLite (the sandbox and the ingest benchmark), MariaDB or PostgreSQL. Every
candidate reads the whole e-licence view (all mapped columns, no filter) into Arrow tables, each in a
fresh subprocess against the same seeded database, in the same run. The fastest per backend is what
:func:`benchmarks.sources.native_tables` uses as the limit (see FASTEST, checked against the measurement).

``python -m benchmarks readers --records 1000000 [--server postgresql+psycopg://... --server mysql+pymysql://...]``
seeds SQLite always, and each server in a schema (PostgreSQL) or database (MariaDB) of its own, dropped after.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.table import Table

from benchmarks.harness import Stopwatch, run_task
from benchmarks.report import Target, ratio

BATCH = 50_000
# The reader the limit contender uses per backend: the fastest measured (BENCHMARKS.md, "SQL readers").
FASTEST = {"sqlite": "adbc", "postgresql": "adbc", "mysql": "connectorx"}
CANDIDATES = {
    "sqlite": ("sqlalchemy", "adbc", "duckdb", "connectorx"),
    "postgresql": ("sqlalchemy", "adbc", "duckdb", "connectorx"),
    "mysql": ("sqlalchemy", "duckdb", "connectorx"),
}


def _sqlalchemy(url: str, sql: str, columns: list[str]) -> Iterator[pa.Table]:
    """The row path: SQLAlchemy, 50k-row fetches, pa.array per column (the previous limit)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(yield_per=BATCH).execute(sa.text(sql))
            for rows in result.partitions(BATCH):
                values = list(zip(*rows, strict=True))
                yield pa.table({name: pa.array(col) for name, col in zip(columns, values, strict=True)})
    finally:
        engine.dispose()


def _adbc(url: str, sql: str, columns: list[str]) -> Iterator[pa.Table]:
    """ADBC (adbc-driver-sqlite / adbc-driver-postgresql): the driver fills Arrow buffers itself."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        import adbc_driver_sqlite.dbapi as driver

        conn = driver.connect(parsed.database or ":memory:")
    else:
        import adbc_driver_postgresql.dbapi as pg

        conn = pg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False))
    with conn, conn.cursor() as cursor:
        cursor.execute(sql)
        for batch in cursor.fetch_record_batch():
            yield pa.Table.from_batches([batch])


def _duckdb(url: str, sql: str, columns: list[str]) -> Iterator[pa.Table]:
    """DuckDB's sqlite / postgres / mysql scanner (extensions from their wheels), record batches out."""
    import duckdb
    import sqlalchemy as sa

    from exchange.lake.connect import libpq_conninfo, postgres_extension_path

    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    con = duckdb.connect()
    if backend == "sqlite":
        con.execute(f"LOAD '{_extension('sqlite', 'sqlite_scanner')}'")
        con.execute(f"ATTACH '{parsed.database}' AS src (TYPE sqlite, READ_ONLY)")
    elif backend == "postgresql":
        con.execute(f"LOAD '{postgres_extension_path()}'")
        uri = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        con.execute(f"ATTACH '{libpq_conninfo(uri)}' AS src (TYPE postgres, READ_ONLY)")
    else:
        con.execute(f"LOAD '{_extension('mysql', 'mysql_scanner')}'")
        info = f"host={parsed.host} port={parsed.port or 3306} user={parsed.username} database={parsed.database}"
        if parsed.password:
            info += f" password={parsed.password}"
        con.execute(f"ATTACH '{info}' AS src (TYPE mysql, READ_ONLY)")
    schema = parsed.query.get("options", "")
    search = str(schema).removeprefix("-csearch_path=") if "search_path" in str(schema) else None
    target = f"src.{search}" if search else "src"
    reader = con.execute(sql.replace(" FROM ", f" FROM {target}.", 1)).to_arrow_reader(BATCH)
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _extension(package: str, name: str) -> Path:
    """A DuckDB extension from its wheel, copied under the file name its init symbol needs."""
    import os

    import duckdb

    from exchange.lake.connect import _wheel_extension

    source = _wheel_extension(f"duckdb_extension_{package}", package)
    cache = Path(tempfile.gettempdir()) / f"exchange-duckdb-{duckdb.__version__}-{os.getuid()}"
    target = cache / f"{name}.duckdb_extension"
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = cache / f".{name}.{os.getpid()}.tmp"
        shutil.copyfile(source, partial)
        partial.replace(target)
    return target


def _connectorx(url: str, sql: str, columns: list[str]) -> Iterator[pa.Table]:
    """connectorx (Rust, Arrow out) reading the whole result at once (its only Arrow mode)."""
    import connectorx as cx
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        conn = f"sqlite://{parsed.database}"
    else:
        scheme = "postgresql" if backend == "postgresql" else "mysql"
        conn = parsed.set(drivername=scheme).render_as_string(hide_password=False)
    table = cx.read_sql(conn, sql, return_type="arrow")
    yield table


READERS: dict[str, Callable[[str, str, list[str]], Iterator[pa.Table]]] = {
    "sqlalchemy": _sqlalchemy, "adbc": _adbc, "duckdb": _duckdb, "connectorx": _connectorx,
}


def view_sql(dataset: str) -> tuple[str, list[str]]:
    """The plain SELECT of the dataset's view and its columns (what every candidate runs)."""
    from adapters.mapping import ProvinceMapping
    from adapters.zhejiang.adapter import MAPPING

    dm = ProvinceMapping.load(MAPPING).dataset(dataset)
    return f"SELECT {', '.join(dm.native_columns)} FROM {dm.source}", list(dm.native_columns)


def read_view(reader: str, url: str, dataset: str) -> Iterator[pa.Table]:
    """The dataset's whole view through `reader`."""
    sql, columns = view_sql(dataset)
    yield from READERS[reader](url, sql, columns)


def run_reader(spec: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
    """Worker task: read the view once with one reader (imports before the clock), count the rows."""
    import importlib

    for module in ("sqlalchemy", "adbc_driver_sqlite.dbapi", "adbc_driver_postgresql.dbapi", "duckdb", "connectorx"):
        importlib.import_module(module)
    rows = 0
    with Stopwatch() as watch:
        for table in read_view(spec["reader"], spec["url"], spec["dataset"]):
            rows += table.num_rows
    return watch.seconds, rows, {}


@dataclass
class ReadersResult:
    """Every candidate on every backend, in one run."""

    records: int
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    peak_rss_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def table(self) -> Table:
        """One row per backend and reader: seconds, ratio to the fastest, peak RSS."""
        table = Table(title=f"SQL readers: Zhejiang's e-licence view, {self.records:,} rows, into Arrow")
        for col in ("backend", "reader", "seconds", "/ fastest", "peak RSS MB"):
            table.add_column(col, justify="right")
        for backend, times in self.seconds.items():
            best = min(times.values())
            for reader, seconds in sorted(times.items(), key=lambda kv: kv[1]):
                table.add_row(backend, reader, f"{seconds:.2f}", f"{ratio(seconds, best) or 0:.2f}",
                              f"{self.peak_rss_mb[backend][reader]:.0f}")
            for reader, error in self.errors.get(backend, {}).items():
                table.add_row(backend, reader, "failed", error[:60], "")
        return table

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {"records": self.records, "seconds": self.seconds, "peak_rss_mb": self.peak_rss_mb,
                "errors": self.errors, "targets": [t.to_json() for t in self.targets]}


@contextmanager
def _server_copy(server: str, root: Path) -> Iterator[str]:
    """A schema (PostgreSQL) or database (MariaDB) of its own on `server`, dropped afterwards; its URL."""
    import sqlalchemy as sa

    url = sa.make_url(server)
    name = f"zj_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    if url.get_backend_name() == "postgresql":
        create, drop = f"CREATE SCHEMA {name}", f"DROP SCHEMA IF EXISTS {name} CASCADE"
        own = url.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        create = f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        drop, own = f"DROP DATABASE IF EXISTS {name}", url.set(database=name)
    with admin.connect() as conn:
        conn.execute(sa.text(create))
    try:
        yield own.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(drop))
        admin.dispose()


def _seed(url: str, root: Path, dataset: str, records: int) -> None:
    from adapters.zhejiang.sandbox import create
    from benchmarks.sources import SEED, WINDOW_END, WINDOW_START
    from exchange.synthetic import generate

    box = create(root, url)
    try:
        box.seed(dataset, generate(dataset, "zhejiang", records, seed=SEED, start=WINDOW_START, end=WINDOW_END))
    finally:
        box.stop()


def run_readers(dataset: str, records: int, servers: list[str], *, workdir: Path | None = None,
                repeat: int = 1) -> ReadersResult:
    """Seed SQLite (and each server), then time every candidate reader in a fresh subprocess."""
    import sqlalchemy as sa

    root = Path(tempfile.mkdtemp(prefix="bench-readers-", dir=workdir))
    result = ReadersResult(records)
    try:
        with ExitStack() as stack:
            urls = {"sqlite": f"sqlite:///{root / 'sqlite' / 'zhejiang.sqlite'}"}
            for server in servers:
                urls[sa.make_url(server).get_backend_name()] = stack.enter_context(_server_copy(server, root))
            for backend, url in urls.items():
                _seed(url, root / backend, dataset, records)
                for reader in CANDIDATES[backend]:
                    runs: list[dict[str, Any]] = []
                    try:
                        for _ in range(repeat):
                            runs.append(run_task("reader", {"reader": reader, "url": url, "dataset": dataset}))
                    except Exception as exc:  # noqa: BLE001 - a candidate that cannot read is reported, not fatal
                        result.errors.setdefault(backend, {})[reader] = str(exc).strip().splitlines()[-1]
                        continue
                    if any(int(r["rows"]) != records for r in runs):
                        result.errors.setdefault(backend, {})[reader] = f"read {runs[0]['rows']} rows"
                        continue
                    result.seconds.setdefault(backend, {})[reader] = min(float(r["seconds"]) for r in runs)
                    result.peak_rss_mb.setdefault(backend, {})[reader] = max(float(r["peak_rss_mb"]) for r in runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for backend, times in result.seconds.items():
        fastest = min(times, key=lambda r: times[r])
        # The limit's reader must be the fastest measured (within the run-to-run noise of a shared machine).
        chosen = times.get(FASTEST[backend])
        result.targets.append(Target(f"{backend}: limit reader {FASTEST[backend]} / fastest ({fastest})",
                                     ratio(chosen, times[fastest]) if chosen else None, 1.3))
    return result
