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
import pyarrow.parquet as pq

SCATTER_BATCH_ROWS = 65_536  # records read at a time while scattering: bounds memory, not the part size


def key_hash(keys: pa.Array | pa.ChunkedArray) -> np.ndarray[tuple[int], np.dtype[np.uint64]]:
    """A 64-bit hash of each key's UTF-8 bytes (vectorized; equal keys hash alike, nulls hash to 0).

    Only a batch of keys is hashed at a time, so no table of all the batch's keys is ever held (a
    dictionary of 3M keys alone cost about 500 MB).
    """
    text = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    text = text.cast(pa.large_string())
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset : text.offset + n + 1]
    first, lengths = offsets[:-1], np.diff(offsets)
    hashes = np.zeros(n, dtype=np.uint64)
    present = np.flatnonzero(lengths > 0)
    if len(present):
        data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        position = np.arange(len(data), dtype=np.uint64) - np.repeat(first - offsets[0], lengths).astype(np.uint64)
        weighted = data.astype(np.uint64) * (position * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1))
        hashes[present] = np.add.reduceat(weighted, first[present] - offsets[0])
    if text.null_count:  # a null slot's bytes are undefined: all nulls hash alike
        hashes[text.is_null().to_numpy(zero_copy_only=False)] = 0
    # A finalizer (splitmix64's) so that keys differing in one digit spread over all parts.
    hashes ^= hashes >> np.uint64(30)
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(27)
    hashes *= np.uint64(0x94D049BB133111EB)
    hashes ^= hashes >> np.uint64(31)
    return hashes


def key_parts(staged: Path, key: str, max_rows: int, workdir: Path) -> Iterator[pa.Table]:
    """The records of the Parquet file `staged` in parts of about `max_rows`, grouped by `key` (see above).

    A file of at most `max_rows` records is one part, read as it is. A larger one is first scattered to
    one file per part (by a hash of the key) under `workdir` (removed when the iteration ends), reading
    `SCATTER_BATCH_ROWS` records at a time, so at most one part is in memory.
    """
    source = pq.ParquetFile(staged)
    total = source.metadata.num_rows
    parts = max(1, math.ceil(total / max_rows))
    if parts == 1:
        yield source.read()
        return
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        paths = _scatter(source, key, parts, workdir)
        for path in paths:
            part = pq.read_table(path)
            path.unlink()
            yield part
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _scatter(source: pq.ParquetFile, key: str, parts: int, workdir: Path) -> list[Path]:
    paths = [workdir / f"part-{i:04d}.parquet" for i in range(parts)]
    # Read once and deleted: plain encoding, no compression (halves the scatter: 2.4 s instead of 4.9 s at 3M).
    writers = [pq.ParquetWriter(path, source.schema_arrow, compression="none", use_dictionary=False)
               for path in paths]
    try:
        for batch in source.iter_batches(batch_size=SCATTER_BATCH_ROWS):
            here = (key_hash(batch.column(key)) % np.uint64(parts)).astype(np.int64)
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
