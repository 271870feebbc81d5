"""Issue 20: every candidate for the file provinces' limit reads the same records (no timing asserted)."""

from __future__ import annotations

import json
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
