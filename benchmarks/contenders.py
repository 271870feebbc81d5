"""The ingest contenders, each run inside a worker subprocess against a prepared sandbox.

* ``limit``: the native read (:mod:`benchmarks.sources`) straight into one Parquet file, no checks.
* ``ours``: :func:`exchange.pipeline.run_exchange` (pull -> contract -> quarantine -> sign -> DuckLake
  commit -> provenance), with each stage timed.
* ``peer``: what a user would glue together: the same native read and mapping yielded as Arrow tables
  from a dlt resource into DuckDB, then Great Expectations (COMPLETE, per-row results) on an equivalent
  suite read back from DuckDB, then a SHA-256 manifest of the written files.
* ``dictpath``: dlt's default path, one Python dict per record, on a sub-sample.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchmarks.harness import Stopwatch
from benchmarks.sources import (
    CANONICAL_FILE,
    WINDOW_END,
    WINDOW_START,
    canonical_tables,
    native_tables,
    trust_provinces,
)

FLAT_LINES = 40  # functions listed by own time under the call tree


def run_limit(
    province: str, dataset: str, root: Path, env: dict[str, str], out_dir: Path
) -> tuple[float, int, dict[str, Any]]:
    """Native source -> Arrow -> one Parquet file."""
    out = out_dir / "limit.parquet"
    rows = 0
    with Stopwatch() as watch:
        writer: pq.ParquetWriter | None = None
        for table in native_tables(province, dataset, root, env):
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table.cast(writer.schema))
            rows += table.num_rows
        if writer is not None:
            writer.close()
    return watch.seconds, rows, {"parquet_mb": round(out.stat().st_size / 2**20, 1) if out.exists() else 0}


def run_ours(
    province: str, dataset: str, root: Path, env: dict[str, str], out_dir: Path, profile: str | None = None
) -> tuple[float, int, dict[str, Any]]:
    """run_exchange end to end on a fresh EXCHANGE_HOME; stage times come from wrapping the stages."""
    import os
    import time

    os.environ.update(env)
    from exchange import pipeline
    from exchange.config import ExchangeSettings
    from exchange.hub import Hub

    stages: dict[str, float] = {}
    for name in ("pull", "validate", "commit"):
        original = getattr(pipeline, name)

        def timed(*args: Any, _f: Any = original, _n: str = name, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                stages[_n] = round(time.perf_counter() - t0, 3)

        setattr(pipeline, name, timed)
    trust_provinces(root, out_dir / "hub")
    hub = Hub(ExchangeSettings(home=out_dir / "hub"))
    with _profiled(profile) as reports, Stopwatch() as watch:
        summary = pipeline.run_exchange(province, dataset, WINDOW_START, WINDOW_END, hub)
    result = summary.model_dump(mode="json")  # a pull's result (nothing to commit) has no commit counts
    details = {
        "stages": stages,
        "accepted": result.get("accepted"),
        "quarantined": result.get("quarantined"),
        "snapshot_id": result.get("snapshot_id"),
        "status": summary.status,
        **({"profile": reports} if reports else {}),
    }
    return watch.seconds, summary.pulled, details


@contextmanager
def _profiled(prefix: str | None) -> Iterator[dict[str, str]]:
    """Sample the block with pyinstrument (a 1 ms sampler of the main thread: far less skew than cProfile's
    per-call hooks) and write the reports of :func:`write_profile`; the yielded dict names them once written."""
    reports: dict[str, str] = {}
    if not prefix:
        yield reports
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        yield reports
    finally:
        profiler.stop()
    reports.update(write_profile(profiler, Path(prefix)))


def write_profile(profiler: Any, prefix: Path) -> dict[str, str]:
    """The call tree (time-ordered, frames under 1 % folded) and the hottest functions by own time as
    text, pyinstrument's interactive HTML, and the session (``pyinstrument --load=<prefix>.pyisession``)."""
    text, html, session = (Path(f"{prefix}.{ext}") for ext in ("txt", "html", "pyisession"))
    tree = profiler.output_text(unicode=True, color=False, show_all=False)
    hottest = "\n".join(f"{seconds:8.3f}  {label}" for label, seconds in own_times(profiler.last_session.root_frame()))
    text.write_text(f"{tree}\n\nThe {FLAT_LINES} hottest functions by own time (s, summed over the call tree):\n"
                    f"{hottest}\n")
    profiler.write_html(html)
    profiler.last_session.save(session)
    return {"text": str(text), "html": str(html), "session": str(session)}


def own_times(root: Any, top: int = FLAT_LINES) -> list[tuple[str, float]]:
    """Seconds sampled in each function itself (not its callees), summed wherever it was called from.

    Walks the unprocessed frame tree, where a frame's own samples are its synthetic ``[self]`` leaves
    (pyinstrument's flat renderer merged every library's ``[self]`` into one row, hence this).
    """
    totals: dict[str, float] = {}
    stack = [root]
    while stack:
        frame = stack.pop()
        for child in frame.children:
            if child.is_synthetic_leaf:
                name = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
                label = f"{name}  {frame.file_path_short}:{frame.line_no}"
                totals[label] = totals.get(label, 0.0) + float(child.time)
            else:
                stack.append(child)
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


def run_pull(
    province: str, dataset: str, root: Path, env: dict[str, str], out_dir: Path
) -> tuple[float, int, dict[str, Any]]:
    """Only the province adapter's pull over the whole window: chunks are counted and dropped."""
    import os

    os.environ.update(env)
    from adapters.base import Landing, PullRequest, Window, adapter_for
    from exchange.config import ExchangeSettings

    trust_provinces(root, out_dir / "hub")
    adapter = adapter_for(province, ExchangeSettings(home=out_dir / "hub"))
    request = PullRequest(dataset, Window(WINDOW_START, WINDOW_END), None)
    rows = largest = 0
    with Stopwatch() as watch:
        for chunk in adapter.pull(request, Landing(out_dir / "landing")):
            rows += chunk.num_rows
            largest = max(largest, chunk.num_rows)
    return watch.seconds, rows, {"largest_chunk": largest}


def _dlt_pipeline(out_dir: Path, name: str) -> Any:
    import dlt

    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(out_dir / f"{name}.duckdb")),
        dataset_name="exchange",
        pipelines_dir=str(out_dir / f"{name}-dlt"),
    )


def run_peer(
    province: str, dataset: str, root: Path, env: dict[str, str], out_dir: Path
) -> tuple[float, int, dict[str, Any]]:
    """dlt (Arrow path) -> DuckDB, then GX COMPLETE on the loaded table, then SHA-256 manifest."""
    import dlt
    import duckdb

    from benchmarks.peer_suite import validate_complete

    phases: dict[str, float] = {}
    with Stopwatch() as watch:
        with Stopwatch() as load:

            @dlt.resource(name=dataset, write_disposition="append")
            def records() -> Any:
                yield from canonical_tables(province, dataset, root, env)

            pipeline = _dlt_pipeline(out_dir, "peer")
            pipeline.run(records())
        phases["read+dlt_load"] = round(load.seconds, 3)
        with Stopwatch() as check:
            db_path = out_dir / "peer.duckdb"
            with duckdb.connect(str(db_path), read_only=True) as con:
                frame = con.sql(f"SELECT * FROM exchange.{dataset}").df()
            unexpected = validate_complete(frame, dataset, province)
        phases["gx_complete"] = round(check.seconds, 3)
        with Stopwatch() as digest:
            manifest = _sha256_manifest([db_path, *sorted((out_dir / "peer-dlt").rglob("*.parquet"))])
            (out_dir / "peer-manifest.json").write_text(json.dumps(manifest, indent=1))
        phases["sha256_manifest"] = round(digest.seconds, 3)
    return watch.seconds, len(frame), {"phases": phases, "unexpected_rows": unexpected, "files": len(manifest)}


def run_dictpath(dataset: str, root: Path, sample: int, out_dir: Path) -> tuple[float, int, dict[str, Any]]:
    """dlt's default path: a resource yielding one dict per record (the first `sample` canonical records)."""
    import dlt

    table = pq.read_table(root / CANONICAL_FILE).slice(0, sample)
    rows = table.to_pylist()  # the user's records as dicts are the input, not part of the measured load
    with Stopwatch() as watch:

        @dlt.resource(name=dataset, write_disposition="append")
        def records() -> Any:
            yield from rows

        _dlt_pipeline(out_dir, "dictpath").run(records())
    return watch.seconds, len(rows), {}


def _sha256_manifest(paths: list[Path]) -> list[dict[str, Any]]:
    manifest = []
    for path in paths:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        manifest.append({"path": str(path), "sha256": digest.hexdigest(), "size": path.stat().st_size})
    return manifest
