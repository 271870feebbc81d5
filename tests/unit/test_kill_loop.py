"""Black box: `exchange run` killed with SIGKILL at 20 different moments on the embedded default, run again,
verified intact each time (no crash point involved: wherever the kill lands)."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.base import sandbox_for
from exchange.synthetic import generate
from tests.unit.crash_harness import END, assert_settled, build_home, child_process, hub_at

DELAYS = [0.15 * i for i in range(20)]  # seconds after the command starts: spans pull, validate and commit


def _exchange_run(home: Path, start: str, end: str) -> None:
    from exchange.cli import app

    hub = hub_at(home)
    os.environ["EXCHANGE_HOME"] = str(home)
    os.environ["EXCHANGE_JIANGSU_DROP_DIR"] = str(hub.settings.jiangsu_drop_dir)
    sys.argv = ["exchange", "run", "--province", "jiangsu", "--dataset", "e_license", "--start", start, "--end", end]
    app()


@pytest.mark.slow
def test_exchange_run_killed_at_twenty_moments_then_rerun_is_intact_every_time(tmp_path: Path) -> None:
    home = build_home(tmp_path, records=60)
    hub = hub_at(home)
    sandbox = sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu")
    outcomes = []
    for number, delay in enumerate(DELAYS):
        start, end = END + timedelta(days=number), END + timedelta(days=number + 1)
        sandbox.seed("e_license", generate("e_license", "jiangsu", 60, seed=100 + number, start=start, end=end))
        child = child_process(_exchange_run, home, start.isoformat(), end.isoformat())
        time.sleep(delay)
        if child.pid is not None and child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
        child.join(60)
        outcomes.append(child.exitcode)
        from exchange.pipeline import run_exchange

        again = run_exchange("jiangsu", "e_license", start, end, hub)
        assert again.status in {"committed", "already_committed"}, (delay, again)
        assert_settled(hub)
    assert -signal.SIGKILL in outcomes, "no run was actually killed: the delays missed the run"
