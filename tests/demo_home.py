"""One demo-sized EXCHANGE_HOME per pytest run, shared by the Airflow scenarios; each test works on a copy.

`exchange demo` takes minutes (four province DAGs, publish, sharing and audit through Airflow), and the e2e
and UI scenarios need the same home. The first xdist worker that asks builds it under the run's base temp
(shared by the workers of one run, fresh per run) while holding a file lock; the others wait on the lock and
reuse it. A failed build is recorded, so a waiter fails with the same message instead of building again.

The original is never handed out: tests get `copy_home` copies, since `exchange verify`, `airflow up`, the
audit DAG and the tamper tests write into the home they are given. Airflow's settings and the hub's are derived
from EXCHANGE_HOME when a process starts, and the lake is attached with its data path overridden
(exchange/lake/connect.py), so a copy works on itself. Absolute paths remain in records (the provenance log,
audit reports, Airflow's run notes and XComs), which name where things were and are not followed. (The local
time-stamping authority's openssl.cnf named its folder absolutely until this test found a copy's audit
stamping with the original's key: it now says `dir = .`, exchange/provenance/tsa.py.)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

RECORDS = 1500  # per province and dataset: what the e2e scenario's counts assert
EXCHANGE = str(Path(sys.executable).with_name("exchange"))


@dataclass(frozen=True)
class DemoHome:
    home: Path  # the shared original: copy it (copy_home) before anything runs against it
    stdout: str  # what `exchange demo` printed
    built: datetime  # when the demo finished: its runs are the windows due by then, later windows are new runs


def anchor_of(home: Path) -> Path:
    """Where the demo pins the home's root key: beside the home, never in it (exchange.demo.anchor_path)."""
    return home.parent / f"{home.name}.trust-anchor"


def demo_env(home: Path) -> dict[str, str]:
    """The environment of a user running `exchange` on `home`: none of this process's EXCHANGE_*/AIRFLOW*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXCHANGE_", "AIRFLOW"))}
    env.update({"EXCHANGE_HOME": str(home), "COLUMNS": "200"})
    return env


def _run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base temp is <run's base temp>/popen-gwN; without it, the base temp is the run's.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_demo_home(tmp_path_factory: pytest.TempPathFactory) -> DemoHome:
    """The run's demo home, built by whichever worker asks first."""
    root = _run_root(tmp_path_factory) / "shared-demo-home"
    root.mkdir(exist_ok=True)
    home, done, failed = root / "home", root / "demo.stdout", root / "demo.failed"
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if failed.exists():
            pytest.fail(f"the shared demo home failed to build (in another worker):\n{failed.read_text()}")
        if not done.exists():
            try:
                out = subprocess.run(
                    [EXCHANGE, "demo", "--home", str(home), "--records", str(RECORDS)],
                    env=demo_env(home),
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
            except Exception as exc:  # e.g. the timeout: the waiters fail with it too rather than wait again
                failed.write_text(f"{type(exc).__name__}: {exc}")
                raise
            if out.returncode != 0:
                message = f"demo failed (exit {out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
                failed.write_text(message)
                pytest.fail(message)
            done.write_text(out.stdout)
    return DemoHome(home, done.read_text(), datetime.fromtimestamp(done.stat().st_mtime, UTC))


def copy_home(home: Path, into: Path) -> Path:
    """A copy of `home` as `into`/home, its pinned trust anchor beside it as the demo left it."""
    into.mkdir(parents=True, exist_ok=True)
    copy = into / "home"
    shutil.copytree(home, copy, symlinks=True)
    # The operator's pin is not part of the home: an attacker copying or editing the home does not touch it.
    shutil.copy(anchor_of(home), anchor_of(copy))
    return copy
