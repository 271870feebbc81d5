"""Run one contender in a fresh subprocess and measure it: wall time (reported by the child around the
measured section only, imports excluded) and peak RSS (psutil polling from the parent, cross-checked
with the child's own ``ru_maxrss``)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

RESULT_PREFIX = "BENCH-RESULT "
POLL_SECONDS = 0.02


class ContenderFailed(RuntimeError):
    """A contender's subprocess exited non-zero; the message carries its stderr tail."""


@dataclass
class Measurement:
    """What one contender did: seconds of the measured section, peak RSS, rows and free-form details."""

    name: str
    seconds: float
    peak_rss_mb: float
    rows: int
    extrapolated: bool = False
    sample_rows: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def _tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all its descendants, in bytes (0 once it has gone)."""
    try:
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return int(total)
    except psutil.Error:
        return 0


def run_task(
    task: str, spec: dict[str, Any], *, env: dict[str, str] | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run ``benchmarks.worker <task>`` with `spec` in a fresh interpreter; its result plus ``peak_rss_mb``."""
    cmd = [sys.executable, "-m", "benchmarks.worker", task, json.dumps(spec)]
    child_env = {**os.environ, **(env or {}), "RUNTIME__DLTHUB_TELEMETRY": "false"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env, cwd=_project_root()
    )
    watched = psutil.Process(proc.pid)
    peak = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(watched))
            stop.wait(POLL_SECONDS)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        poller.join()
    if proc.returncode != 0:
        raise ContenderFailed(f"{task} exited {proc.returncode}:\n{err[-4000:]}")
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise ContenderFailed(f"{task} printed no result:\n{out[-2000:]}\n{err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["peak_rss_mb"] = round(max(peak / 2**20, float(result.get("ru_maxrss_mb", 0.0))), 1)
    return result


def measure(name: str, task: str, spec: dict[str, Any], *, env: dict[str, str] | None = None) -> Measurement:
    """Run a contender task and wrap its result as a :class:`Measurement`."""
    result = run_task(task, spec, env=env)
    return Measurement(
        name=name,
        seconds=float(result["seconds"]),
        peak_rss_mb=float(result["peak_rss_mb"]),
        rows=int(result.get("rows", 0)),
        details=dict(result.get("details", {})),
    )


def emit(seconds: float, rows: int, details: dict[str, Any] | None = None) -> None:
    """Print a worker's result line (read by :func:`run_task`)."""
    import resource

    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    doc = {"seconds": seconds, "rows": rows, "details": details or {}, "ru_maxrss_mb": maxrss_kb / 1024}
    print(RESULT_PREFIX + json.dumps(doc, default=str), flush=True)


class Stopwatch:
    """Context manager measuring wall time with ``time.perf_counter``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def machine() -> dict[str, Any]:
    """Cores, memory (from /proc/meminfo), load and Python: the context every figure needs."""
    mem_kb = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "mem_total_gb": round(mem_kb / 2**20, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


def _project_root() -> str:
    return str(Path(__file__).resolve().parent.parent)
