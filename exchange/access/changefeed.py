"""What a grant's view gained and lost between two lake snapshots, read from DuckLake's change feed.

A department's sandbox holds its masked, filtered view at one snapshot. When the lake moves on (a nightly
batch adds a small fraction of rows), rebuilding the copy costs O(view); applying the changes costs
O(changes). The changes come from ``ducklake_table_insertions`` and ``ducklake_table_deletions`` over the
snapshots after the old one up to the new one. Both report every physical row version the window wrote
or deleted, identified by (data file, row in file); DuckLake's `rowid` alone is not enough, because an
update keeps the row's rowid, and a row inserted and deleted within one transaction appears in both feeds
at the same snapshot. So:

- lost = versions deleted in the window that the window did not write (they existed at the old snapshot);
- gained = versions written in the window that the window did not delete (they exist at the new one);

each passed through the grant's own select list and row filter (:func:`exchange.access.terms.grant_view`),
so masking and filtering are exactly those of a full copy. A sandbox is a multiset of masked rows (two lake
rows can mask to the same values), so the lost rows are removed one copy per occurrence.

The feed is used only when it is sound and cheaper: every snapshot of the window still exists (none
expired), the table existed with an unchanged schema throughout and the window only inserted into it and
deleted from it (no compaction or other rewrite), none of its rows are inlined in the catalog, and the
data files the window added or dropped hold at most `max_fraction` of the table's rows. Otherwise
:func:`feed_window` says why and the caller copies the view again.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from exchange.access.models import Grant
from exchange.access.terms import grant_view
from exchange.lake.connect import LAKE, META

MAX_CHANGED_FRACTION = 0.5
_SIGN = "__change_sign"  # -1: lost, +1: gained (never a dataset column: datasets use plain names)


@dataclass(frozen=True)
class Window:
    """What the catalog says about one table between two snapshots (no data file is read)."""

    dataset: str
    old: int
    new: int
    unusable: str | None  # why the change feed cannot carry the view across, or None
    inserted: bool = False  # some snapshot of the window inserted into the table
    deleted: bool = False  # some snapshot of the window deleted from it (an update does both)


def feed_window(lake: duckdb.DuckDBPyConnection, dataset: str, old: int, new: int,
                max_fraction: float = MAX_CHANGED_FRACTION) -> Window:
    """Whether the change feed can carry `dataset` from snapshot `old` to `new`, and what kind of change it is.

    What the window did to the table comes from each snapshot's own change record
    (``ducklake_snapshot_changes``: ``inserted_into_table:<id>``, ``deleted_from_table:<id>``, ...), which
    DuckLake writes with every commit. File counts would not do: DuckLake adds later deletions of a data
    file to that file's existing delete file, whose begin snapshot stays the first deletion's.
    """
    if new <= old:
        return Window(dataset, old, new, f"snapshot {new} is not after {old}")
    facts = _catalog_facts(lake, dataset, old, new)
    if facts is None:
        return Window(dataset, old, new, f"table {dataset} did not exist, unchanged, from snapshot {old} to {new}")
    table_id, present, altered, inlined, rewritten, total, changes = facts
    kinds = _change_kinds(changes, table_id)
    reason = None
    if present != new - old + 1:
        reason = f"snapshots between {old} and {new} have expired"
    elif altered or kinds - {"inserted_into_table", "deleted_from_table"}:
        reason = f"the schema or files of {dataset} changed after snapshot {old} ({', '.join(sorted(kinds))})"
    elif inlined:
        # The hub writes every row to Parquet; rows kept in the catalog move when flushed, so do not guess.
        reason = f"table {dataset} has rows inlined in the catalog"
    elif rewritten > max_fraction * total:
        reason = f"{rewritten} of {total} rows of {dataset} were written or dropped after snapshot {old}"
    return Window(dataset, old, new, reason, "inserted_into_table" in kinds, "deleted_from_table" in kinds)


def _change_kinds(changes: list[str], table_id: int) -> set[str]:
    """The kinds of change the snapshots' change records name for the table (e.g. inserted_into_table)."""
    kinds = set()
    for record in changes:
        for change in record.split(","):
            kind, _, target = change.partition(":")
            if target.strip() == str(table_id):
                kinds.add(kind.strip())
    return kinds


def view_changes(lake: duckdb.DuckDBPyConnection, grant: Grant, window: Window) -> tuple[pa.Table, pa.Table]:
    """The grant's masked, filtered rows lost and gained over the window.

    Gained rows come in the order the lake wrote them (snapshot, file, row): after a batch of inserts the
    advanced sandbox lists its rows as a fresh copy does; after deletions or updates the order may differ
    (a fresh copy reads files in DuckLake's order), which SQL without ORDER BY allows.
    """
    permitted = grant_view(grant)
    select, where, params = permitted.select, permitted.row_filter.sql, list(permitted.row_filter.params)
    args = f"'{LAKE}', 'main', '{grant.dataset}', {int(window.old) + 1}, {int(window.new)}"
    if not window.deleted:
        # Nothing was deleted (the usual nightly batch): every version written in the window is live, and a
        # plain scan keeps the feed's order, so no pairing and no sort are needed.
        sql = f"SELECT {select} FROM ducklake_table_insertions({args}) WHERE {where}"
        gained = lake.execute(sql, params).to_arrow_table()
        return gained.schema.empty_table(), gained
    feed = ("SELECT filename AS __file, file_row_number AS __row, snapshot_id AS __snapshot, * "
            "FROM ducklake_table_{}(" + args + ")")
    changes = (f"WITH ins AS MATERIALIZED ({feed.format('insertions')}), "
               f"del AS MATERIALIZED ({feed.format('deletions')}) "
               f"SELECT *, -1 AS {_SIGN} FROM (SELECT * FROM del ANTI JOIN ins USING (__file, __row)) "
               f"UNION ALL SELECT *, 1 AS {_SIGN} FROM (SELECT * FROM ins ANTI JOIN del USING (__file, __row))")
    sql = f"SELECT {select}, {_SIGN} FROM ({changes}) WHERE {where} ORDER BY {_SIGN}, __snapshot, __file, __row"
    table = lake.execute(sql, params).to_arrow_table()
    sign = table[_SIGN]
    lost = table.filter(pc.equal(sign, -1)).drop_columns([_SIGN])
    gained = table.filter(pc.equal(sign, 1)).drop_columns([_SIGN])
    return lost, gained


def apply_changes(sandbox: duckdb.DuckDBPyConnection, table: str, lost: pa.Table, gained: pa.Table) -> None:
    """Remove `lost` (one sandbox row per lost row, matched on every column) and append `gained`.

    Runs in the caller's transaction, on the sandbox's own connection.
    """
    if lost.num_rows:
        sandbox.register("__lost_rows", lost)
        try:
            sandbox.execute(_multiset_delete(table, lost.column_names))
        finally:
            sandbox.unregister("__lost_rows")
    if gained.num_rows:
        sandbox.register("__gained_rows", gained)
        try:
            sandbox.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM __gained_rows')
        finally:
            sandbox.unregister("__gained_rows")


def _multiset_delete(table: str, columns: list[str]) -> str:
    # Number the sandbox's copies of each lost row and delete as many of them as were lost; NULLs match NULLs.
    quoted = [f'"{c}"' for c in columns]
    match = " AND ".join(f"t.{c} IS NOT DISTINCT FROM l.{c}" for c in quoted)
    partition = ", ".join(f"t.{c}" for c in quoted)
    return (f'DELETE FROM "{table}" WHERE rowid IN ('
            f"SELECT __rid FROM (SELECT t.rowid AS __rid, l.__lost, "
            f"row_number() OVER (PARTITION BY {partition} ORDER BY t.rowid) AS __copy "
            f'FROM "{table}" AS t JOIN (SELECT *, count(*) AS __lost FROM __lost_rows GROUP BY ALL) AS l ON {match}) '
            "WHERE __copy <= __lost)")


def _catalog_facts(lake: duckdb.DuckDBPyConnection, dataset: str, old: int,
                   new: int) -> tuple[int, int, int, int, int, int, list[str]] | None:
    """From the catalog: (table id, snapshots present in [old, new], schema changes of the table after `old`,
    inlined data tables of it, rows in data files added or ended in the window, rows in its live files at
    `new`, the window's change records), or None when no one catalog entry of the table spans `old` to `new`.
    """
    rows = lake.execute(
        f"""
        WITH t AS (
            SELECT t.table_id FROM {META}.ducklake_table t JOIN {META}.ducklake_schema s USING (schema_id)
            WHERE s.schema_name = 'main' AND t.table_name = $dataset AND t.begin_snapshot <= $old
              AND (t.end_snapshot IS NULL OR t.end_snapshot > $new))
        SELECT
            t.table_id,
            (SELECT count(*) FROM {META}.ducklake_snapshot WHERE snapshot_id BETWEEN $old AND $new),
            (SELECT count(*) FROM {META}.ducklake_schema_versions v
             WHERE v.table_id = t.table_id AND v.begin_snapshot > $old AND v.begin_snapshot <= $new),
            (SELECT count(*) FROM {META}.ducklake_inlined_data_tables i WHERE i.table_id = t.table_id),
            (SELECT coalesce(sum(record_count), 0) FROM {META}.ducklake_data_file f WHERE f.table_id = t.table_id
             AND ((f.begin_snapshot > $old AND f.begin_snapshot <= $new)
                  OR (f.end_snapshot > $old AND f.end_snapshot <= $new))),
            (SELECT coalesce(sum(record_count), 0) FROM {META}.ducklake_data_file f
             WHERE f.table_id = t.table_id AND f.begin_snapshot <= $new
               AND (f.end_snapshot IS NULL OR f.end_snapshot > $new)),
            (SELECT coalesce(list(changes_made), []) FROM {META}.ducklake_snapshot_changes
             WHERE snapshot_id > $old AND snapshot_id <= $new)
        FROM t
        """, {"dataset": dataset, "old": old, "new": new}).fetchall()
    if len(rows) != 1:
        return None
    table_id, present, altered, inlined, rewritten, total, changes = rows[0]
    return (int(table_id), int(present), int(altered), int(inlined), int(rewritten), int(total),
            [str(c) for c in changes if c is not None])
