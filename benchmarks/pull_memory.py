"""Bounded memory of the pull stage (issue 3): peak RSS of a pull must not grow with the pull's size.

Each size gets a fresh sandbox; a fresh interpreter then runs only the province adapter's ``pull`` over
the whole seeded window (landing copy included, chunks counted and dropped), while the harness samples
its RSS. Target: the largest pull's peak RSS within 1.3x of the smallest's. The widest chunk any adapter
yielded is reported beside it, since the chunk size is what memory may legitimately scale with.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from benchmarks.harness import run_task
from benchmarks.report import Target, ratio
from benchmarks.shanghai_server import sandbox_env
from benchmarks.sources import sandbox_root

GROWTH_LIMIT = 1.3


@dataclass
class PullPoint:
    """One pull: its size, time, peak RSS and the largest chunk it yielded."""

    records: int
    seconds: float
    peak_rss_mb: float
    largest_chunk: int


@dataclass
class PullMemoryResult:
    """Every size for one province."""

    province: str
    dataset: str
    points: list[PullPoint] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def table(self) -> Table:
        """One row per size."""
        table = Table(title=f"pull memory {self.province} {self.dataset} (adapter.pull only, landing included)")
        for col in ("records", "seconds", "peak RSS MB", "largest chunk (rows)"):
            table.add_column(col, justify="right")
        for p in self.points:
            table.add_row(f"{p.records:,}", f"{p.seconds:.2f}", f"{p.peak_rss_mb:.0f}", f"{p.largest_chunk:,}")
        return table

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "province": self.province, "dataset": self.dataset,
            "points": [p.__dict__ for p in self.points], "targets": [t.to_json() for t in self.targets],
        }


def measure_pull(province: str, dataset: str, records: int, workdir: Path | None) -> PullPoint:
    """Seed a fresh sandbox with `records` records and pull them all in a fresh interpreter."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-pull-{province}-", dir=workdir))
    try:
        base = {"province": province, "dataset": dataset, "root": str(root), "records": records}
        run_task("prepare", base)
        with ExitStack() as stack:
            env = sandbox_env(stack, sandbox_root(root, province), province)
            result = run_task("pull", {**base, "env": env, "out": str(root / "pull")})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return PullPoint(
        records=records, seconds=float(result["seconds"]), peak_rss_mb=float(result["peak_rss_mb"]),
        largest_chunk=int(result["details"]["largest_chunk"]),
    )


def run_pull_memory(province: str, dataset: str, sizes: list[int], *, workdir: Path | None = None) -> PullMemoryResult:
    """Measure every size (ascending) and judge the bounded-memory target."""
    result = PullMemoryResult(province, dataset)
    for records in sorted(sizes):
        result.points.append(measure_pull(province, dataset, records, workdir))
    smallest, largest = result.points[0], result.points[-1]
    result.targets = [
        Target(
            "peak RSS, largest / smallest pull", ratio(largest.peak_rss_mb, smallest.peak_rss_mb), GROWTH_LIMIT,
            note=f"{largest.records:,} vs {smallest.records:,} records",
        ),
    ]
    return result
