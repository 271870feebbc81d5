"""The data every ingest contender reads: generated once, seeded into a province sandbox on disk, and
read back natively (the "limit" reader, also the source half of the peer pipeline).

The native readers do the least a user could do with each protocol: no manifest or XSD check, no
window filter, no landing copy, no mapping. They yield Arrow tables of the native columns.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from adapters.base import sandbox_for
from exchange.synthetic import DEFECT_COLUMN, generate

PROVINCES = ("jiangsu", "zhejiang", "anhui", "shanghai")
TZ = ZoneInfo("Asia/Shanghai")
# A week of updates: one native file per day for the file-based provinces (about n/7 records each).
WINDOW_START = datetime(2026, 11, 2, tzinfo=TZ)
WINDOW_END = WINDOW_START + timedelta(days=7)
SEED = 20261102
CANONICAL_FILE = "canonical.parquet"


def sandbox_root(root: Path, province: str) -> Path:
    """Where a province's sandbox keeps its data under the benchmark's temporary root.

    Laid out as an EXCHANGE_HOME's sandboxes, so the sandboxes sign with the keyring beside them.
    """
    return root / "province-home" / "sandboxes" / province


def trust_provinces(root: Path, home: Path) -> None:
    """Give a hub home the keyring the sandboxes signed with, as an operator registers the offices' keys.

    Once: a home shared by concurrent exchanges gets its keys before they start.
    """
    if not (home / "keys").exists():
        shutil.copytree(root / "province-home" / "keys", home / "keys")


def window(week: int = 0) -> tuple[datetime, datetime]:
    """The `week`-th seven-day window from WINDOW_START (each benchmark batch covers one)."""
    start = WINDOW_START + timedelta(days=7 * week)
    return start, start + timedelta(days=7)


def prepare(root: Path, province: str, dataset: str, records: int, weeks: int = 1) -> dict[str, Any]:
    """Generate `records` canonical records per week over `weeks` weeks, seed them into the province's
    sandbox and keep a canonical copy. Returns the number of injected defects (what the contract rejects).
    """
    end = window(weeks - 1)[1]
    table = generate(dataset, province, records * weeks, seed=SEED, start=WINDOW_START, end=end)
    defects = int(table.num_rows - table.column(DEFECT_COLUMN).null_count)
    pq.write_table(table.drop_columns([DEFECT_COLUMN]), root / CANONICAL_FILE)
    sandbox = sandbox_for(province, sandbox_root(root, province))
    sandbox.seed(dataset, table)
    if hasattr(sandbox, "stop"):
        sandbox.stop()
    return {"defects": defects}


def native_tables(province: str, dataset: str, root: Path, env: dict[str, str]) -> Iterator[pa.Table]:
    """The province's native records as Arrow tables, read the plainest way its protocol allows."""
    readers = {"jiangsu": _jiangsu, "zhejiang": _zhejiang, "anhui": _anhui, "shanghai": _shanghai}
    yield from readers[province](dataset, sandbox_root(root, province), env)


def _mapping(province: str) -> Any:
    from adapters.mapping import ProvinceMapping

    return ProvinceMapping.load(Path(__file__).resolve().parent.parent / "adapters" / province / "mapping.yaml")


def canonical_tables(province: str, dataset: str, root: Path, env: dict[str, str]) -> Iterator[pa.Table]:
    """Native tables mapped onto the canonical schema with the province's declarative mapping."""
    dm = _mapping(province).dataset(dataset)
    for native in native_tables(province, dataset, root, env):
        yield dm.to_canonical(native, province)


def _jiangsu(dataset: str, root: Path, env: dict[str, str]) -> Iterator[pa.Table]:
    """GB18030 CSV through the fastest native reader measured (see benchmarks.file_readers), all strings."""
    from benchmarks.file_readers import FASTEST, read_files

    yield from read_files("jiangsu", FASTEST["jiangsu"], root, dataset)


def _zhejiang(dataset: str, root: Path, env: dict[str, str]) -> Iterator[pa.Table]:
    """The view through the fastest Arrow-native reader measured for its database (ADBC for SQLite; see
    benchmarks.sql_readers), every row of the view, no filter."""
    import sqlalchemy as sa

    from benchmarks.sql_readers import FASTEST, read_view

    url = env["EXCHANGE_ZHEJIANG_DB_URL"]
    yield from read_view(FASTEST[sa.make_url(url).get_backend_name()], url, dataset)


def _anhui(dataset: str, root: Path, env: dict[str, str]) -> Iterator[pa.Table]:
    """Each daily export through the fastest native reader measured (see benchmarks.file_readers): no XSD,
    one string column per element name."""
    from benchmarks.file_readers import FASTEST, read_files

    yield from read_files("anhui", FASTEST["anhui"], root, dataset)


def _shanghai(dataset: str, root: Path, env: dict[str, str]) -> Iterator[pa.Table]:
    """GET every cursor page (the API's maximum page size), json.loads, pa.Table.from_pylist."""
    import httpx

    dm = _mapping("shanghai").dataset(dataset)
    url = f"{env['EXCHANGE_SHANGHAI_API_URL'].rstrip('/')}/api/v1/{dm.source}/records"
    headers = {"Authorization": f"Bearer {env['EXCHANGE_SHANGHAI_API_TOKEN']}"}
    params: dict[str, str | int] = {"limit": 1000, "updatedBefore": WINDOW_END.isoformat()}
    cursor: str | None = None
    with httpx.Client(timeout=60.0, headers=headers) as client:
        while True:
            query = {**params, "cursor": cursor} if cursor else params
            response = client.get(url, params=query)
            response.raise_for_status()
            doc = json.loads(response.content)
            if doc["data"]:
                yield pa.Table.from_pylist(doc["data"])
            cursor = doc.get("nextCursor")
            if cursor is None:
                return
