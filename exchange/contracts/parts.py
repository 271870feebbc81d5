"""Split a staged batch into parts of bounded size that a contract can check one at a time.

A contract is checked on a whole table (GX on a pandas frame plus the rule predicates), so memory grows
with the table. A large batch is therefore checked part by part. Every record sharing a key goes to the
same part and input order is kept within a part, so per-part checks give exactly the whole-batch result:
the only rule that looks across records (a key's first occurrence wins) sees all copies of a key together,
in their original order.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCATTER_BATCH_ROWS = 65_536  # records read at a time while scattering: bounds memory, not the part size


def part_numbers(keys: pa.ChunkedArray | pa.Array, parts: int) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """The part of each record: its key's dictionary code (order of first appearance) modulo `parts`.

    Equal keys get equal codes, so they land together; consecutive distinct keys go round the parts, so
    the parts come out about the same size. Records without a key all go to part 0.
    """
    encoded = pc.dictionary_encode(keys)
    indices = encoded.combine_chunks().indices if isinstance(encoded, pa.ChunkedArray) else encoded.indices
    codes = np.asarray(pc.fill_null(indices, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes % parts


def key_parts(staged: Path, key: str, max_rows: int, workdir: Path) -> Iterator[pa.Table]:
    """The records of the Parquet file `staged` in parts of about `max_rows`, grouped by `key` (see above).

    A file of at most `max_rows` records is one part, read as it is. A larger one is first scattered to
    one file per part under `workdir` (removed when the iteration ends), reading `SCATTER_BATCH_ROWS`
    records at a time, so at most one part is in memory.
    """
    source = pq.ParquetFile(staged)
    total = source.metadata.num_rows
    parts = max(1, math.ceil(total / max_rows))
    if parts == 1:
        yield source.read()
        return
    numbers = part_numbers(pq.read_table(staged, columns=[key]).column(key), parts)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        paths = _scatter(source, numbers, parts, workdir)
        for path in paths:
            part = pq.read_table(path)
            path.unlink()
            yield part
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _scatter(
    source: pq.ParquetFile, numbers: np.ndarray[tuple[int], np.dtype[np.int64]], parts: int, workdir: Path
) -> list[Path]:
    paths = [workdir / f"part-{i:04d}.parquet" for i in range(parts)]
    writers = [pq.ParquetWriter(path, source.schema_arrow) for path in paths]
    try:
        offset = 0
        for batch in source.iter_batches(batch_size=SCATTER_BATCH_ROWS):
            here = numbers[offset : offset + batch.num_rows]
            offset += batch.num_rows
            # A stable sort keeps input order within each part; one take, then a slice per part.
            order = np.argsort(here, kind="stable")
            grouped = batch.take(pa.array(order))
            bounds = np.searchsorted(here[order], np.arange(parts + 1))
            for i in range(parts):
                if bounds[i + 1] > bounds[i]:
                    writers[i].write_batch(grouped.slice(bounds[i], bounds[i + 1] - bounds[i]))
    finally:
        for writer in writers:
            writer.close()
    return paths
