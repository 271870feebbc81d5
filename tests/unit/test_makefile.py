"""What the README's two commands install: `make demo` the runtime only, `make test` the extras the suite uses
and the Debian packages pip cannot install, each once. Run against the real Makefile with pip, dpkg-query and
apt-get replaced by recorders (nothing is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$RECORD"
"""
# Answers as dpkg-query does for installed packages (listed in $INSTALLED) and fails for the others.
DPKG_QUERY = """#!/bin/sh
for asked; do :; done  # the package is the last argument
for pkg in $INSTALLED; do [ "$pkg" = "$asked" ] && { printf 'install ok installed'; exit 0; }; done
exit 1
"""


def _tool(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A venv folder whose pip and python only record their calls, and a PATH whose apt-get, sudo and
    dpkg-query are recorders too."""
    venv, tools = tmp_path / "venv", tmp_path / "tools"
    (venv / "bin").mkdir(parents=True)
    tools.mkdir()
    for name in ("pip", "python"):
        _tool(venv / "bin", name, RECORDER)
    for name in ("apt-get", "sudo"):
        _tool(tools, name, RECORDER)
    _tool(tools, "dpkg-query", DPKG_QUERY)
    record = tmp_path / "record"
    record.touch()
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "RECORD": str(record), "INSTALLED": ""}
    env.pop("MAKEFLAGS", None)
    return venv, record, env


def _make(target: str, venv: Path, env: dict[str, str]) -> None:
    subprocess.run(["make", "-s", "-C", str(ROOT), target, f"VENV={venv}"], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def _calls(record: Path) -> list[str]:
    calls = record.read_text().splitlines()
    record.write_text("")
    return [c for c in calls if not c.startswith("sudo ")]  # as root or not, the same apt-get calls


@pytest.mark.parametrize("order", [("install", "install-test"), ("install-test", "install")])
def test_each_command_installs_what_it_needs_once(sandbox: tuple[Path, Path, dict[str, str]],
                                                  order: tuple[str, str]) -> None:
    venv, record, env = sandbox
    env["INSTALLED"] = "chromium fonts-noto-cjk age"
    expected = {"install": ["pip install --quiet -e ."],
                "install-test": ["pip install --quiet -e .[dev,bench,celery]"]}
    _make(order[0], venv, env)
    assert _calls(record) == expected[order[0]]
    _make(order[1], venv, env)
    # demo after test: the test install covered the runtime; test after demo: only the extras are added.
    assert _calls(record) == ([] if order[1] == "install" else expected["install-test"])
    for target in order:  # nothing more, whichever runs again
        _make(target, venv, env)
    assert _calls(record) == []


@pytest.mark.parametrize(("installed", "apt"), [
    ("", ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk age"]),
    ("chromium age", ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends fonts-noto-cjk"]),
    ("fonts-noto-cjk chromium", ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends age"]),
    ("age fonts-noto-cjk chromium", []),
])
def test_make_test_installs_only_the_missing_debian_packages(sandbox: tuple[Path, Path, dict[str, str]],
                                                             installed: str, apt: list[str]) -> None:
    venv, record, env = sandbox
    env["INSTALLED"] = installed
    _make("system-packages", venv, env)
    assert _calls(record) == apt


def test_ci_leaves_installing_to_the_makefile() -> None:
    """`.ci/run` starts servers and calls the README's commands; it installs nothing itself."""
    script = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in script and "pip install" not in script
    assert "make test" in script


QUICK = ["tests/unit", "tests/dags", "-m", "not", "slow", "and", "not", "heavy"]  # as the recorder splits it


@pytest.mark.parametrize(("target", "selection"), [("test", []), ("test-fast", QUICK)])
def test_the_suite_runs_on_one_worker_per_core_and_lists_its_slowest_tests(
        sandbox: tuple[Path, Path, dict[str, str]], tmp_path: Path, target: str, selection: list[str]) -> None:
    """`make test` and `make test-fast` (installed already) run pytest over xdist workers, a file's tests on one
    worker (its module fixtures built once), files in collection order (the long scenarios first), and print the
    twenty slowest tests."""
    venv, record, env = sandbox
    env["INSTALLED"] = "chromium fonts-noto-cjk age"
    _tool(venv / "bin", "pytest", RECORDER)
    tools_venv, ds_venv = tmp_path / "tools-venv", tmp_path / "ds-venv"
    for folder in (tools_venv, ds_venv):
        (folder / "bin").mkdir(parents=True)
        _tool(folder / "bin", "pip", RECORDER)
    _tool(tmp_path, "python3", RECORDER)
    subprocess.run(["make", "-s", "-C", str(ROOT), target, f"VENV={venv}", f"TOOLS_VENV={tools_venv}",
                    f"DS_VENV={ds_venv}", f"PYTHON={tmp_path / 'python3'}"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    runs = [call.split() for call in _calls(record) if call.startswith("pytest")]
    assert runs == [["pytest", *selection, "-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder",
                     "--durations=20"]]
