"""What the Zhejiang adapter delivered near the watermark, so an overlapping re-read is not delivered twice.

Zhejiang stamps a row's update time (GXSJ) when its transaction starts, but the row becomes visible only
when the transaction commits: a row stamped 10:00:00 may appear at 10:03, after a pull that read up to
10:02 set the watermark past it. So each pull re-reads the last N minutes before the watermark (the
overlap) and drops the rows it has already delivered, identified by record key + update time: a newer
version of a record has a newer update time and is delivered; an identical re-read is not.

The ledger is one small Parquet file per dataset holding the (key, update time) of the rows delivered in
the overlap before the latest delivered update time, with the pull that delivered them. An entry is
trusted only once the hub's watermark has reached that pull's latest row (so the batch was committed)
and the pull was for another window (a retry of the same window means the earlier attempt never
committed). Any doubt drops entries, which can only re-deliver a row, never lose one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adapters.base import PullRequest
from exchange.datasets import TIMESTAMP

KEY = "record_key"
UPDATED = "updated_at"
SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.string()),
        pa.field(UPDATED, TIMESTAMP),
        pa.field("window_end", TIMESTAMP),  # the window of the pull that delivered the row
        pa.field("pull_max", TIMESTAMP),  # that pull's latest update time: the watermark its commit set
    ]
)
# The views keep whole seconds and bounds are rounded to them, so keep one second more than the overlap.
_MARGIN = timedelta(seconds=1)


def row_ids(keys: pa.ChunkedArray | pa.Array, updated: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """One string per row identifying (key, update time); a null key still identifies its row."""
    # NUL cannot occur in a record key, so it marks a missing one without colliding with a real key.
    key = pc.fill_null(keys.cast(pa.string()), "\x00")
    micros = updated.cast(TIMESTAMP).cast(pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise(key, micros, "|")


@dataclass(frozen=True)
class DeliveryLedger:
    """Per-dataset ledger files under `root` (created on first write)."""

    root: Path

    def path(self, dataset: str) -> Path:
        """The ledger file of one dataset."""
        return self.root / f"{dataset}.delivered.parquet"

    def _read(self, dataset: str) -> pa.Table:
        path = self.path(dataset)
        return pq.read_table(path, schema=SCHEMA) if path.exists() else SCHEMA.empty_table()

    def _trusted(self, table: pa.Table, request: PullRequest) -> pa.Table:
        if request.since is None or table.num_rows == 0:
            return SCHEMA.empty_table()
        committed = pc.less_equal(table.column("pull_max"), pa.scalar(request.since, TIMESTAMP))
        other_window = pc.not_equal(table.column("window_end"), pa.scalar(request.window.end, TIMESTAMP))
        return table.filter(pc.and_(committed, other_window))

    def delivered(self, request: PullRequest) -> pa.Array:
        """Row ids (see :func:`row_ids`) already delivered and committed, as seen by `request`."""
        trusted = self._trusted(self._read(request.dataset), request)
        return row_ids(trusted.column(KEY), trusted.column(UPDATED)).combine_chunks()

    def record(self, request: PullRequest, rows: pa.Table, overlap: timedelta) -> None:
        """Remember the rows (KEY, UPDATED) a completed pull delivered; forget what no overlap can reach.

        The hub's watermark never goes back: a retry of this pull starts at `since` again, a later pull
        at least at this pull's latest update time. So earlier entries are kept back to `since` minus the
        overlap, this pull's own back to its latest minus the overlap (the retry ignores them anyway).
        """
        if rows.num_rows == 0:
            return
        pull_max = pc.max(rows.column(UPDATED)).as_py()
        if pull_max is None:
            return
        new = pa.table(
            {
                KEY: rows.column(KEY).cast(pa.string()),
                UPDATED: rows.column(UPDATED).cast(TIMESTAMP),
                "window_end": pa.repeat(pa.scalar(request.window.end, TIMESTAMP), rows.num_rows),
                "pull_max": pa.repeat(pa.scalar(pull_max, TIMESTAMP), rows.num_rows),
            },
            schema=SCHEMA,
        )
        new = recent(new, request.since, overlap)
        old = self._trusted(self._read(request.dataset), request)
        if request.since is not None:
            horizon = pa.scalar(request.since - overlap - _MARGIN, TIMESTAMP)
            old = old.filter(pc.greater(old.column(UPDATED), horizon))
        kept = pa.concat_tables([old, new])
        path = self.path(request.dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(kept, tmp)
        tmp.replace(path)  # atomic: a crash leaves the previous ledger, never a torn one


def recent(rows: pa.Table, since: datetime | None, overlap: timedelta) -> pa.Table:
    """The rows (KEY, UPDATED) a later overlap can still re-read: newer than the latest minus the overlap.

    Applied after every chunk, so what a pull remembers is bounded by the overlap, not the pull's size.
    """
    if rows.num_rows == 0:
        return rows
    latest = pc.max(rows.column(UPDATED)).as_py()
    if latest is None:
        return rows.filter(pc.is_valid(rows.column(UPDATED)))
    watermark = max(t for t in (since, latest) if t is not None)
    return rows.filter(pc.greater(rows.column(UPDATED), pa.scalar(watermark - overlap - _MARGIN, TIMESTAMP)))
