"""`make test-fast` leaves out the tests tests/heavy.txt lists; the list must name tests that exist, and the tool
that writes it must turn a JUnit report into pytest's node ids (tools/heavy_tests.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import HEAVY, REPO
from tools import heavy_tests

pytest_plugins = ("pytester",)


def test_every_listed_heavy_test_exists() -> None:
    """A renamed or deleted test left in the list would silently return to the quick loop under its new name
    only; a stale line is caught here, cheaply (no collection), by its file and function."""
    stale = []
    for line in HEAVY.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        path, *classes, name = line.split("::")
        # A test class (also a Hypothesis state machine's TestCase, whose one test is runTest) by its name.
        function = name.split("[", 1)[0]
        pattern = rf"^(class {classes[0]}\b|{classes[0]} = )" if classes else rf"^\s*(async )?def {function}\("
        source = REPO / path
        if not source.is_file() or not re.search(pattern, source.read_text(), re.M):
            stale.append(line)
    assert not stale, f"tests/heavy.txt lists tests that do not exist (re-run tools/heavy_tests.py): {stale}"


def test_the_tool_lists_slow_unit_tests_by_node_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "run.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.unit.test_heavy_list" name="test_every_listed_heavy_test_exists" time="0.2"/>'
        '<testcase classname="tests.unit.test_sharing_machine.TestRequests" name="test_x[a-b]" time="3.5"/>'
        '<testcase classname="tests.integration.test_api_load" name="test_y" time="60"/>'
        '<testcase classname="tests.unit.test_makefile" name="test_z" time="1.0"/>'
        "</testsuite></testsuites>", encoding="utf-8")
    monkeypatch.setattr(heavy_tests, "OUT", tmp_path / "heavy.txt")
    assert heavy_tests.main([str(report), "--seconds", "1.0"]) == 0
    listed = [line for line in (tmp_path / "heavy.txt").read_text().splitlines() if not line.startswith("#")]
    # Integration tests have their own marker; a class's tests keep their class in the id.
    assert listed == ["tests/unit/test_makefile.py::test_z",
                      "tests/unit/test_sharing_machine.py::TestRequests::test_x[a-b]"]


def test_the_listed_tests_are_marked_heavy(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The marking itself (tests/conftest.py's hook), on a throwaway project whose list names one of two tests."""
    listed = pytester.makefile(".txt", heavy="# a comment\ntest_two.py::test_heavy\n")
    monkeypatch.setattr(conftest, "HEAVY", listed)
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    pytester.makepyfile(test_two="def test_heavy():\n    pass\n\ndef test_light():\n    pass\n")
    pytester.makeini("[pytest]\nmarkers =\n    heavy: listed\n")
    result = pytester.runpytest("-p", "no:randomly", "-m", "not heavy", "-v")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*test_light PASSED*"])


def test_each_tests_cpu_time_is_logged_when_asked(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """EXCHANGE_TEST_CPU_LOG: one line per test, its CPU seconds (children it waited for included), wall start and
    end, worker and node id."""
    log = tmp_path / "cpu.log"
    monkeypatch.setattr(conftest, "CPU_LOG", str(log))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # this test may itself run on a worker
    pytester.makeconftest("from tests.conftest import pytest_runtest_protocol  # noqa: F401\n")
    pytester.makepyfile(test_two="import subprocess, sys\n\n"
                                 "def test_child():\n"
                                 "    subprocess.run([sys.executable, '-c', 'sum(range(3_000_000))'], check=True)\n\n"
                                 "def test_idle():\n    pass\n")
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)
    lines = [line.split("\t") for line in log.read_text().splitlines()]
    seconds = {node: float(cpu) for cpu, _, _, _, node in lines}
    assert set(seconds) == {"test_two.py::test_child", "test_two.py::test_idle"}
    assert seconds["test_two.py::test_child"] > seconds["test_two.py::test_idle"]
    (_, start_1, end_1, worker, _), (_, start_2, _, _, _) = lines
    assert float(start_1) <= float(end_1) <= float(start_2) and worker == "main"
