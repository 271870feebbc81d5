"""`exchange airflow down` stops what `up` started, all of it and at once, on a process tree shaped like
Airflow's: a component leading its own session, with a child in a process group of its own (as the
LocalExecutor's task processes are) that it waits for when told to stop (as the scheduler waits on its
tasks). The old `down` signalled only the component's group: the component waited for a child never told to
stop, was killed after the grace, and the child ran on as an orphan."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from exchange.airflow.launcher import UiPaths, alive, down, session_members
from exchange.config import ExchangeSettings, Layout

COMPONENT = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import os, sys, time; os.setpgid(0, 0); "
                          "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)", sys.argv[1]])
def stop(signum, frame):
    child.wait()  # a component does not exit before its running tasks
    open(sys.argv[2], "w").write("exited on SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
"""


def _wait_for(path: Path) -> str:
    for _ in range(600):
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def test_down_stops_a_component_and_its_task_processes_at_once(tmp_path: Path) -> None:
    settings = ExchangeSettings(home=tmp_path / "home")
    paths = UiPaths(Layout(settings.home))
    paths.run.mkdir(parents=True)
    child_file, clean_file = tmp_path / "child.pid", tmp_path / "clean"
    # Not this test's child (a double fork through a shell), as `up`'s components are not `down`'s.
    script = tmp_path / "component.py"
    script.write_text(COMPONENT)
    shell = subprocess.run(["sh", "-c", f'setsid "{sys.executable}" {script} {child_file} {clean_file} '
                            '>/dev/null 2>&1 & echo $!'], capture_output=True, text=True, check=True)
    leader = int(shell.stdout.strip())
    paths.pid("scheduler").write_text(f"{leader}\n")
    task = int(_wait_for(child_file))
    try:
        assert alive(leader) and alive(task)
        assert {leader, task} <= session_members({leader})

        stopped = down(settings, grace=60)

        assert stopped == ["scheduler"]
        assert not alive(task), "the task process outlived down (an orphan)"
        assert not alive(leader)
        # Everything ended on SIGTERM: nothing was left for SIGKILL, so down did not sit out its grace.
        assert _wait_for(clean_file) == "exited on SIGTERM"
        assert not paths.pid("scheduler").exists()
    finally:
        for pid in (leader, task):
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)
