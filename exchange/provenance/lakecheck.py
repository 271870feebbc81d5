"""Catalog-level lake checks: every file the lake serves is accounted for by a signed manifest.

A manifest check alone proves the files a manifest lists are intact; it cannot see a Parquet file slipped
into the data path, or a catalog row pointing at a file no batch wrote. These checks close that gap,
reading only catalog metadata and a directory listing (no hashing).

verify reads the catalog once per run (:func:`read_catalog`) with queries that bind no Python parameter:
DuckDB imports pandas on the first bound parameter of a process (about 0.3 s), a fixed cost an incremental
verify would otherwise pay for nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb

from exchange.config import ExchangeSettings, Layout
from exchange.errors import VerificationError
from exchange.lake import files as lake_files
from exchange.lake.commit import LEDGER, commit_infos
from exchange.lake.connect import LAKE, META, connect, sql_literal
from exchange.provenance.problems import Mismatch


@dataclass(frozen=True)
class CatalogFile:
    """A data or delete file the catalog knows, resolved under the lake's data path."""

    kind: str
    table: str
    relative: str
    begin_snapshot: int
    end_snapshot: int | None
    rows: int = 0  # records in a data file, records deleted by a delete file


@dataclass
class LakeCatalog:
    """What verify needs from the catalog: files, batch commit infos, ledger batches, head snapshot."""

    files: list[CatalogFile]
    infos: dict[int, dict[str, Any]]
    batches: list[str]
    head: int | None
    scheduled: set[str] = field(default_factory=set)
    problems: list[VerificationError] = field(default_factory=list)  # what could not be read, named
    _by_snapshot: dict[int, list[CatalogFile]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        grouped: dict[int, list[CatalogFile]] = defaultdict(list)
        for f in self.files:
            grouped[f.begin_snapshot].append(f)
        self._by_snapshot = dict(grouped)

    def snapshot_of(self, batch_id: str) -> int | None:
        """The newest snapshot whose commit info names the batch (as exchange.lake.commit.snapshot_of)."""
        return max((s for s, info in self.infos.items() if info.get("batch_id") == batch_id), default=None)

    def added_by(self, snapshot: int | None) -> list[CatalogFile]:
        """The data and delete files a snapshot added (as exchange.lake.commit.files_added)."""
        return [] if snapshot is None else self._by_snapshot.get(snapshot, [])


def read_catalog(con: duckdb.DuckDBPyConnection, root: Path | str) -> LakeCatalog:
    """Everything verify asks the catalog, in a handful of parameterless queries."""
    scheduled = con.execute(f"SELECT path FROM {META}.ducklake_files_scheduled_for_deletion").fetchall()
    problems: list[VerificationError] = []
    try:
        batches = ledger_batches(con)
    except duckdb.Error as exc:
        # The ledger is read from its Parquet files: one swapped, cut or replaced breaks the read. The manifest
        # checks name the file; this names the table, and the rest of verify carries on.
        batches = []
        problems.append(Mismatch(f"lake table {LEDGER}", "unreadable: a data file of the table was swapped, cut "
                                 f"or replaced ({' '.join(str(exc).split())})",
                                 expected="the ledger's Parquet files as committed", found="unreadable"))
    return LakeCatalog(files=catalog_files(con, root), infos=commit_infos(con), batches=batches,
                       head=head_snapshot(con), scheduled={str(p) for (p,) in scheduled}, problems=problems)


def _resolve(root: str, parts: list[tuple[str, bool]]) -> str:
    return lake_files.relative_to(root, lake_files.resolve(root, parts))


def catalog_files(con: duckdb.DuckDBPyConnection, root: Path | str) -> list[CatalogFile]:
    """Every data and delete file in the catalog, of every snapshot."""
    files: list[CatalogFile] = []
    sources = (("data", "ducklake_data_file", "record_count"), ("delete", "ducklake_delete_file", "delete_count"))
    for kind, table, count_column in sources:
        rows = con.execute(
            f"""
            SELECT t.table_name, s.path, s.path_is_relative, t.path, t.path_is_relative,
                   f.path, f.path_is_relative, f.begin_snapshot, f.end_snapshot, f.{count_column}
            FROM {META}.{table} f
            JOIN {META}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
            JOIN {META}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
            ORDER BY f.path
            """
        ).fetchall()
        for name, s_path, s_rel, t_path, t_rel, f_path, f_rel, begin, end, count in rows:
            relative = _resolve(str(root), [(s_path, s_rel), (t_path, t_rel), (f_path, f_rel)])
            files.append(CatalogFile(kind, str(name), relative, int(begin), None if end is None else int(end),
                                     int(count or 0)))
    return files


def ledger_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The batch id of every ledger row (empty before the first commit)."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() "
        f"WHERE database_name = {sql_literal(LAKE)} AND table_name = {sql_literal(LEDGER)}"
    ).fetchone()
    if not found or not found[0]:
        return []
    return [str(b) for (b,) in con.execute(f"SELECT batch_id FROM {LAKE}.{LEDGER} ORDER BY batch_id").fetchall()]


def head_snapshot(con: duckdb.DuckDBPyConnection) -> int | None:
    """The lake's newest snapshot id."""
    row = con.execute(f"SELECT max(snapshot_id) FROM {LAKE}.snapshots()").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def lake_head(settings: ExchangeSettings) -> tuple[int | None, int]:
    """The lake's newest snapshot and the number of batch manifests: what a checkpoint records."""
    with connect(settings, read_only=True) as con:
        head = head_snapshot(con)
    return head, len(list(Layout(settings.home).manifests.rglob("*.json")))


def check_catalog(
    con: duckdb.DuckDBPyConnection, root: Path | str, catalog: LakeCatalog, in_manifests: set[str]
) -> list[VerificationError]:
    """Problems: live catalog files no manifest lists, and Parquet files in the data path the catalog does
    not know (an extra file an engine scanning the folder would pick up)."""
    problems: list[VerificationError] = []
    for f in catalog.files:
        if f.end_snapshot is not None or f.relative in in_manifests:
            continue
        if f.kind == "data":
            problems.append(Mismatch(f"lake file {f.relative}", f"live in table {f.table} since snapshot "
                                     f"{f.begin_snapshot} but listed by no signed manifest",
                                     expected="a manifest listing it", found="none"))
        else:
            problems.append(Mismatch(f"lake delete file {f.relative}", f"deletes rows of {f.table} since snapshot "
                                     f"{f.begin_snapshot}; no signed manifest accounts for it",
                                     expected="a manifest listing it", found="none"))
    known = {f.relative for f in catalog.files} | catalog.scheduled
    for relative in lake_files.parquet_files(con, str(root)):  # a folder, or a bucket prefix listed by DuckDB
        if relative not in known and PurePosixPath(relative).name not in known:
            problems.append(Mismatch(f"lake file {relative}", "in the lake's data path but unknown to the catalog "
                                     "(added from outside the hub?)", expected="no such file", found=relative))
    return problems
