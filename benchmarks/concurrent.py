"""Scenario 5: four province exchanges at once into one hub vs each alone (issue 8).

All four provinces are seeded under one root (their sandboxes sign with one keyring the hub trusts). Each
province's `run_exchange` runs alone into its own fresh hub home, then all four run at the same time, in
four processes, into one shared home (one catalog, one provenance log: commits serialize on the catalog
lock). Target (issue 20): the concurrent wall time at most 1.6x the slowest single run (issue 8 asked
1.3x; on 2 cores four CPU-bound runs cannot beat about 1.5x).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from benchmarks.harness import run_task
from benchmarks.report import Target, ratio
from benchmarks.shanghai_server import sandbox_env
from benchmarks.sources import PROVINCES, sandbox_root, trust_provinces

LIMIT = 1.6


@dataclass
class ConcurrentResult:
    """Each province alone, then all together."""

    dataset: str
    records: int
    single: dict[str, float] = field(default_factory=dict)  # measured section (imports excluded)
    together: dict[str, float] = field(default_factory=dict)
    single_wall: dict[str, float] = field(default_factory=dict)  # whole process, interpreter start included
    wall: float = 0.0
    committed: dict[str, str] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def table(self) -> Table:
        """One row per province, plus the wall time."""
        table = Table(title=f"four provinces at once: {self.records:,} {self.dataset} records each")
        for col in ("province", "alone s", "alone, whole process s", "together s", "status together"):
            table.add_column(col, justify="left" if col.startswith(("province", "status")) else "right")
        for p in self.single:
            table.add_row(p, f"{self.single[p]:.2f}", f"{self.single_wall[p]:.2f}", f"{self.together.get(p, 0.0):.2f}",
                          self.committed.get(p, "?"))
        table.add_row("wall, whole processes", "", f"{max(self.single_wall.values()):.2f} (slowest)",
                      f"{self.wall:.2f}", "")
        return table

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "dataset": self.dataset, "records": self.records, "single": self.single, "together": self.together,
            "single_wall": self.single_wall, "wall": self.wall, "committed": self.committed,
            "targets": [t.to_json() for t in self.targets],
        }


def run_concurrent(dataset: str, records: int, *, workdir: Path | None = None) -> ConcurrentResult:
    """Seed the four provinces, run each alone, then all four at once; judge the target."""
    result = ConcurrentResult(dataset, records)
    root = Path(tempfile.mkdtemp(prefix="bench-four-", dir=workdir))
    try:
        for province in PROVINCES:
            run_task("prepare", {"province": province, "dataset": dataset, "root": str(root), "records": records})
        with ExitStack() as stack:
            envs: dict[str, dict[str, str]] = {}
            for province in PROVINCES:
                envs[province] = sandbox_env(stack, sandbox_root(root, province), province)

            def spec(province: str, out: Path) -> dict[str, Any]:
                return {"province": province, "dataset": dataset, "root": str(root), "records": records,
                        "env": envs[province], "out": str(out)}

            for province in PROVINCES:
                started = time.perf_counter()
                alone = run_task("ours", spec(province, root / "alone" / province))
                result.single_wall[province] = time.perf_counter() - started
                result.single[province] = float(alone["seconds"])
            shared = root / "together"
            trust_provinces(root, shared / "hub")  # before the four start: they share one home
            started = time.perf_counter()
            with ThreadPoolExecutor(len(PROVINCES)) as pool:
                runs = dict(zip(PROVINCES, pool.map(lambda p: run_task("ours", spec(p, shared)), PROVINCES),
                                strict=True))
            result.wall = time.perf_counter() - started
            for province, run in runs.items():
                result.together[province] = float(run["seconds"])
                result.committed[province] = str(run["details"].get("status"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # Like with like: whole processes (interpreter start and imports included) on both sides.
    slowest = max(result.single_wall.values())
    result.targets = [Target("wall time together / slowest alone", ratio(result.wall, slowest), LIMIT,
                             note=f"{len(PROVINCES)} processes on this machine's cores, one shared catalog")]
    return result
