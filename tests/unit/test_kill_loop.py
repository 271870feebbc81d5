"""Black box: `exchange run` killed with SIGKILL at every write boundary of pull, validate and commit on the
embedded default, run again, verified intact each time.

No kill hopes on timing: the run is started with EXCHANGE_PAUSE_AT naming one of exchange/faults.py's points, it
stops there and says so (the point's name and its pid in a file), and only then is it killed from outside. So
every boundary the command passes is killed at, on any machine however loaded, and a point added to
faults.POINTS for these stages is killed at as soon as it is declared.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.base import sandbox_for
from exchange.faults import PAUSE_ENV, PAUSE_FILE_ENV, POINTS
from exchange.synthetic import generate
from tests.unit.crash_harness import END, assert_settled, build_home, child_process, hub_at

# The points `exchange run` passes: its stages are pull, validate and commit.
RUN_POINTS = [p for p in POINTS if p.split(".", 1)[0] in {"pull", "validate", "commit"}]
POLL = 0.05  # how often the watcher looks for the paused run's evidence (a poll interval, not a bound)
HANG = 600  # a run that neither pauses nor ends in this long is hung: fail rather than wait for ever


def _exchange_run(home: Path, start: str, end: str, point: str, evidence: Path) -> None:
    from exchange.cli import app

    hub = hub_at(home)
    os.environ["EXCHANGE_HOME"] = str(home)
    os.environ["EXCHANGE_JIANGSU_DROP_DIR"] = str(hub.settings.jiangsu_drop_dir)
    os.environ[PAUSE_ENV] = point
    os.environ[PAUSE_FILE_ENV] = str(evidence)
    sys.argv = ["exchange", "run", "--province", "jiangsu", "--dataset", "e_license", "--start", start, "--end", end]
    app()


def _paused_at(evidence: Path, child_exitcode: object) -> str | None:
    """The `<point> <pid>` line the paused run wrote, or None while it has not paused yet."""
    if evidence.exists():
        return evidence.read_text(encoding="utf-8").strip()
    assert child_exitcode is None, f"the run ended (exit {child_exitcode}) without reaching its pause point"
    return None


@pytest.mark.slow
def test_exchange_run_killed_at_every_write_boundary_then_rerun_is_intact_every_time(tmp_path: Path) -> None:
    assert {p.split(".", 1)[0] for p in RUN_POINTS} == {"pull", "validate", "commit"}, RUN_POINTS
    home = build_home(tmp_path, records=60)
    hub = hub_at(home)
    sandbox = sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu")
    for number, point in enumerate(RUN_POINTS):
        start, end = END + timedelta(days=number), END + timedelta(days=number + 1)
        sandbox.seed("e_license", generate("e_license", "jiangsu", 60, seed=100 + number, start=start, end=end))
        evidence = tmp_path / f"paused-{number}"
        child = child_process(_exchange_run, home, start.isoformat(), end.isoformat(), point, evidence)
        try:
            hang_at = time.monotonic() + HANG
            while (seen := _paused_at(evidence, child.exitcode)) is None:
                assert time.monotonic() < hang_at, f"the run neither paused at {point} nor ended: hung"
                time.sleep(POLL)
            assert seen == f"{point} {child.pid}", (point, seen)
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join()
        finally:
            if child.exitcode is None:  # a failed assertion above: never leave a paused run behind
                child.kill()
                child.join()
        assert child.exitcode == -signal.SIGKILL, (point, child.exitcode)
        from exchange.pipeline import run_exchange

        again = run_exchange("jiangsu", "e_license", start, end, hub)
        assert again.status in {"committed", "already_committed"}, (point, again)
        assert_settled(hub)
