"""A department sandbox advanced by DuckLake's change feed equals a fresh copy, row for row.

The API keeps a sandbox per (grant views, snapshot); when the lake moves on, the older sandbox of the
same grants is advanced in place with the rows the new snapshots lost and gained, instead of copying
the whole view again. These tests compare the advanced sandbox with a fresh copy after inserts,
deletions (Zhejiang's soft-deletes, which DuckLake records as delete files), updates and rows that
mask to the same values, check the fall-backs, and check that another grant never inherits a sandbox.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from adapters.zhejiang.sandbox import ZhejiangSandbox
from exchange.access.lakeshare import SharedLake
from exchange.access.models import Department, Grant, RowCondition, SignedGrant
from exchange.access.query import QueryLimits, current_snapshot_id
from exchange.access.registry import Registry
from exchange.access.service import query_for_department
from exchange.access.viewcache import Sandbox, ViewCache, advance_sandbox, build_sandbox, sandbox_key
from exchange.config import ExchangeSettings
from exchange.errors import AccessDenied
from exchange.hub import Hub
from exchange.lake.commit import add_missing_columns
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from exchange.synthetic import generate
from tests.unit.access_lake import clean_e_licenses, seed_lake

DEP = "js.public_security"
PREFIXES = ["3201", "3202", "3205"]
MASKED = ["license_id", "region_code", "holder_id", "holder_name", "status", "valid_until"]
ALL_ROWS = "SELECT * FROM e_license"


def _grant(grant_id: str, columns: list[str], prefixes: list[str], department: str = DEP) -> Grant:
    return Grant(id=grant_id, department=department, dataset="e_license", columns=columns,
                 row_filter=[RowCondition(column="region_code", op="prefix_in", values=prefixes)], purpose="test",
                 legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
                 expires_on=datetime.now(UTC).date() + timedelta(days=5), issued_at=datetime.now(UTC))


@pytest.fixture
def hub(home: Path) -> Hub:
    hub = Hub(ExchangeSettings(home=home))
    seed_lake(hub, clean_e_licenses(1500, seed=11), batch_id="first")
    Registry(hub.layout.access).add_department(Department(id=DEP, name=DEP, province="jiangsu"))
    return hub


def _snapshot(hub: Hub) -> int:
    with connect(hub.settings, read_only=True) as con:
        return current_snapshot_id(con)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(c, "ascending") for c in table.column_names])


def _advanced_and_fresh(hub: Hub, signed: SignedGrant, old: int, new: int) -> tuple[Sandbox, pa.Table, pa.Table]:
    """Advance a sandbox built at `old` to `new`, and copy `new` afresh: (advanced sandbox, its rows, fresh rows)."""
    with connect(hub.settings, read_only=True) as lake:
        box = build_sandbox(lake, [signed], old, QueryLimits())
        advanced = advance_sandbox(lake, box, [signed], old, new)
        fresh = build_sandbox(lake, [signed], new, QueryLimits())
    assert advanced.con is not None and fresh.con is not None
    try:
        return advanced, advanced.con.execute(ALL_ROWS).to_arrow_table(), fresh.con.execute(ALL_ROWS).to_arrow_table()
    finally:
        advanced.con.close()
        fresh.con.close()


def _mutate(hub: Hub) -> None:
    """One snapshot each: deletions, updates, an insert and delete in one transaction, a re-sent batch."""
    with connect(hub.settings) as con:
        keys = [r[0] for r in con.execute(f"SELECT license_id FROM {LAKE}.e_license ORDER BY license_id "
                                          "LIMIT 60").fetchall()]
        con.execute(f"DELETE FROM {LAKE}.e_license WHERE license_id IN (SELECT unnest(?))", [keys[:30]])
        con.execute(f"UPDATE {LAKE}.e_license SET status = 'revoked' WHERE license_id IN (SELECT unnest(?))",
                    [keys[30:]])
        con.execute("BEGIN TRANSACTION")
        con.execute(f"INSERT INTO {LAKE}.e_license SELECT * REPLACE ('inserted-then-deleted' AS batch_id) "
                    f"FROM {LAKE}.e_license LIMIT 40")
        con.execute(f"DELETE FROM {LAKE}.e_license WHERE batch_id = 'inserted-then-deleted' AND region_code < '3203'")
        con.execute("COMMIT")
    # The same records again (a re-sent batch): identical masked rows, so the sandbox holds duplicates.
    seed_lake(hub, clean_e_licenses(200, seed=11), batch_id="resent")


def test_an_advanced_sandbox_equals_a_fresh_copy_after_inserts_deletes_and_updates(hub: Hub) -> None:
    signed = Registry(hub.layout.access).add_grant(_grant("g-masked", MASKED, PREFIXES), hub.signer)
    old = _snapshot(hub)
    seed_lake(hub, clean_e_licenses(300, seed=12), batch_id="second")
    _mutate(hub)
    advanced, rows, fresh = _advanced_and_fresh(hub, signed, old, _snapshot(hub))

    assert advanced.how["e_license"].startswith(f"advanced from snapshot {old}")
    assert rows.num_rows == fresh.num_rows == advanced.rows
    # The same rows; after deletions their order may differ (a fresh copy reads files in DuckLake's order).
    assert _sorted(rows).equals(_sorted(fresh))
    holder_ids = set(rows["holder_id"].to_pylist())
    assert all("*" in h for h in holder_ids) and all(r[:4] in PREFIXES for r in rows["region_code"].to_pylist())


def _delete_and_update(hub: Hub, offset: int) -> None:
    with connect(hub.settings) as con:
        keys = [r[0] for r in con.execute(f"SELECT license_id FROM {LAKE}.e_license ORDER BY license_id "
                                          f"LIMIT 40 OFFSET {offset}").fetchall()]
        con.execute(f"DELETE FROM {LAKE}.e_license WHERE license_id IN (SELECT unnest(?))", [keys[:20]])
    with connect(hub.settings) as con:
        con.execute(f"UPDATE {LAKE}.e_license SET holder_name = holder_name || '改' "
                    "WHERE license_id IN (SELECT unnest(?))", [keys[20:]])


def test_more_deletions_in_a_data_file_that_already_had_some_are_seen(hub: Hub) -> None:
    # DuckLake adds them to the file's existing delete file, whose begin snapshot predates the window.
    signed = Registry(hub.layout.access).add_grant(_grant("g-masked", MASKED, PREFIXES), hub.signer)
    _delete_and_update(hub, 0)
    for offset in (100, 200):
        old = _snapshot(hub)
        _delete_and_update(hub, offset)
        advanced, rows, fresh = _advanced_and_fresh(hub, signed, old, _snapshot(hub))
        assert advanced.how["e_license"].startswith("advanced") and "-0 " not in advanced.how["e_license"]
        assert _sorted(rows).equals(_sorted(fresh))


def test_a_batch_of_inserts_keeps_even_the_order_of_a_fresh_copy(hub: Hub) -> None:
    signed = Registry(hub.layout.access).add_grant(_grant("g-masked", MASKED, PREFIXES), hub.signer)
    old = _snapshot(hub)
    seed_lake(hub, clean_e_licenses(300, seed=12), batch_id="nightly-1")
    seed_lake(hub, clean_e_licenses(300, seed=13), batch_id="nightly-2")
    advanced, rows, fresh = _advanced_and_fresh(hub, signed, old, _snapshot(hub))
    assert advanced.how["e_license"].startswith("advanced") and rows.num_rows > 1000
    assert rows.equals(fresh)


def test_snapshots_of_other_tables_leave_the_sandbox_as_it_is(hub: Hub) -> None:
    signed = Registry(hub.layout.access).add_grant(_grant("g-masked", MASKED, PREFIXES), hub.signer)
    old = _snapshot(hub)
    with connect(hub.settings) as con:  # another dataset's table appears and gets a batch
        con.execute(f"CREATE TABLE {LAKE}.other_dataset (id INTEGER)")
        con.execute(f"INSERT INTO {LAKE}.other_dataset VALUES (1), (2)")
    advanced, rows, fresh = _advanced_and_fresh(hub, signed, old, _snapshot(hub))
    assert advanced.how["e_license"] == f"advanced from snapshot {old}: unchanged"
    assert rows.equals(fresh)


def test_rows_that_mask_to_the_same_values_lose_one_copy_per_deleted_lake_row(hub: Hub) -> None:
    # Region, status and a masked name repeat across many licences: the sandbox is a multiset.
    signed = Registry(hub.layout.access).add_grant(
        _grant("g-coarse", ["region_code", "status", "holder_name"], PREFIXES), hub.signer)
    old = _snapshot(hub)
    _mutate(hub)
    advanced, rows, fresh = _advanced_and_fresh(hub, signed, old, _snapshot(hub))

    assert advanced.how["e_license"].startswith("advanced")
    assert rows.num_rows == fresh.num_rows
    assert _sorted(rows).equals(_sorted(fresh))


def test_each_fall_back_copies_the_view_again_and_still_matches(hub: Hub) -> None:
    signed = Registry(hub.layout.access).add_grant(_grant("g-masked", MASKED, PREFIXES), hub.signer)
    before_alter = _snapshot(hub)
    with connect(hub.settings) as con:  # a newer contract's optional column (no rows rewritten)
        add_missing_columns(con, "e_license", pa.schema([pa.field("remark", pa.string())]))
    seed_lake(hub, clean_e_licenses(50, seed=13), batch_id="after-alter")
    advanced, rows, fresh = _advanced_and_fresh(hub, signed, before_alter, _snapshot(hub))
    assert advanced.how["e_license"].startswith("copied again: the schema or files of e_license changed")
    assert rows.equals(fresh)

    small = _snapshot(hub)
    seed_lake(hub, clean_e_licenses(2000, seed=14), batch_id="bulk")  # more than half the table is new
    advanced, rows, fresh = _advanced_and_fresh(hub, signed, small, _snapshot(hub))
    assert "rows of e_license were written or dropped" in advanced.how["e_license"] and rows.equals(fresh)

    expired_from = _snapshot(hub)
    seed_lake(hub, clean_e_licenses(20, seed=15), batch_id="soon-expired")
    seed_lake(hub, clean_e_licenses(20, seed=16), batch_id="last")
    with connect(hub.settings) as con:
        con.execute(f"CALL ducklake_expire_snapshots('{LAKE}', versions => [?])", [expired_from + 1])
    advanced, rows, fresh = _advanced_and_fresh(hub, signed, expired_from, _snapshot(hub))
    assert "expired" in advanced.how["e_license"] and rows.equals(fresh)


def _zhejiang_hub(home: Path) -> tuple[Hub, ZhejiangSandbox]:
    source = ZhejiangSandbox(home / "sandboxes" / "zhejiang")
    source.install()
    source.seed("e_license", generate("e_license", "zhejiang", 600, seed=5, start=datetime(2026, 11, 1, tzinfo=UTC),
                                      end=datetime(2026, 11, 4, tzinfo=UTC), defect_rate=0.0))
    return Hub(ExchangeSettings(home=home, zhejiang_db_url=source.url)), source


def test_zhejiang_soft_deletes_reach_the_api_sandbox_as_deletions(home: Path) -> None:
    start, mid, end = (datetime(2026, 11, d, tzinfo=UTC) for d in (1, 4, 8))
    hub, source = _zhejiang_hub(home)
    first = run_exchange("zhejiang", "e_license", start, mid, hub)
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id="zj.market", name="zj.market", province="zhejiang"))
    with connect(hub.settings, read_only=True) as con:
        prefixes = sorted({r[0][:4] for r in con.execute(f"SELECT region_code FROM {LAKE}.e_license").fetchall()})[:3]
        admitted = [r[0] for r in con.execute(
            f"SELECT license_id FROM {LAKE}.e_license WHERE left(region_code, 4) IN (SELECT unnest(?)) "
            "ORDER BY license_id LIMIT 8", [prefixes]).fetchall()]
    registry.add_grant(_grant("g-zj", MASKED, prefixes, department="zj.market"), hub.signer)
    lake, views = SharedLake(hub.settings, idle_seconds=30), ViewCache()
    try:
        before = query_for_department(hub, "zj.market", "SELECT count(*) AS n FROM e_license", lake=lake, views=views)
        lake.close()  # the commit below runs in this process and needs the catalog to itself
        source.delete("e_license", admitted, datetime(2026, 11, 6, 9, tzinfo=UTC))
        second = run_exchange("zhejiang", "e_license", mid, end, hub)
        assert second.status == "committed"

        ordered = f"{ALL_ROWS} ORDER BY ALL"
        after = query_for_department(hub, "zj.market", ordered, lake=lake, views=views)
        assert views.advanced == 1 and after.snapshot_id == second.snapshot_id > first.snapshot_id
        fresh = query_for_department(hub, "zj.market", ordered)  # the CLI's path: a fresh copy
        assert after.result_sha256 == fresh.result_sha256
        assert after.table.num_rows == before.table["n"][0].as_py() - len(admitted)
        assert not set(admitted) & set(after.table["license_id"].to_pylist())
    finally:
        lake.close()
        views.clear()


def test_a_changed_or_revoked_grant_never_advances_the_old_sandbox(hub: Hub) -> None:
    registry = Registry(hub.layout.access)
    registry.add_grant(_grant("g-1", MASKED, PREFIXES), hub.signer)
    lake, views = SharedLake(hub.settings, idle_seconds=30), ViewCache()
    count = "SELECT count(*) AS n, count(DISTINCT holder_id) AS holders FROM e_license"
    try:
        query_for_department(hub, DEP, count, lake=lake, views=views)
        lake.close()
        seed_lake(hub, clean_e_licenses(100, seed=21), batch_id="second")
        # Same id, narrower filter, re-signed: a different lineage, so the older sandbox is no donor.
        registry.add_grant(_grant("g-1", MASKED, PREFIXES[:1]), hub.signer)
        narrow = query_for_department(hub, DEP, count, lake=lake, views=views)
        assert views.advanced == 0 and views.builds == 2
        assert narrow.result_sha256 == query_for_department(hub, DEP, count).result_sha256

        # Unmasking a column (with a justification) is a different view too.
        registry.add_grant(_grant("g-1", MASKED, PREFIXES[:1]).model_copy(
            update={"unmasked": ["holder_name"], "justification": "identity check"}), hub.signer)
        lake.close()
        seed_lake(hub, clean_e_licenses(100, seed=22), batch_id="third")
        query_for_department(hub, DEP, count, lake=lake, views=views)
        assert views.advanced == 0 and views.builds == 3

        registry.revoke_grant("g-1", "jiangsu.data_office", "done", hub.signer)
        lake.close()
        seed_lake(hub, clean_e_licenses(100, seed=23), batch_id="fourth")
        with pytest.raises(AccessDenied, match="revoked"):
            query_for_department(hub, DEP, count, lake=lake, views=views)
        assert views.advanced == 0 and views.builds == 3
    finally:
        lake.close()
        views.clear()


def _ready(rows: int) -> Sandbox:
    return Sandbox(con=duckdb.connect(), loaded={"e_license": "g"}, rows=rows)


def test_advancing_waits_for_queries_on_the_older_sandbox_and_falls_back_when_it_fails() -> None:
    views = ViewCache()
    old_key, new_key, newer_key = (1, "lineage"), (2, "lineage"), (3, "lineage")
    order: list[str] = []
    running, finish = threading.Event(), threading.Event()

    def query_on_old() -> None:
        with views.sandbox(old_key, lambda: _ready(10)):
            running.set()
            finish.wait(10)
            order.append("old query done")

    def advance(box: Sandbox, snapshot: int) -> Sandbox:
        order.append(f"advance from {snapshot}")
        return Sandbox(con=box.con, loaded=box.loaded, rows=box.rows + 1)

    worker = threading.Thread(target=query_on_old)
    worker.start()
    assert running.wait(10)
    threading.Timer(0.2, finish.set).start()
    with views.sandbox(new_key, lambda: _ready(0), advance) as box:
        assert box.rows == 11
    worker.join()
    assert order == ["old query done", "advance from 1"] and views.advanced == 1
    with views.sandbox(old_key, lambda: _ready(5)) as box:  # consumed: time travel to it builds again
        assert box.rows == 5 and views.builds == 3

    def broken(box: Sandbox, snapshot: int) -> Sandbox:
        raise duckdb.IOException("change feed unavailable")

    with views.sandbox(newer_key, lambda: _ready(99), broken) as box:
        assert box.rows == 99 and views.advanced == 1 and views.builds == 4
    views.clear()


def test_sandbox_keys_separate_grants_and_limits(hub: Hub) -> None:
    registry = Registry(hub.layout.access)
    a = registry.add_grant(_grant("g-a", MASKED, PREFIXES), hub.signer)
    b = registry.add_grant(_grant("g-b", MASKED, PREFIXES), hub.signer)
    assert sandbox_key([a], 5, QueryLimits())[1] == sandbox_key([a], 6, QueryLimits())[1]
    assert sandbox_key([a], 5, QueryLimits())[1] != sandbox_key([b], 5, QueryLimits())[1]
    assert sandbox_key([a], 5, QueryLimits())[1] != sandbox_key([a], 5, QueryLimits(threads=1))[1]
