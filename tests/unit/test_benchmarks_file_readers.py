"""Issue 20: every candidate for the file provinces' limit reads the same records (no timing asserted)."""

from __future__ import annotations

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
