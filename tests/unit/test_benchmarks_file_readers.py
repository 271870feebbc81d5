"""Issue 20: every candidate for the file provinces' limit reads the same records (no timing asserted)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from benchmarks.file_readers import FASTEST, READERS, read_files
from benchmarks.sources import prepare, sandbox_root


@pytest.mark.parametrize("province", ["jiangsu", "anhui"])
def test_every_file_reader_reads_the_same_records(tmp_path: Path, province: str) -> None:
    prepare(tmp_path, province, "e_license", 700)
    root = sandbox_root(tmp_path, province)
    tables = {reader: pa.concat_tables(read_files(province, reader, root, "e_license")) for reader in READERS[province]}
    reference = tables[FASTEST[province]]
    assert reference.num_rows == 700
    for reader, table in tables.items():
        assert table.select(reference.column_names).equals(reference), reader


def test_the_files_scenario_times_every_candidate_and_checks_the_limits_choice(tmp_path: Path) -> None:
    from benchmarks.__main__ import main

    out = tmp_path / "files.json"
    assert main(["files", "--records", "300", "--province", "jiangsu,anhui", "--workdir", str(tmp_path),
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))["results"][0]
    assert result["errors"] == {}
    for province in ("jiangsu", "anhui"):
        assert set(result["seconds"][province]) == set(READERS[province])
    assert len(result["targets"]) == 2  # one per province: the limit's reader against the fastest (no verdict asserted)


def test_a_contender_that_finished_is_not_failed_by_the_interpreters_teardown(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A native library aborting at interpreter exit (Arrow's thread pools: "terminate called without an active
    exception") once failed a whole benchmark run. The worker ends once its result is printed, before teardown:
    here teardown is made to abort, and the contender still counts."""
    from benchmarks.harness import run_task

    (tmp_path / "sitecustomize.py").write_text("import atexit, os\natexit.register(os.abort)\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    home = tmp_path / "home"
    home.mkdir()
    prepare(home, "anhui", "e_license", 50)
    spec = {"province": "anhui", "dataset": "e_license", "root": str(sandbox_root(home, "anhui"))}
    assert run_task("file_reader", {**spec, "reader": "lxml-xslt-csv"})["rows"] == 50
