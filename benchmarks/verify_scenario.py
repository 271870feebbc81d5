"""Scenario 4: full verify of a lake vs ``sha256sum`` over the same files, and incremental verify
after one new batch.

The lake is built by committing `batches` one-week windows through run_exchange; ``sha256sum`` then
reads exactly the files verify hashes (lake Parquet, landing copies, manifests, provenance log), so
the throughput ratio is ``sha256sum seconds / verify seconds`` over the same bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from benchmarks.harness import Stopwatch, run_task
from benchmarks.report import Target, ratio
from benchmarks.shanghai_server import sandbox_env
from benchmarks.sources import sandbox_root, window

HASHED_FOLDERS = ("lake/data", "landing", "manifests", "provenance")


def build_lake(
    province: str, dataset: str, home: Path, env: dict[str, str], weeks: list[int]
) -> tuple[float, int, dict[str, Any]]:
    """Commit the given one-week windows through run_exchange into the EXCHANGE_HOME `home`."""
    os.environ.update(env)
    from exchange.config import ExchangeSettings
    from exchange.pipeline import Hub, run_exchange

    hub = Hub(ExchangeSettings(home=home))
    rows = 0
    with Stopwatch() as watch:
        for week in weeks:
            start, end = window(week)
            rows += int(run_exchange(province, dataset, start, end, hub).get("pulled", 0))
    return watch.seconds, rows, {}


def run_verify(home: Path, incremental: bool) -> tuple[float, int, dict[str, Any]]:
    """verify_home on `home` (recording its checkpoint, as `exchange verify` does)."""
    from exchange.config import ExchangeSettings
    from exchange.provenance.verify import verify_home

    settings = ExchangeSettings(home=home)
    with Stopwatch() as watch:
        report = verify_home(settings, incremental=incremental)
    return watch.seconds, 0, {"ok": report.ok, "mode": report.mode}


def hashed_files(home: Path) -> list[Path]:
    """The files a full verify reads and hashes."""
    return sorted(p for folder in HASHED_FOLDERS for p in (home / folder).rglob("*") if p.is_file())


def sha256sum_seconds(files: list[Path]) -> float:
    """Wall time of coreutils ``sha256sum`` over `files` (one process, as an auditor would run it)."""
    t0 = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, files)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


@dataclass
class VerifyResult:
    """Figures and targets of one verify run."""

    province: str
    dataset: str
    records_per_batch: int
    batches: int
    lake_mb: float
    hashed_mb: float
    full_seconds: float
    full_rss_mb: float
    sha256sum_seconds: float
    incremental_seconds: float
    ok: bool
    targets: list[Target] = field(default_factory=list)

    def table(self) -> Table:
        """One row of figures."""
        title = f"verify {self.province} {self.dataset}: {self.batches} batches of {self.records_per_batch:,}"
        table = Table(title=title)
        for col in ("lake Parquet MB", "hashed MB", "verify s", "verify MB/s", "sha256sum s", "sha256sum MB/s",
                    "verify RSS MB", "incremental s", "intact"):
            table.add_column(col, justify="right")
        table.add_row(
            f"{self.lake_mb:.0f}", f"{self.hashed_mb:.0f}", f"{self.full_seconds:.2f}",
            f"{self.hashed_mb / self.full_seconds:.0f}", f"{self.sha256sum_seconds:.2f}",
            f"{self.hashed_mb / self.sha256sum_seconds:.0f}", f"{self.full_rss_mb:.0f}",
            f"{self.incremental_seconds:.2f}", str(self.ok),
        )
        return table

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {**{k: v for k, v in self.__dict__.items() if k != "targets"},
                "targets": [t.to_json() for t in self.targets]}


def run_verify_scenario(
    province: str, dataset: str, records: int, batches: int, *, workdir: Path | None = None
) -> VerifyResult:
    """Build a lake of `batches` batches, verify it fully, add one batch, verify incrementally."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-verify-{province}-", dir=workdir))
    home = root / "province-home"  # the sandboxes sign with this home's keyring, as in the embedded layout
    try:
        base = {"province": province, "dataset": dataset, "root": str(root), "records": records}
        run_task("prepare", {**base, "weeks": batches + 1})
        with ExitStack() as stack:
            env = sandbox_env(stack, sandbox_root(root, province), province)
            lake = {**base, "env": env, "home": str(home)}
            run_task("build_lake", {**lake, "weeks": list(range(batches))})
            files = hashed_files(home)
            hashed_bytes = sum(p.stat().st_size for p in files)
            lake_bytes = sum(p.stat().st_size for p in (home / "lake" / "data").rglob("*.parquet"))
            full = run_task("verify", {"home": str(home)})
            sha = min(sha256sum_seconds(files) for _ in range(2))  # the second run reads from page cache too
            run_task("build_lake", {**lake, "weeks": [batches]})
            incremental = run_task("verify", {"home": str(home), "incremental": True})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = VerifyResult(
        province=province, dataset=dataset, records_per_batch=records, batches=batches,
        lake_mb=round(lake_bytes / 2**20, 1), hashed_mb=round(hashed_bytes / 2**20, 1),
        full_seconds=float(full["seconds"]), full_rss_mb=float(full["peak_rss_mb"]),
        sha256sum_seconds=sha, incremental_seconds=float(incremental["seconds"]),
        ok=bool(full["details"]["ok"]) and bool(incremental["details"]["ok"]),
    )
    result.targets = [
        Target("verify throughput / sha256sum throughput", ratio(sha, result.full_seconds), 0.7, at_most=False,
               note=f"lake {result.lake_mb:.0f} MB (issue asks >= 2 GB)"),
        Target("incremental verify after one batch, s", round(result.incremental_seconds, 3), 1.0),
        Target("verify reports intact", 1.0 if result.ok else 0.0, 1.0, at_most=False),
    ]
    return result
