"""The catalog-level lake checks (exchange/provenance/lakecheck.py) on a hand-built catalog view (issue 21).

An auditor relies on these checks to name a Parquet file slipped into the lake's data path and a live catalog
file no signed manifest lists, with the item, the problem, what was expected and what was found. They read the
catalog once (LakeCatalog) and a directory listing, so they are tested here on a LakeCatalog built by hand and
a data folder on disk: each assertion pins one decision the mutation tester changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from exchange.config import ExchangeSettings, Layout
from exchange.errors import NotFound
from exchange.lake.connect import LAKE, META, catalog_and_data, connect
from exchange.provenance.lakecheck import CatalogFile, LakeCatalog, check_catalog, lake_head, read_catalog
from exchange.provenance.problems import problem_json

DATA = "main/e_license/ducklake-a.parquet"
DELETE = "main/e_license/ducklake-a-delete.parquet"


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def _catalog(*files: CatalogFile, scheduled: set[str] | None = None) -> LakeCatalog:
    return LakeCatalog(files=list(files), infos={}, batches=[], head=None, scheduled=scheduled or set())


def _touch(root: Path, *relatives: str) -> None:
    for relative in relatives:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"PAR1")


def test_snapshot_of_is_the_newest_snapshot_naming_the_batch() -> None:
    catalog = LakeCatalog(files=[], infos={3: {"batch_id": "b1"}, 7: {"batch_id": "b1"}, 5: {"batch_id": "b2"},
                                           9: {}}, batches=[], head=9)
    assert catalog.snapshot_of("b1") == 7  # a replayed batch commits again: the newest commit is its snapshot
    assert catalog.snapshot_of("b2") == 5
    assert catalog.snapshot_of("b3") is None


def test_added_by_groups_files_by_the_snapshot_that_added_them() -> None:
    a = CatalogFile("data", "e_license", "a.parquet", 2, None, rows=3)
    b = CatalogFile("delete", "e_license", "b.parquet", 2, None, rows=1)
    c = CatalogFile("data", "e_license", "c.parquet", 4, 6, rows=5)
    catalog = _catalog(a, b, c)
    assert catalog.added_by(2) == [a, b]
    assert catalog.added_by(4) == [c]
    assert catalog.added_by(3) == []
    assert catalog.added_by(None) == []


def test_a_live_data_file_no_manifest_lists_is_named_with_its_table_and_snapshot(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    _touch(tmp_path, DATA)
    catalog = _catalog(CatalogFile("data", "e_license", DATA, 4, None, rows=10))
    problems = check_catalog(con, tmp_path, catalog, set())
    assert [problem_json(p) for p in problems] == [{
        "item": f"lake file {DATA}",
        "problem": "live in table e_license since snapshot 4 but listed by no signed manifest",
        "expected": "a manifest listing it", "found": "none",
    }]


def test_a_live_delete_file_no_manifest_lists_is_named_as_deleting_rows(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    _touch(tmp_path, DELETE)
    catalog = _catalog(CatalogFile("delete", "e_license", DELETE, 5, None, rows=2))
    problems = check_catalog(con, tmp_path, catalog, set())
    assert [problem_json(p) for p in problems] == [{
        "item": f"lake delete file {DELETE}",
        "problem": "deletes rows of e_license since snapshot 5; no signed manifest accounts for it",
        "expected": "a manifest listing it", "found": "none",
    }]


def test_files_a_manifest_lists_or_a_later_snapshot_retired_are_not_named(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    _touch(tmp_path, DATA, DELETE, "main/e_license/retired.parquet")
    catalog = _catalog(CatalogFile("data", "e_license", DATA, 4, None),
                       CatalogFile("delete", "e_license", DELETE, 5, None),
                       CatalogFile("data", "e_license", "main/e_license/retired.parquet", 2, 4))
    assert check_catalog(con, tmp_path, catalog, {DATA, DELETE}) == []
    # Only the retired file may be unlisted: the live ones are named as soon as no manifest lists them.
    assert [p.item for p in check_catalog(con, tmp_path, catalog, {DATA})] == [f"lake delete file {DELETE}"]
    assert [p.item for p in check_catalog(con, tmp_path, catalog, {DELETE})] == [f"lake file {DATA}"]


@pytest.mark.parametrize("as_url", [False, True], ids=["folder", "file-url"])
def test_a_parquet_file_the_catalog_does_not_know_is_named_as_added_from_outside(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, as_url: bool,
) -> None:
    # A data path given as a file:// URL is listed by DuckDB as plain paths: still the same files, known by the catalog.
    stray = "main/e_license/ducklake-stray.parquet"
    _touch(tmp_path, DATA, stray)
    catalog = _catalog(CatalogFile("data", "e_license", DATA, 4, None))
    problems = check_catalog(con, f"file://{tmp_path}/" if as_url else tmp_path, catalog, {DATA})
    assert [problem_json(p) for p in problems] == [{
        "item": f"lake file {stray}",
        "problem": "in the lake's data path but unknown to the catalog (added from outside the hub?)",
        "expected": "no such file", "found": stray,
    }]


def test_a_file_scheduled_for_deletion_is_known_by_its_path_or_its_name(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    # DuckLake records a file scheduled for deletion by its path as written, which may be the bare file name.
    by_path, by_name = "main/e_license/old-1.parquet", "main/e_license/old-2.parquet"
    _touch(tmp_path, by_path, by_name)
    assert check_catalog(con, tmp_path, _catalog(scheduled={by_path, "old-2.parquet"}), set()) == []
    named = check_catalog(con, tmp_path, _catalog(scheduled={by_path}), set())
    assert [p.item for p in named] == [f"lake file {by_name}"]


def test_an_empty_lake_has_no_batches_and_its_head_counts_the_manifests(tmp_path: Path) -> None:
    settings = ExchangeSettings(home=tmp_path / "home")
    with connect(settings) as con:
        catalog = read_catalog(con, catalog_and_data(settings)[1])
    assert (catalog.files, catalog.batches, catalog.infos, catalog.problems) == ([], [], {}, [])  # no ledger yet
    head = catalog.head
    assert head is not None and lake_head(settings) == (head, 0)
    manifests = Layout(settings.home).manifests
    (manifests / "jiangsu").mkdir(parents=True)
    for name in ("jiangsu/a.json", "b.json", "notes.txt"):
        (manifests / name).write_text("{}")
    assert lake_head(settings) == (head, 2)  # what a checkpoint records: the head and the manifests signed


def test_reading_the_lake_head_never_creates_a_lake(tmp_path: Path) -> None:
    # A checkpoint reads the head; were that to create an empty catalog where the lake was removed, verify would
    # find an empty lake instead of naming the catalog missing.
    settings = ExchangeSettings(home=tmp_path / "home")
    with pytest.raises(NotFound):
        lake_head(settings)
    assert not Path(catalog_and_data(settings)[0]).exists()


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """An empty lake with one table `t` (x INTEGER), open for writing, and its data path."""
    settings = ExchangeSettings(home=tmp_path / "home")
    with connect(settings) as con:
        con.execute(f"CREATE TABLE {LAKE}.t (x INTEGER)")
        yield con, catalog_and_data(settings)[1]


def _run(con: duckdb.DuckDBPyConnection, *statements: str) -> None:
    for statement in statements:
        con.execute(statement.format(lake=LAKE))


MERGED_AND_EXPIRED = (  # two data files merged into one, the two expired: scheduled for deletion, still on disk
    "INSERT INTO {lake}.t VALUES (1), (2)", "INSERT INTO {lake}.t VALUES (3)",
    "CALL ducklake_merge_adjacent_files('{lake}')",
    "CALL ducklake_expire_snapshots('{lake}', older_than => now() + INTERVAL 1 SECOND)")


def test_files_duckdb_scheduled_for_deletion_are_read_from_the_catalog_and_not_taken_for_strays(
    lake: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    con, root = lake
    _run(con, *MERGED_AND_EXPIRED)
    catalog = read_catalog(con, root)
    on_disk = {str(p.relative_to(root)) for p in Path(root).rglob("*.parquet")}
    live = {f.relative for f in catalog.files if f.end_snapshot is None}
    assert len(catalog.scheduled) == 2 and catalog.scheduled | live == on_disk
    assert check_catalog(con, root, catalog, live) == []


def test_a_catalog_path_stored_absolute_is_named_relative_to_the_data_path_as_manifests_name_it(
    lake: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    con, root = lake
    _run(con, *MERGED_AND_EXPIRED)
    [live] = [f.relative for f in read_catalog(con, root).files]
    con.execute(f"UPDATE {META}.ducklake_data_file SET path = ?, path_is_relative = false", [str(Path(root) / live)])
    assert [f.relative for f in read_catalog(con, root).files] == [live]


def test_read_catalog_tells_data_files_from_delete_files_with_their_rows(
    lake: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    con, root = lake
    _run(con, "INSERT INTO {lake}.t VALUES (1), (2), (3)", "DELETE FROM {lake}.t WHERE x = 1")
    files = read_catalog(con, root).files
    assert sorted((f.kind, f.table, f.rows, f.end_snapshot) for f in files) == [("data", "t", 3, None),
                                                                               ("delete", "t", 1, None)]


def test_a_file_whose_rows_were_all_deleted_is_read_as_retired_and_needs_no_manifest(
    lake: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    # DuckLake retires such a file (its end snapshot is set) instead of writing a delete file for it.
    con, root = lake
    _run(con, "INSERT INTO {lake}.t VALUES (1), (2)", "INSERT INTO {lake}.t VALUES (3)",
         "DELETE FROM {lake}.t WHERE x <= 2")
    catalog = read_catalog(con, root)
    retired, live = sorted(catalog.files, key=lambda f: f.begin_snapshot)
    assert (retired.rows, retired.end_snapshot, live.rows, live.end_snapshot) == (2, catalog.head, 1, None)
    assert check_catalog(con, root, catalog, {live.relative}) == []
