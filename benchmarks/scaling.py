"""Scenario 2: time per record and peak RSS of ours (and the limit, for context) across sizes.

Targets (issues 8 and 20): time per record flat within 20 % from the smallest to the largest size; peak
RSS of the largest within 1.3x of the 1M run (or of the next-smaller size when 1M is not among the sizes),
and under 2 GB; the fixed cost per batch under 0.3 s, estimated as the intercept of the least-squares line
through (records, seconds) of ours (what a batch costs whatever its size).
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

RSS_LIMIT_MB = 2048.0
FIXED_LIMIT_SECONDS = 0.3


@dataclass
class SizePoint:
    """Ours and the limit at one size."""

    records: int
    ours_seconds: float
    ours_rss_mb: float
    limit_seconds: float
    limit_rss_mb: float
    stages: dict[str, float]

    @property
    def us_per_record(self) -> float:
        """Microseconds of ours per record."""
        return self.ours_seconds / self.records * 1e6


@dataclass
class ScalingResult:
    """All sizes for one province, with the targets."""

    province: str
    dataset: str
    points: list[SizePoint] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def table(self) -> Table:
        """One row per size."""
        table = Table(title=f"scaling {self.province} {self.dataset} (ours = run_exchange)")
        columns = ("records", "ours s", "µs / record", "ours peak RSS MB", "limit s", "limit RSS MB", "ours/limit")
        for col in columns:
            table.add_column(col, justify="right")
        table.add_column("stages")
        for p in self.points:
            table.add_row(
                f"{p.records:,}", f"{p.ours_seconds:.2f}", f"{p.us_per_record:.2f}", f"{p.ours_rss_mb:.0f}",
                f"{p.limit_seconds:.2f}", f"{p.limit_rss_mb:.0f}", f"{ratio(p.ours_seconds, p.limit_seconds)}",
                ", ".join(f"{k} {v:.2f}s" for k, v in p.stages.items()),
            )
        return table

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "province": self.province,
            "dataset": self.dataset,
            "points": [{**p.__dict__, "us_per_record": round(p.us_per_record, 3)} for p in self.points],
            "targets": [t.to_json() for t in self.targets],
        }


def fixed_cost(points: list[tuple[int, float]]) -> float | None:
    """Intercept of the least-squares line seconds = fixed + per_record * records (None below two sizes)."""
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = sum(n for n, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    slope = sum((n - mean_n) * (t - mean_t) for n, t in points) / sum((n - mean_n) ** 2 for n, _ in points)
    return mean_t - slope * mean_n


def measure_size(province: str, dataset: str, records: int, workdir: Path | None) -> SizePoint:
    """Prepare a fresh sandbox of `records` records and run the limit and ours against it."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-scale-{province}-", dir=workdir))
    try:
        base = {"province": province, "dataset": dataset, "root": str(root), "records": records}
        run_task("prepare", base)
        with ExitStack() as stack:
            env = sandbox_env(stack, sandbox_root(root, province), province)
            limit = run_task("limit", {**base, "env": env, "out": str(root / "limit")})
            ours = run_task("ours", {**base, "env": env, "out": str(root / "ours")})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return SizePoint(
        records=records,
        ours_seconds=float(ours["seconds"]),
        ours_rss_mb=float(ours["peak_rss_mb"]),
        limit_seconds=float(limit["seconds"]),
        limit_rss_mb=float(limit["peak_rss_mb"]),
        stages=dict(ours["details"].get("stages", {})),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run_scaling(province: str, dataset: str, sizes: list[int], *, workdir: Path | None = None) -> ScalingResult:
    """Measure every size (ascending) and judge the scaling targets."""
    result = ScalingResult(province, dataset)
    for records in sorted(sizes):
        result.points.append(measure_size(province, dataset, records, workdir))
    per_record = [p.us_per_record for p in result.points]
    spread = max(per_record) / min(per_record) if per_record else None
    largest = result.points[-1]
    reference = next((p for p in result.points if p.records == 1_000_000 and p is not largest), None)
    if reference is None and len(result.points) > 1:
        reference = result.points[-2]
    growth = ratio(largest.ours_rss_mb, reference.ours_rss_mb) if reference else None
    span = f"{result.points[0].records:,}..{largest.records:,}"
    result.targets = [
        Target("time per record, max/min", round(spread, 3) if spread else None, 1.2, note=span),
        Target(
            "peak RSS, largest / reference", growth, 1.3,
            note=f"{largest.records:,} vs {reference.records:,}" if reference else "needs two sizes",
        ),
        Target("peak RSS of the largest, MB", largest.ours_rss_mb, RSS_LIMIT_MB, note=f"{largest.records:,} records"),
        Target("fixed cost per batch, s", _rounded(fixed_cost([(p.records, p.ours_seconds) for p in result.points])),
               FIXED_LIMIT_SECONDS, note="intercept of the least-squares line through (records, seconds)"),
    ]
    return result
