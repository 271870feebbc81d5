"""Catalog-level lake checks: every file the lake serves is accounted for by a signed manifest.

A manifest check alone proves the files a manifest lists are intact; it cannot see a Parquet file slipped
into the data path, or a catalog row pointing at a file no batch wrote. These checks close that gap,
reading only catalog metadata and a directory listing (no hashing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb

from exchange.config import ExchangeSettings, Layout
from exchange.errors import VerificationError
from exchange.lake import files as lake_files
from exchange.lake.connect import LAKE, META, connect
from exchange.provenance.problems import Mismatch


@dataclass(frozen=True)
class CatalogFile:
    """A data or delete file the catalog knows, resolved under the lake's data path."""

    kind: str
    table: str
    relative: str
    begin_snapshot: int
    end_snapshot: int | None


def _resolve(root: str, parts: list[tuple[str, bool]]) -> str:
    return lake_files.relative_to(root, lake_files.resolve(root, parts))


def catalog_files(con: duckdb.DuckDBPyConnection, root: Path | str) -> list[CatalogFile]:
    """Every data and delete file in the catalog, of every snapshot."""
    files: list[CatalogFile] = []
    for kind, table in (("data", "ducklake_data_file"), ("delete", "ducklake_delete_file")):
        rows = con.execute(
            f"""
            SELECT t.table_name, s.path, s.path_is_relative, t.path, t.path_is_relative,
                   f.path, f.path_is_relative, f.begin_snapshot, f.end_snapshot
            FROM {META}.{table} f
            JOIN {META}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
            JOIN {META}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
            ORDER BY f.path
            """
        ).fetchall()
        for name, s_path, s_rel, t_path, t_rel, f_path, f_rel, begin, end in rows:
            relative = _resolve(str(root), [(s_path, s_rel), (t_path, t_rel), (f_path, f_rel)])
            files.append(CatalogFile(kind, str(name), relative, int(begin), None if end is None else int(end)))
    return files


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
    con: duckdb.DuckDBPyConnection, root: Path | str, in_manifests: set[str]
) -> list[VerificationError]:
    """Problems: live catalog files no manifest lists, and Parquet files in the data path the catalog does
    not know (an extra file an engine scanning the folder would pick up)."""
    problems: list[VerificationError] = []
    files = catalog_files(con, root)
    for f in files:
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
    known = {f.relative for f in files}
    scheduled = con.execute(f"SELECT path FROM {META}.ducklake_files_scheduled_for_deletion").fetchall()
    known |= {str(p) for (p,) in scheduled}
    for relative in lake_files.parquet_files(con, str(root)):  # a folder, or a bucket prefix listed by DuckDB
        if relative not in known and PurePosixPath(relative).name not in known:
            problems.append(Mismatch(f"lake file {relative}", "in the lake's data path but unknown to the catalog "
                                     "(added from outside the hub?)", expected="no such file", found=relative))
    return problems
