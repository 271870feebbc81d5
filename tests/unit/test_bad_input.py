"""Malformed and hostile inputs across the four transports, one named test per case.

Every case builds its payload through the province's sandbox (so it is signed as the province would sign
it), corrupts it where the case calls for it, and runs the real stages (pull -> validate -> commit) in a
hub shared with another province. Each case ends in exactly one of:

* ``fails``: the pull fails with an error naming the file/page/view and the field or position, and the
  lake is exactly as it was (same snapshots);
* ``lands``: the run commits, pulled = accepted + quarantined, and the case's check (a quarantined record
  with its rule, a drift report, a record delivered by the next window, ...) holds.

Then the other province's run in the same hub still commits all of its records.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import resource
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from adapters.anhui.sandbox import AnhuiSandbox
from adapters.base import sandbox_for
from adapters.jiangsu import native as jiangsu_native
from adapters.jiangsu.sandbox import JiangsuSandbox
from adapters.shanghai.adapter import PAGE_SIZE as SH_PAGE
from adapters.shanghai.sandbox import Fault, ShanghaiSandbox
from adapters.shanghai.store import Position
from adapters.zhejiang.arrow_read import ArrowReader, Unreadable
from adapters.zhejiang.sandbox import BASE_TABLES, ZhejiangSandbox
from exchange.config import ExchangeSettings
from exchange.errors import SourceAuthError, SourceFormatError, TransientError
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import commit, pull, run_exchange, validate
from exchange.stages import ExchangeResult
from exchange.synthetic import DEFECT_COLUMN, generate

START = datetime(2026, 11, 1, tzinfo=UTC)  # 08:00 on 2026-11-01 in Shanghai
DAY_END = START + timedelta(hours=12)  # every seeded record is updated on the local day 2026-11-01
END = START + timedelta(days=2)
LATER = START + timedelta(days=6)
N = 30
E_LICENSE = "e_license"
ENTERPRISE = "enterprise_registration"
PROVINCES = ("shanghai", "jiangsu", "zhejiang", "anhui")
TWENTY_YEARS = timedelta(days=365 * 20)


@dataclass
class World:
    """One hub with the four province sandboxes under its EXCHANGE_HOME (so they sign with its trusted keys)."""

    hub: Hub
    shanghai: ShanghaiSandbox
    jiangsu: JiangsuSandbox
    zhejiang: ZhejiangSandbox
    anhui: AnhuiSandbox
    notes: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def world(home: Path) -> Iterator[World]:
    boxes = {p: sandbox_for(p, home / "sandboxes" / p) for p in PROVINCES}
    boxes["shanghai"].start()
    env: dict[str, Any] = {}
    for box in boxes.values():
        env.update({k.removeprefix("EXCHANGE_").lower(): v for k, v in box.env().items()})
    # One retry with a sub-second backoff keeps the retry-storm cases fast; the budget is what is tested.
    settings = ExchangeSettings(home=home, shanghai_max_retries=1, **env)
    w = World(Hub(settings), *(boxes[p] for p in PROVINCES))  # type: ignore[arg-type]
    try:
        yield w
    finally:
        boxes["shanghai"].stop()
        boxes["zhejiang"].stop()


def _records(dataset: str, province: str, n: int = N, seed: int = 5, start: datetime = START,
             end: datetime = DAY_END) -> pa.Table:
    """Clean canonical records (no injected defects), so every quarantine below is the case's own."""
    table = generate(dataset, province, n, seed=seed, start=start, end=end, defect_rate=0.0)
    return table.drop_columns([DEFECT_COLUMN])


def _set(table: pa.Table, column: str, row: int, value: Any) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))


# --- Shanghai: native JSON records served (and signed) by the sandbox's HTTP server -------------------------

def _sh_publish(w: World, dataset: str, table: pa.Table, mutate: Callable[[dict[str, Any]], None] | None = None,
                rows: slice = slice(None)) -> None:
    """Publish records as Shanghai's native JSON, applying `mutate` to the records in `rows`."""
    dm = w.shanghai.mapping.dataset(dataset)
    native = dm.from_canonical(table).to_pylist()
    stamp = dm.native_name("updated_at")
    for record in native:
        record[stamp] = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", record[stamp])
    for record in native[rows]:
        if mutate is not None:
            mutate(record)
    updated = table.column("updated_at").cast(pa.int64()).to_pylist()
    keys = table.column(dm.dataset.key).to_pylist()
    bodies = [json.dumps(r, ensure_ascii=False) for r in native]
    w.shanghai.store.append(dm.source, zip(updated, keys, bodies, strict=True))


def _sh_seed(w: World, dataset: str = E_LICENSE, n: int = N) -> None:
    w.shanghai.seed(dataset, _records(dataset, "shanghai", n))


def _sh_faults(*faults: Fault) -> Callable[[World], None]:
    def inject(w: World) -> None:
        _sh_seed(w)
        for fault in faults:
            w.shanghai.inject(fault)
    return inject


def _sh_cursor_cycle(w: World) -> None:
    """Pages 1 and 2 point at each other: 1 -> C2 -> C1 -> C2 ... (a server bug after a failover)."""
    _sh_seed(w)
    c1, c2 = Position(0, "", 0).encode(), Position(1, "", 0).encode()
    for cursor in (c1, c2, c1):
        w.shanghai.inject(Fault(next_cursor=cursor))


def _sh_token_expires_mid_run(w: World) -> None:
    """OAuth2: the page 2 request meets a revoked token; the adapter fetches a new one and carries on."""
    _sh_seed(w, n=SH_PAGE + 20)  # two pages
    w.shanghai.inject(Fault())  # page 1 as usual
    w.shanghai.inject(Fault(expire_tokens=True))
    w.hub.settings.shanghai_api_token = None
    w.hub.settings.shanghai_client_id = w.shanghai.client_id
    w.hub.settings.shanghai_client_secret = SecretStr(w.shanghai.client_secret)


def _sh_mutated(dataset: str, mutate: Callable[[dict[str, Any]], None], rows: slice = slice(None),
                n: int = N) -> Callable[[World], None]:
    def inject(w: World) -> None:
        _sh_publish(w, dataset, _records(dataset, "shanghai", n), mutate, rows)
    return inject


def _put(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(record: dict[str, Any]) -> None:
        record[key] = value
    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(record: dict[str, Any]) -> None:
        record.pop(key)
    return mutate


def _slashed_date(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(record: dict[str, Any]) -> None:
        record[key] = record[key].replace("-", "/")
    return mutate


def _sh_future_records(w: World) -> None:
    """A province clock running two days fast: records stamped after the window are left for a later one."""
    _sh_seed(w)
    w.shanghai.seed(E_LICENSE, _records(E_LICENSE, "shanghai", 5, seed=6, start=END + timedelta(days=1),
                                        end=END + timedelta(days=1, hours=1)))


# --- Jiangsu: GB18030 CSV drops delivered (with a signed manifest) by the sandbox ---------------------------

def _js_rows(w: World, dataset: str, table: pa.Table) -> tuple[list[str], list[list[str | None]]]:
    dm = w.jiangsu.mapping.dataset(dataset)
    native = dm.from_canonical(table)
    columns = list(dm.native_columns)
    return columns, [[None if v is None else str(v) for v in row.values()]
                     for row in native.select(columns).to_pylist()]


def _csv(columns: list[str], rows: list[list[str | None]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def _js_deliver(w: World, text: str, encoding: str = "gb18030", bom: bytes = b"", name: str | None = None,
                dataset: str = E_LICENSE) -> str:
    source = w.jiangsu.mapping.dataset(dataset).source
    name = name or f"{source}_20261101.csv"
    w.jiangsu.deliver(name, bom + text.encode(encoding))
    return name


def _js_case(mutate: Callable[[list[str], list[list[str | None]]], tuple[list[str], list[list[str | None]]]],
             encoding: str = "gb18030", bom: bytes = b"", table: Callable[[], pa.Table] | None = None,
             ) -> Callable[[World], None]:
    def inject(w: World) -> None:
        columns, rows = _js_rows(w, E_LICENSE, table() if table else _records(E_LICENSE, "jiangsu"))
        columns, rows = mutate(columns, rows)
        _js_deliver(w, _csv(columns, rows), encoding, bom)
    return inject


def _unchanged(columns: list[str], rows: list[list[str | None]]) -> tuple[list[str], list[list[str | None]]]:
    return columns, rows


def _without(column: str) -> Callable[..., tuple[list[str], list[list[str | None]]]]:
    def mutate(columns: list[str], rows: list[list[str | None]]) -> tuple[list[str], list[list[str | None]]]:
        at = columns.index(column)
        return columns[:at] + columns[at + 1:], [r[:at] + r[at + 1:] for r in rows]
    return mutate


def _with_extra(column: str, value: str) -> Callable[..., tuple[list[str], list[list[str | None]]]]:
    def mutate(columns: list[str], rows: list[list[str | None]]) -> tuple[list[str], list[list[str | None]]]:
        return [*columns, column], [[*r, value] for r in rows]
    return mutate


def _cell(column: str, row: int, value: str) -> Callable[..., tuple[list[str], list[list[str | None]]]]:
    def mutate(columns: list[str], rows: list[list[str | None]]) -> tuple[list[str], list[list[str | None]]]:
        rows[row][columns.index(column)] = value
        return columns, rows
    return mutate


def _all_cells(column: str, change: Callable[[str], str]) -> Callable[..., tuple[list[str], list[list[str | None]]]]:
    def mutate(columns: list[str], rows: list[list[str | None]]) -> tuple[list[str], list[list[str | None]]]:
        at = columns.index(column)
        for r in rows:
            r[at] = change(r[at] or "")
        return columns, rows
    return mutate


def _duplicate_row(row: int) -> Callable[..., tuple[list[str], list[list[str | None]]]]:
    def mutate(columns: list[str], rows: list[list[str | None]]) -> tuple[list[str], list[list[str | None]]]:
        return columns, [*rows, list(rows[row])]
    return mutate


def _js_ragged(w: World) -> None:
    columns, rows = _js_rows(w, E_LICENSE, _records(E_LICENSE, "jiangsu"))
    text = _csv(columns, rows).splitlines(keepends=True)
    text[7] = text[7].rstrip("\n") + ",多余字段,再多一个\n"
    _js_deliver(w, "".join(text))


def _js_wrong_encoding(w: World) -> None:
    columns, rows = _js_rows(w, E_LICENSE, _records(E_LICENSE, "jiangsu"))
    _js_deliver(w, _csv(columns, rows), encoding="utf-16")


def _js_tmp_only(w: World) -> None:
    """The exporter is still writing: only `<name>.tmp`, no manifest. Read once it is complete."""
    columns, rows = _js_rows(w, E_LICENSE, _records(E_LICENSE, "jiangsu"))
    payload = _csv(columns, rows).encode("gb18030")
    (w.jiangsu.drop / "电子证照_20261101.csv.tmp").write_bytes(payload)
    w.notes["complete"] = lambda: w.jiangsu.deliver("电子证照_20261101.csv", payload)


def _js_no_manifest(w: World) -> None:
    """The data file is there, its manifest not yet (Jiangsu renames the manifest last)."""
    columns, rows = _js_rows(w, E_LICENSE, _records(E_LICENSE, "jiangsu"))
    payload = _csv(columns, rows).encode("gb18030")
    w.jiangsu.deliver("电子证照_20261101.csv", payload)
    manifest = next(w.jiangsu.drop.glob("电子证照_20261101.manifest.json"))
    held = manifest.read_bytes()
    manifest.unlink()
    w.notes["complete"] = lambda: manifest.write_bytes(held)


def _js_truncated_after_manifest(w: World) -> None:
    """The transfer was cut short after the manifest was written: the file no longer matches it."""
    columns, rows = _js_rows(w, E_LICENSE, _records(E_LICENSE, "jiangsu"))
    name = _js_deliver(w, _csv(columns, rows))
    path = w.jiangsu.drop / name
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) * 2 // 3])


def _js_duplicate_across_batches(w: World) -> None:
    """The same licence again in the next window, updated a day later: a new version, both kept, none lost."""
    first = _records(E_LICENSE, "jiangsu")
    w.jiangsu.seed(E_LICENSE, first)
    again = _records(E_LICENSE, "jiangsu", 1, seed=9, start=END + timedelta(hours=1), end=END + timedelta(hours=2))
    again = _set(again, "license_id", 0, first.column("license_id")[3].as_py())
    w.jiangsu.seed(E_LICENSE, again)
    w.notes["key"] = first.column("license_id")[3].as_py()


# --- Zhejiang: SQL views in the sandbox's SQLite database ----------------------------------------------------

def _zj_sql(w: World, dataset: str | None, *statements: str) -> None:
    """Change Zhejiang's database by hand, as its office would; re-sign `dataset`'s days if rows changed."""
    engine = sa.create_engine(w.zhejiang.url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
    if dataset is not None:
        w.zhejiang.resign(dataset)


def _zj_view(w: World, dataset: str, columns: list[str]) -> list[str]:
    dm = w.zhejiang.mapping.dataset(dataset)
    return [f"DROP VIEW {dm.source}",
            f"CREATE VIEW {dm.source} AS SELECT {', '.join(columns)} FROM {BASE_TABLES[dataset]}"]


def _zj_all_columns(w: World, dataset: str) -> list[str]:
    dm = w.zhejiang.mapping.dataset(dataset)
    return [*dm.native_columns, *([dm.deleted.native] if dm.deleted else [])]


def _zj_missing_column(w: World) -> None:
    w.zhejiang.seed(E_LICENSE, _records(E_LICENSE, "zhejiang"))
    _zj_sql(w, None, *_zj_view(w, E_LICENSE, [c for c in _zj_all_columns(w, E_LICENSE) if c != "ZZZT"]))


def _zj_extra_column(w: World) -> None:
    w.zhejiang.seed(E_LICENSE, _records(E_LICENSE, "zhejiang"))
    _zj_sql(w, E_LICENSE, f"ALTER TABLE {BASE_TABLES[E_LICENSE]} ADD COLUMN DZZZBS VARCHAR(64)",
            *_zj_view(w, E_LICENSE, [*_zj_all_columns(w, E_LICENSE), "DZZZBS"]))


def _zj_number_as_text(w: World) -> None:
    w.zhejiang.seed(ENTERPRISE, _records(ENTERPRISE, "zhejiang"))
    _zj_sql(w, ENTERPRISE, f"UPDATE {BASE_TABLES[ENTERPRISE]} SET ZCZB = '壹佰万元'")


def _zj_duplicate_keys(w: World) -> None:
    table = _records(E_LICENSE, "zhejiang")
    w.zhejiang.seed(E_LICENSE, pa.concat_tables([table, table.slice(4, 1)]))
    w.notes["key"] = table.column("license_id")[4].as_py()


def _zj_unknown_code(w: World) -> None:
    table = _records(E_LICENSE, "zhejiang")
    w.zhejiang.seed(E_LICENSE, table)
    key = table.column("license_id")[2].as_py()
    _zj_sql(w, E_LICENSE, f"UPDATE {BASE_TABLES[E_LICENSE]} SET ZZZT = '9' WHERE ZZBH = '{key}'")
    w.notes["key"] = key


def _zj_disconnect(w: World) -> None:
    """The database drops the query part-way (SQLite's interrupt: what a killed session or failover looks like)."""
    w.zhejiang.seed(E_LICENSE, _records(E_LICENSE, "zhejiang", 400))
    calls = {"n": 0}

    def interrupt_later() -> int:
        calls["n"] += 1
        return 1 if calls["n"] > 20 else 0

    def on_connect(dbapi: Any, record: Any) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            dbapi.set_progress_handler(interrupt_later, 200)

    # The Arrow reader (ADBC, its own SQLite) loses the same connection: its failure hands the read to the row
    # path, which is then dropped part-way too, as a failover drops every session.
    def dropped(self: ArrowReader, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raise Unreadable("OperationalError: interrupted")
        yield  # a generator, like the real one

    real_tables = ArrowReader.tables
    ArrowReader.tables = dropped  # type: ignore[method-assign]
    sa.event.listen(sa.engine.Engine, "connect", on_connect)

    def cleanup() -> None:
        sa.event.remove(sa.engine.Engine, "connect", on_connect)
        ArrowReader.tables = real_tables  # type: ignore[method-assign]

    w.notes["cleanup"] = cleanup


# --- Anhui: XML exports published (with a signed manifest) by the sandbox ------------------------------------

AH_NAME = "电子证照_20261101.xml"
HEADER = '<电子证照数据 省份="安徽省" 数据日期="2026-11-01" 记录数="{n}">'
BILLION_LAUGHS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE 电子证照数据 [\n  <!ENTITY lol "lol">\n'
    + "".join(f'  <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + "]>\n" + HEADER.format(n=1) + "<记录><持证人>&lol9;</持证人><更新时间>2026-11-01 09:00:00</更新时间></记录>"
    "</电子证照数据>\n"
)
QUADRATIC = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE 电子证照数据 [<!ENTITY a "' + "A" * 50_000 + '">]>\n'
    + HEADER.format(n=1) + "<记录><持证人>" + "&a;" * 50_000
    + "</持证人><更新时间>2026-11-01 09:00:00</更新时间></记录></电子证照数据>\n"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE 电子证照数据 [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    + HEADER.format(n=1)
    + "<记录><持证人>&xxe;</持证人><更新时间>2026-11-01 09:00:00</更新时间></记录></电子证照数据>\n"
)
EXTERNAL_DTD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE 电子证照数据 SYSTEM "http://127.0.0.1:9/anhui.dtd">\n'
    + HEADER.format(n=1) + "<记录><更新时间>2026-11-01 09:00:00</更新时间></记录></电子证照数据>\n"
)
XINCLUDE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n' + HEADER.format(n=1)
    + '<记录><持证人><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>'
    "</持证人><更新时间>2026-11-01 09:00:00</更新时间></记录></电子证照数据>\n"
)


def _ah_publish(w: World, text: str, name: str = AH_NAME) -> None:
    w.anhui.publish(w.anhui.exports / name, text.encode("utf-8"))


def _ah_raw(text: str) -> Callable[[World], None]:
    def inject(w: World) -> None:
        _ah_publish(w, text)
    return inject


def _ah_edited(edit: Callable[[str], str]) -> Callable[[World], None]:
    """Export clean records through the sandbox, then re-publish the day's file edited (and re-signed)."""
    def inject(w: World) -> None:
        w.anhui.seed(E_LICENSE, _records(E_LICENSE, "anhui"))
        path = w.anhui.exports / AH_NAME
        _ah_publish(w, edit(path.read_text(encoding="utf-8")))
    return inject


def _insert_after_first(marker: str, addition: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        at = text.index(marker) + len(marker)
        return text[:at] + addition + text[at:]
    return edit


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


# --- checks on the lake after a case that lands -------------------------------------------------------------

def _rows(w: World, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with connect(w.hub.settings, read_only=True) as con:
        return con.execute(sql, list(args)).fetchall()


def _quarantined(w: World, province: str) -> list[tuple[str, str, str]]:
    rows = _rows(w, f"SELECT record_key, rule_id, reason FROM {LAKE}.quarantine WHERE province = ? "
                 "ORDER BY record_key", province)
    return [(str(k), str(r), str(why)) for k, r, why in rows]


Check = Callable[[World, ExchangeResult], None]


def _expect_quarantine(rule: str, key_of: Callable[[World], str | None] | None = None) -> Check:
    def check(w: World, result: ExchangeResult) -> None:
        province = result.batch_id.split(".")[0]
        found = [q for q in _quarantined(w, province) if q[1] == rule]
        assert found, f"no record quarantined by {rule}: {_quarantined(w, province)}"
        assert all(reason for _, _, reason in found)
        if key_of is not None:
            assert key_of(w) in {k for k, _, _ in found}
    return check


def _key_note(w: World) -> str | None:
    key = w.notes.get("key")
    return str(key) if key is not None else None


def _expect_drift(field_name: str, mapping_file: str) -> Callable[[World, ExchangeResult], None]:
    def check(w: World, result: ExchangeResult) -> None:
        assert result.quarantined == 0 and result.accepted == result.pulled
        pulls = [e for e in w.hub.log.read() if e.action == "pull" and e.subject == result.batch_id]
        drift = pulls[-1].details["drift"]
        assert [d["field"] for d in drift] == [field_name]
        assert drift[0]["mapping_file"] == mapping_file
    return check


def _expect_all(n: int) -> Callable[[World, ExchangeResult], None]:
    def check(w: World, result: ExchangeResult) -> None:
        assert result.pulled == n and result.quarantined == 0
    return check


def _expect_deferred_then_read(w: World, result: ExchangeResult) -> None:
    """Nothing read while the drop is partial; once complete, the next window delivers every record."""
    assert result.status == "empty" and result.pulled == 0
    w.notes["complete"]()
    later = run_exchange("jiangsu", E_LICENSE, END, LATER, w.hub)
    assert later.status == "committed" and later.pulled == N and later.quarantined == 0


def _expect_later_window(w: World, result: ExchangeResult) -> None:
    """Future-stamped records are not in this window (the watermark stays at the window end) but in the next."""
    assert result.pulled == N
    later = run_exchange("shanghai", E_LICENSE, END, LATER, w.hub)
    assert later.pulled == 5


def _expect_new_version(w: World, result: ExchangeResult) -> None:
    assert result.pulled == N and result.quarantined == 0
    later = run_exchange("jiangsu", E_LICENSE, END, LATER, w.hub)
    assert later.pulled == 1 and later.accepted == 1
    versions = _rows(w, f"SELECT batch_id, updated_at FROM {LAKE}.e_license WHERE license_id = ? ORDER BY updated_at",
                     w.notes["key"])
    assert [b for b, _ in versions] == [result.batch_id, later.batch_id]


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, and what must come of it."""

    id: str
    province: str
    inject: Callable[[World], None]
    fails: type[Exception] | None = None  # the error the pull must fail with (None: the run lands)
    match: str = ""  # a regex the error message must match (names the file/page/view and field/position)
    check: Callable[[World, dict[str, Any]], None] | None = None
    dataset: str = E_LICENSE


SH = r"http://127\.0\.0\.1:\d+/api/v1/e-licenses/records"
CASES = [
    # Shanghai REST JSON
    Case("sh-truncated-json", "shanghai", _sh_faults(Fault(corrupt=True)), SourceFormatError,
         SH + r" at page 1 \(cursor start\), line 1 column \d+: invalid JSON"),
    Case("sh-wrong-content-type", "shanghai", _sh_faults(Fault(content_type="text/html; charset=utf-8")),
         SourceFormatError, SH + r" at page 1.*Content-Type is 'text/html', not application/json"),
    Case("sh-endless-pagination-loop", "shanghai", _sh_cursor_cycle, SourceFormatError,
         SH + r" at page 3 .*nextCursor loops back to the cursor of page 2"),
    Case("sh-expired-token-mid-run", "shanghai", _sh_token_expires_mid_run, check=_expect_all(SH_PAGE + 20)),
    Case("sh-static-token-revoked", "shanghai", _sh_faults(Fault(expire_tokens=True)), SourceAuthError,
         r"refused the token \(HTTP 401\); check EXCHANGE_SHANGHAI_API_TOKEN"),
    Case("sh-429-storm", "shanghai", _sh_faults(*[Fault(status=429, retry_after="0")] * 2), TransientError,
         SH + r".* answered HTTP 429.*gave up after 2 attempts"),
    Case("sh-5xx-storm", "shanghai", _sh_faults(Fault(status=503), Fault(status=502)), TransientError,
         r"answered HTTP 502.*gave up after 2 attempts"),
    Case("sh-retry-after-too-long", "shanghai", _sh_faults(Fault(status=429, retry_after="3600")), TransientError,
         r"HTTP 429.*asks to retry after 3600 s"),
    Case("sh-missing-field", "shanghai", _sh_mutated(E_LICENSE, _drop("holderIdNo")), SourceFormatError,
         SH + r".*missing native field\(s\) holderIdNo.*shanghai e_license: update adapters/shanghai/mapping\.yaml"),
    Case("sh-extra-field", "shanghai", _sh_mutated(E_LICENSE, _put("electronicSealId", "SH-SEAL-1")),
         check=_expect_drift("electronicSealId", "adapters/shanghai/mapping.yaml")),
    Case("sh-number-as-text", "shanghai", _sh_mutated(ENTERPRISE, _put("regCapital", "壹佰万元")), SourceFormatError,
         r"market-entities/records page 1 .*at field regCapital: wrong JSON type, expected double.*"
         r"shanghai enterprise_registration: update adapters/shanghai/mapping\.yaml", dataset=ENTERPRISE),
    Case("sh-date-format-changed", "shanghai", _sh_mutated(E_LICENSE, _slashed_date("issueDate")), SourceFormatError,
         r"at field issueDate: none of its 30 values reads as '%Y-%m-%d' \(e\.g\. '\d{4}/\d\d/\d\d'\).*"
         r"adapters/shanghai/mapping\.yaml"),
    Case("sh-embedded-nul", "shanghai",
         _sh_mutated(E_LICENSE, _put("holderIdNo", "31010119900101\x001234"), slice(3, 4)),
         check=_expect_quarantine("holder_id.resident_id_checksum")),
    Case("sh-10mb-field", "shanghai", _sh_mutated(E_LICENSE, _put("holderIdNo", "3" * (10 << 20)), slice(5, 6)),
         check=_expect_quarantine("holder_id.resident_id_checksum")),
    Case("sh-clock-skewed-future-records", "shanghai", _sh_future_records, check=_expect_later_window),
    # Jiangsu CSV drops
    Case("js-partial-tmp-file", "jiangsu", _js_tmp_only, check=_expect_deferred_then_read),
    Case("js-no-manifest-yet", "jiangsu", _js_no_manifest, check=_expect_deferred_then_read),
    Case("js-truncated-after-manifest", "jiangsu", _js_truncated_after_manifest, SourceFormatError,
         r"电子证照_20261101\.csv at whole file: SHA-256 .* differs from the manifest's"),
    Case("js-wrong-encoding-utf16", "jiangsu", _js_wrong_encoding, SourceFormatError,
         r"电子证照_20261101\.csv at byte 0: not valid GB18030 \(line 1, bytes ff fe"),
    Case("js-utf8-with-bom", "jiangsu", _js_case(_unchanged, encoding="utf-8", bom=codecs.BOM_UTF8),
         check=_expect_all(N)),
    Case("js-missing-column", "jiangsu", _js_case(_without("持证人身份证号")), SourceFormatError,
         r"电子证照_20261101\.csv at header: missing native field\(s\) 持证人身份证号.*"
         r"jiangsu e_license: update adapters/jiangsu/mapping\.yaml"),
    Case("js-extra-column", "jiangsu", _js_case(_with_extra("电子印章编号", "JS-SEAL-1")),
         check=_expect_drift("电子印章编号", "adapters/jiangsu/mapping.yaml")),
    Case("js-ragged-row", "jiangsu", _js_ragged, SourceFormatError,
         r"电子证照_20261101\.csv at csv: .*Expected 10 columns, got 12"),
    Case("js-embedded-nul", "jiangsu", _js_case(_cell("持证人身份证号", 2, "320102\x0019900101123")),
         check=_expect_quarantine("holder_id.resident_id_checksum")),
    Case("js-duplicate-key-in-batch", "jiangsu", _js_case(_duplicate_row(4)),
         check=_expect_quarantine("license_id.unique_in_batch")),
    Case("js-duplicate-key-across-batches", "jiangsu", _js_duplicate_across_batches, check=_expect_new_version),
    Case("js-impossible-date", "jiangsu", _js_case(_cell("发证日期", 6, "2024-02-30")),
         check=_expect_quarantine("issued_on.not_null")),
    Case("js-unknown-status-code", "jiangsu", _js_case(_cell("证照状态", 8, "待定")),
         check=_expect_quarantine("status.in_enum")),
    Case("js-date-format-changed", "jiangsu", _js_case(_all_cells("发证日期", lambda v: v.replace("-", ""))),
         SourceFormatError, r"电子证照_20261101\.csv at field 发证日期: none of its 30 values reads as '%Y-%m-%d'"),
    # Zhejiang SQL views
    Case("zj-missing-column", "zhejiang", _zj_missing_column, SourceFormatError,
         r"V_DZZZ_GX at columns: missing native field\(s\) ZZZT.*update adapters/zhejiang/mapping\.yaml"),
    Case("zj-extra-column", "zhejiang", _zj_extra_column,
         check=_expect_drift("DZZZBS", "adapters/zhejiang/mapping.yaml")),
    Case("zj-number-column-as-text", "zhejiang", _zj_number_as_text, SourceFormatError,
         r"V_SCZTDJ_GX at field ZCZB: values no longer read as double.*"
         r"zhejiang enterprise_registration: update adapters/zhejiang/mapping\.yaml", dataset=ENTERPRISE),
    Case("zj-duplicate-key-in-batch", "zhejiang", _zj_duplicate_keys,
         check=_expect_quarantine("license_id.unique_in_batch", _key_note)),
    Case("zj-unknown-status-code", "zhejiang", _zj_unknown_code,
         check=_expect_quarantine("status.in_enum", _key_note)),
    Case("zj-disconnect-mid-read", "zhejiang", _zj_disconnect, TransientError,
         r"reading V_DZZZ_GX at row \d+: interrupted"),
    # Anhui XML exports
    Case("ah-billion-laughs", "anhui", _ah_raw(BILLION_LAUGHS), SourceFormatError,
         r"电子证照_20261101\.xml at line 2 column \d+: refused: the file declares a DTD <!DOCTYPE 电子证照数据>"),
    Case("ah-quadratic-blowup", "anhui", _ah_raw(QUADRATIC), SourceFormatError,
         r"电子证照_20261101\.xml at line 2 .*refused: the file declares a DTD"),
    Case("ah-external-entity", "anhui", _ah_raw(EXTERNAL_ENTITY), SourceFormatError,
         r"电子证照_20261101\.xml at line 2 .*refused: the file declares a DTD"),
    Case("ah-external-dtd-retrieval", "anhui", _ah_raw(EXTERNAL_DTD), SourceFormatError,
         r"refused: the file declares a DTD <!DOCTYPE 电子证照数据>, which would fetch http://127\.0\.0\.1:9/anhui\.dtd"),
    Case("ah-xinclude", "anhui", _ah_raw(XINCLUDE), SourceFormatError,
         r"电子证照_20261101\.xml at line 2: refused: XInclude element <\{http://www\.w3\.org/2001/XInclude\}include>"),
    Case("ah-xsd-violation", "anhui", _ah_edited(_insert_after_first("<记录>", "<备注>补录</备注>")), SourceFormatError,
         r"电子证照_20261101\.xml at line \d+: Element '备注': This element is not expected.*"
         r"does not conform to e_license\.xsd"),
    Case("ah-truncated", "anhui", _ah_edited(_truncate), SourceFormatError,
         r"电子证照_20261101\.xml at line \d+ column \d+: .*not well-formed XML"),
]


def _snapshots(w: World) -> int:
    with connect(w.hub.settings, read_only=False) as con:
        row = con.execute(f"SELECT count(*) FROM {LAKE}.snapshots()").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(world: World, case: Case) -> None:
    # Another province's run shares the hub and straddles the case: pulled before it, committed after it.
    other = "jiangsu" if case.province != "jiangsu" else "zhejiang"
    sandbox: Any = getattr(world, other)
    sandbox.seed(E_LICENSE, _records(E_LICENSE, other, seed=11))
    other_batch = pull(other, E_LICENSE, START, END, world.hub).batch_id
    case.inject(world)
    snapshots = _snapshots(world)
    try:
        if case.fails is not None:
            with pytest.raises(case.fails, match=case.match):
                run_exchange(case.province, case.dataset, START, END, world.hub)
            assert _snapshots(world) == snapshots, "a failed pull must leave the lake as it was"
            landed = world.hub.layout.landing / case.province / case.dataset
            assert case.id.startswith(("sh-429", "sh-5xx", "sh-retry", "sh-static", "zj-")) or any(
                landed.rglob("*")
            ), "what was received is kept in the landing folder"
        else:
            result = run_exchange(case.province, case.dataset, START, END, world.hub)
            if result.status == "committed":
                assert result.pulled == result.accepted + result.quarantined
                stored = _rows(world, f"SELECT count(*) FROM {LAKE}.{case.dataset} WHERE batch_id = ?",
                               result.batch_id)[0][0]
                assert stored == result.accepted
            assert case.check is not None
            case.check(world, result)
    finally:
        cleanup = world.notes.get("cleanup")
        if cleanup is not None:
            cleanup()
    checked = validate(other_batch, world.hub)
    assert (checked.pulled, checked.quarantined) == (N, 0)
    assert commit(other_batch, world.hub).status == "committed"


def test_there_are_at_least_25_distinct_cases_across_the_four_transports() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 25
    assert {c.province for c in CASES} == set(PROVINCES)


def test_a_billion_laughs_export_fails_fast_without_memory_blowup(world: World,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Expanded, this file is 3 GB of "lol"; refused at its DOCTYPE it costs nothing.

    "Fast" is measured as work, not wall-clock time: the file never reaches lxml, the only parser that could
    expand it, so the refusal costs the same on a loaded machine."""
    from adapters.anhui import adapter as anhui_adapter

    parsed: list[object] = []
    iterparse = anhui_adapter.etree.iterparse

    def spy(source: object, *args: Any, **kwargs: Any) -> Any:
        parsed.append(source)
        return iterparse(source, *args, **kwargs)

    monkeypatch.setattr(anhui_adapter.etree, "iterparse", spy)
    _ah_publish(world, BILLION_LAUGHS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SourceFormatError, match="refused: the file declares a DTD"):
        run_exchange("anhui", E_LICENSE, START, END, world.hub)
    assert parsed == []
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 50 * 1024  # KiB: under 50 MB more


def test_the_refusal_happens_before_lxml_would_expand_anything(tmp_path: Path) -> None:
    """The prolog check alone refuses each hostile file, whatever the adapter does afterwards."""
    from adapters.anhui import export

    for text in (BILLION_LAUGHS, QUADRATIC, EXTERNAL_ENTITY, EXTERNAL_DTD):
        path = tmp_path / AH_NAME
        path.write_text(text, encoding="utf-8")
        with pytest.raises(SourceFormatError, match=r"at line 2 column \d+: refused"):
            export.refuse_hostile(path, AH_NAME)
    clean = tmp_path / "clean.xml"
    clean.write_text('<?xml version="1.0"?>\n<!-- a comment -->\n' + HEADER.format(n=0) + "</电子证照数据>",
                     encoding="utf-8")
    export.refuse_hostile(clean, "clean.xml")


def test_jiangsu_utf8_without_bom_reads_like_gb18030(world: World) -> None:
    columns, rows = _js_rows(world, E_LICENSE, _records(E_LICENSE, "jiangsu"))
    text = _csv(columns, rows)
    assert jiangsu_native.decode(text.encode("utf-8"), "x") == jiangsu_native.decode(text.encode("gb18030"), "x")


def test_pulled_counts_include_every_quarantined_record(world: World) -> None:
    """Several defects in one Jiangsu drop: each record ends in exactly one place."""
    table = _records(E_LICENSE, "jiangsu")
    columns, rows = _js_rows(world, E_LICENSE, table)
    for mutate in (_cell("证照状态", 1, "待定"), _cell("发证日期", 2, "2024-13-01"), _duplicate_row(3)):
        columns, rows = mutate(columns, rows)
    _js_deliver(world, _csv(columns, rows))
    result = run_exchange("jiangsu", E_LICENSE, START, END, world.hub)
    assert (result.pulled, result.accepted, result.quarantined) == (N + 1, N - 2, 3)
    keys = pc.unique(pa.array([k for k, _, _ in _quarantined(world, "jiangsu")])).to_pylist()
    assert len(keys) == 3


# --- Issue 16: every record accounted for, every rejection showing what was sent -------------------------------

# Per province: the native field names of issued_on / valid_until and an impossible date in their format.
UNREADABLE_DATES = {
    "shanghai": ("issueDate", "expiryDate", "2024-02-30"),
    "jiangsu": ("发证日期", "有效期至", "2024-02-30"),
    "zhejiang": ("FZRQ", "YXQZ", "20240230"),
    "anhui": ("发证日期", "有效期至", "2024-02-30"),
}


def _publish_with(w: World, province: str, table: pa.Table, edits: dict[str, dict[str, Any]]) -> None:
    """Publish `table` through the province's real transport, native fields of the keyed records edited."""
    if province == "shanghai":
        def mutate(record: dict[str, Any]) -> None:
            record.update(edits.get(record["licenseNo"], {}))
        _sh_publish(w, E_LICENSE, table, mutate)
    elif province == "jiangsu":
        columns, rows = _js_rows(w, E_LICENSE, table)
        for row in rows:
            for name, value in edits.get(str(row[columns.index("证照编号")]), {}).items():
                row[columns.index(name)] = value
        _js_deliver(w, _csv(columns, rows))
    elif province == "zhejiang":
        w.zhejiang.seed(E_LICENSE, table)
        _zj_sql(w, E_LICENSE, *(f"UPDATE {BASE_TABLES[E_LICENSE]} SET {name} = '{value}' WHERE ZZBH = '{key}'"
                                for key, fields in edits.items() for name, value in fields.items()))
    else:
        w.anhui.seed(E_LICENSE, table)
        path = w.anhui.exports / AH_NAME
        text = path.read_text(encoding="utf-8")
        for key, fields in edits.items():
            start = text.index(f"<证照编号>{key}</证照编号>")
            end = text.index("</记录>", start)
            record = text[start:end]
            for name, value in fields.items():
                record = re.sub(f"<{name}>[^<]*</{name}>", f"<{name}>{value}</{name}>", record)
            text = text[:start] + record + text[end:]
        _ah_publish(w, text)


def _quarantine_rows(w: World, batch_id: str) -> dict[str | None, dict[str, Any]]:
    with connect(w.hub.settings, read_only=True) as con:
        table = con.execute(f"SELECT * FROM {LAKE}.quarantine WHERE batch_id = ?", [batch_id]).to_arrow_table()
    return {r["record_key"]: r for r in table.to_pylist()}


@pytest.mark.parametrize("province", PROVINCES)
def test_an_unreadable_date_is_quarantined_with_the_value_as_sent(world: World, province: str) -> None:
    """B-8 through each transport: the raw value is kept next to the reason, which says what was sent; an
    unreadable *optional* date is quarantined too (it used to become null and be accepted)."""
    issued, valid, impossible = UNREADABLE_DATES[province]
    table = _records(E_LICENSE, province)
    keys = table.column("license_id").to_pylist()
    with_expiry = [i for i, v in enumerate(table.column("valid_until").to_pylist()) if v is not None and i > 3]
    required, optional = keys[3], keys[with_expiry[0]]
    _publish_with(world, province, table, {required: {issued: impossible}, optional: {valid: impossible}})
    result = run_exchange(province, E_LICENSE, START, END, world.hub)
    assert (result.pulled, result.accepted, result.quarantined) == (N, N - 2, 2)
    rows = _quarantine_rows(world, result.batch_id)
    assert rows[required]["rule_id"] == "issued_on.not_null"
    assert rows[optional]["rule_id"] == "valid_until.readable"
    for key, field_name in ((required, "issued_on"), (optional, "valid_until")):
        sent = json.loads(rows[key]["as_sent"])
        assert sent[field_name]["sent"] == impossible
        assert f"sent \"{impossible}\"" in rows[key]["reason"] and "missing" not in rows[key]["reason"]
    # The office's report and `exchange quarantine show` carry it too.
    report = (world.hub.layout.reports / province / f"{result.batch_id}.rejections.csv").read_text("utf-8-sig")
    assert report.count(impossible) >= 2
    from typer.testing import CliRunner

    from exchange.cli import app

    home = {"EXCHANGE_HOME": str(world.hub.settings.home)}
    shown = CliRunner().invoke(app, ["quarantine", "show", required], env=home)
    assert shown.exit_code == 0 and impossible in shown.output


def _zj_undated(w: World) -> tuple[str, str]:
    table = _records(E_LICENSE, "zhejiang")
    w.zhejiang.seed(E_LICENSE, table)
    null_key, bad_key = table.column("license_id")[3].as_py(), table.column("license_id")[4].as_py()
    _zj_sql(w, E_LICENSE, f"UPDATE {BASE_TABLES[E_LICENSE]} SET GXSJ = NULL WHERE ZZBH = '{null_key}'",
            f"UPDATE {BASE_TABLES[E_LICENSE]} SET GXSJ = '2026/11/01 09:00' WHERE ZZBH = '{bad_key}'")
    return null_key, bad_key


def test_a_zhejiang_row_without_update_time_is_pulled_once_signed_and_quarantined(world: World) -> None:
    """B-1: 30 rows in the view, 30 pulled (before: 29 or 28, and the signatures covered only those)."""
    null_key, bad_key = _zj_undated(world)
    now = datetime.now(UTC)
    result = run_exchange("zhejiang", E_LICENSE, START, now, world.hub)
    assert (result.pulled, result.quarantined) == (N, 2)
    rows = _quarantine_rows(world, result.batch_id)
    assert rows[null_key]["rule_id"] == rows[bad_key]["rule_id"] == "updated_at.readable"
    assert json.loads(rows[null_key]["as_sent"])["updated_at"]["sent"] is None
    assert json.loads(rows[bad_key]["as_sent"])["updated_at"]["sent"] == "2026/11/01 09:00"
    assert "GXSJ sent null" in rows[null_key]["reason"] or "updated_at sent null" in rows[null_key]["reason"]
    pulls = [e for e in world.hub.log.read() if e.action == "pull" and e.subject == result.batch_id]
    subjects = [s["subject"] for s in pulls[-1].details["source_signatures"]]
    assert "V_DZZZ_GX/undated/2 rows" in subjects, subjects
    # Reported once: the next window (allowed a few minutes ahead by the clock skew) does not repeat them.
    later = run_exchange("zhejiang", E_LICENSE, now, now + timedelta(minutes=4), world.hub)
    assert later.status == "empty" and later.pulled == 0


@pytest.mark.parametrize(("change", "match"), [
    ("UPDATE {t} SET CYRXM = 'changed' WHERE GXSJ IS NULL", "V_DZZZ_GX, rows without a readable update time"),
    ("DELETE FROM SJQM WHERE RQ = 'undated'", r"unsigned"),
])
def test_undated_zhejiang_rows_are_read_only_as_signed(world: World, change: str, match: str) -> None:
    """The province's signature covers the undated rows as it covers each day: changed or unsigned, refused."""
    from exchange.errors import SourceAuthenticityError

    _zj_undated(world)
    _zj_sql(world, None, change.format(t=BASE_TABLES[E_LICENSE]))
    with pytest.raises(SourceAuthenticityError, match=match):
        run_exchange("zhejiang", E_LICENSE, START, datetime.now(UTC), world.hub)


def test_a_repeated_json_key_quarantines_the_record_and_no_value_wins(world: World) -> None:
    """B-3: {"licenseNo": "A", ..., "licenseNo": "B"} was accepted as licence B."""
    table = _records(E_LICENSE, "shanghai")
    dm = world.shanghai.mapping.dataset(E_LICENSE)
    native = dm.from_canonical(table).to_pylist()
    bodies = []
    for i, record in enumerate(native):
        record["updateTime"] = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", record["updateTime"])
        body = json.dumps(record, ensure_ascii=False)
        if i == 3:
            body = body[:-1] + ', "licenseNo": "SH-OTHER-LICENCE"}'
        if i == 5:
            body = body[:-1] + f', "holderIdNo": {json.dumps(record["holderIdNo"])}}}'
        bodies.append(body)
    updated = table.column("updated_at").cast(pa.int64()).to_pylist()
    world.shanghai.store.append(dm.source, zip(updated, table.column("license_id").to_pylist(), bodies, strict=True))
    result = run_exchange("shanghai", E_LICENSE, START, END, world.hub)
    assert (result.pulled, result.quarantined) == (N, 2)
    rows = _quarantine_rows(world, result.batch_id)
    first = table.column("license_id")[3].as_py()
    assert None in rows and first not in rows, "the licence number is neither value: it is null, and named"
    sent = json.loads(rows[None]["as_sent"])["license_id"]
    assert sent["sent"] == [first, "SH-OTHER-LICENCE"] and "given more than once" in sent["problem"]
    with connect(world.hub.settings, read_only=True) as con:
        stored = con.execute(f"SELECT count(*) FROM {LAKE}.e_license WHERE license_id = 'SH-OTHER-LICENCE'").fetchone()
    assert stored == (0,)
    fifth = table.column("license_id")[5].as_py()
    assert rows[fifth]["rule_id"].startswith("holder_id.")  # even the same value twice is not guessed at
    from exchange.cli import record_label

    assert record_label(rows[None]) == "(no license_id)"
    report = (world.hub.layout.reports / "shanghai" / f"{result.batch_id}.rejections.csv").read_text("utf-8-sig")
    assert "(no license_id)" in report and "None" not in report


def test_a_repeated_key_outside_a_record_refuses_the_page(world: World) -> None:
    _sh_seed(world)
    world.shanghai.inject(Fault(extra_member='"data": []'))
    with pytest.raises(SourceFormatError, match=r"at page 1 .*the key 'data' is given more than once"):
        run_exchange("shanghai", E_LICENSE, START, END, world.hub)


@pytest.mark.parametrize(("native", "value", "kind"), [
    ("regCapital", "100", "a string, expected a number"),
    ("regCapital", [100], "an array, expected a number"),
    ("creditCode", 91310000123456789, "a number, expected a string"),
    ("legalRepName", {"name": "张三"}, "an object, expected a string"),
])
def test_a_wrong_json_type_in_one_record_quarantines_that_record(world: World, native: str, value: Any,
                                                                  kind: str) -> None:
    """B-6: like a bad date in the same place, per record and named, not the whole window."""
    dm = world.shanghai.mapping.dataset(ENTERPRISE)
    # A skip here would hide a case the mapping dropped: the cases name mapped fields, or they are wrong.
    assert native in dm.native_columns, f"{native} is not mapped for {ENTERPRISE}: update this case"
    _sh_mutated(ENTERPRISE, _put(native, value), slice(7, 8))(world)
    result = run_exchange("shanghai", ENTERPRISE, START, END, world.hub)
    assert (result.pulled, result.quarantined) == (N, 1)
    [row] = _quarantine_rows(world, result.batch_id).values()
    canonical = next(f.canonical for f in dm.fields if f.native == native)
    entry = json.loads(row["as_sent"])[canonical]
    assert entry["sent"] == value and entry["problem"] == f"wrong JSON type: {kind}"


def _reencoded(position: Position, spelling: int) -> str:
    """The same position, spelled another way a server might: no padding, spaces in the JSON, standard base64."""
    import base64

    raw = json.dumps([position.updated_us, position.sort_key, position.rowid], separators=(", ", ": "))
    if spelling == 0:
        return position.encode().rstrip("=")
    if spelling == 1:
        return base64.urlsafe_b64encode(raw.encode()).decode()
    return base64.b64encode((" " + raw).encode()).decode()


@pytest.mark.parametrize("spelling", [0, 1, 2])
def test_a_pagination_loop_is_caught_by_position_however_the_cursor_is_spelled(world: World, spelling: int) -> None:
    """B-4: before, only a byte-identical cursor counted as a repeat (7,500 records pulled from 2,500)."""
    _sh_seed(world)
    c1, c2 = Position(0, "", 0), Position(1, "", 0)
    for cursor in (c1.encode(), c2.encode(), _reencoded(c1, spelling)):
        world.shanghai.inject(Fault(next_cursor=cursor))
    with pytest.raises(SourceFormatError, match=r"at page 3 .*nextCursor loops back to the cursor of page 2"):
        run_exchange("shanghai", E_LICENSE, START, END, world.hub)


def test_a_cursor_going_back_or_too_many_pages_stop_the_pull(world: World) -> None:
    _sh_seed(world)
    for cursor in (Position(5, "", 0).encode(), Position(3, "", 0).encode()):
        world.shanghai.inject(Fault(next_cursor=cursor))
    with pytest.raises(SourceFormatError, match=r"at page 2 .*nextCursor goes back"):
        run_exchange("shanghai", E_LICENSE, START, END, world.hub)
    world.hub.settings.shanghai_max_pages = 2
    for n in range(1, 4):
        world.shanghai.inject(Fault(next_cursor=Position(n, "", 0).encode()))
    with pytest.raises(SourceFormatError, match=r"more than 2 pages in one window.*EXCHANGE_SHANGHAI_MAX_PAGES"):
        run_exchange("shanghai", E_LICENSE, START, END, world.hub)


def test_an_undeclared_xml_entity_is_reported_where_lxml_found_it(world: World) -> None:
    """B-5: it was "line 0 column 0"."""
    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if "<持证人>" in line)
        lines[at] = re.sub("<持证人>[^<]*</持证人>", "<持证人>&未声明;</持证人>", lines[at])
        world.notes["line"] = at + 1
        return "".join(lines)

    _ah_edited(edit)(world)
    with pytest.raises(SourceFormatError) as raised:
        run_exchange("anhui", E_LICENSE, START, END, world.hub)
    assert re.fullmatch(rf"line {world.notes['line']} column [1-9]\d*", raised.value.position), raised.value.position
    assert "Entity '未声明' not defined" in raised.value.problem


HOLDER_ID = {"shanghai": "holderIdNo", "jiangsu": "持证人身份证号", "zhejiang": "CYRZJHM", "anhui": "身份证件号码"}
HOLDER_NAME = {"shanghai": "holderName", "jiangsu": "持证人姓名", "zhejiang": "CYRXM", "anhui": "持证人"}
LICENSE_ID = {"shanghai": "licenseNo", "jiangsu": "证照编号", "zhejiang": "ZZBH", "anhui": "证照编号"}
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def _id_ending_in_x(region: str) -> str:
    from stdnum.iso7064 import mod_11_2  # GB 11643's check character (the oracle the checksum tests use)

    for sequence in range(1000):
        first = f"{region}19900101{sequence:03d}"
        if mod_11_2.calc_check_digit(first) == "X":
            return first + "X"
    raise AssertionError("no ID with check character X")


@pytest.mark.parametrize("province", PROVINCES)
def test_identifiers_are_stored_in_their_one_standard_spelling_with_a_warning(world: World, province: str) -> None:
    """B-9: lower-case x, full-width digits, NBSP and spaces were stored as sent or rejected as a wrong check
    character; they are one resident ID, stored once as GB 11643 writes it."""
    table = _records(E_LICENSE, province)
    keys = table.column("license_id").to_pylist()
    standard = _id_ending_in_x(table.column("region_code")[0].as_py())
    spellings = [standard[:-1] + "x", standard.translate(FULL_WIDTH), f"\u00a0{standard}  ", f" {standard[:-1]}ｘ"]
    native = HOLDER_ID[province]
    _publish_with(world, province, table, {keys[i + 2]: {native: s} for i, s in enumerate(spellings)})
    result = run_exchange(province, E_LICENSE, START, END, world.hub)
    assert (result.pulled, result.accepted, result.quarantined) == (N, N, 0)
    stored = _rows(world, f"SELECT license_id, holder_id FROM {LAKE}.e_license WHERE batch_id = ?", result.batch_id)
    by_key = dict(stored)
    assert [by_key[keys[i + 2]] for i in range(len(spellings))] == [standard] * len(spellings)
    validation = read_manifest_counts(world, result)
    assert validation >= len(spellings)


def read_manifest_counts(w: World, result: dict[str, Any]) -> int:
    from exchange.provenance.manifest import read_manifest

    return int(read_manifest(Path(result.manifest)).manifest.counts.warned)


@pytest.mark.parametrize("province", PROVINCES)
def test_the_contract_lengths_are_enforced(world: World, province: str) -> None:
    """B-9: 10,000 characters in a 255-character field and a 300-character key used to be committed."""
    table = _records(E_LICENSE, province)
    keys = table.column("license_id").to_pylist()
    long_key = "K" * 300
    _publish_with(world, province, table, {keys[2]: {HOLDER_NAME[province]: "名" * 10_000},
                                           keys[5]: {LICENSE_ID[province]: long_key}})
    result = run_exchange(province, E_LICENSE, START, END, world.hub)
    assert (result.accepted, result.quarantined) == (N - 2, 2)
    rows = _quarantine_rows(world, result.batch_id)
    assert rows[keys[2]]["rule_id"] == "holder_name.max_length"
    assert rows[long_key]["rule_id"] == "license_id.max_length"
    assert "longer than 64 characters" in rows[long_key]["reason"]


def test_one_text_value_in_a_zhejiang_number_column_is_that_records_problem(world: World) -> None:
    """B-6 over SQL: SQLite keeps '壹佰万元' in a REAL column; one such row failed the window ("mixed value
    types"), now it is quarantined with the value as sent (every row text still fails: zj-number-column-as-text)."""
    table = _records(ENTERPRISE, "zhejiang")
    world.zhejiang.seed(ENTERPRISE, table)
    key = table.column("uscc")[6].as_py()
    _zj_sql(world, ENTERPRISE, f"UPDATE {BASE_TABLES[ENTERPRISE]} SET ZCZB = '壹佰万元' WHERE TYSHXYDM = '{key}'")
    result = run_exchange("zhejiang", ENTERPRISE, START, END, world.hub)
    assert (result.pulled, result.quarantined) == (N, 1)
    row = _quarantine_rows(world, result.batch_id)[key]
    assert json.loads(row["as_sent"])["registered_capital"]["sent"] == "壹佰万元"
    assert 'registered_capital sent "壹佰万元": not a number' in row["reason"]
