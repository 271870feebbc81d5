"""tests/conftest.py turns every skip into a failure under CI, also when `make test` spreads the suite over
pytest-xdist workers (the hook runs in each worker; the controller must still see a failure)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

REPO = Path(__file__).resolve().parents[2]

SAMPLE = """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("no server here")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
"""


@pytest.fixture
def sample(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A test file beside the project's conftest (loaded as a plugin), run in a fresh pytest process."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makepyfile(test_sample=SAMPLE)
    return pytester


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "two xdist workers"])
def test_under_ci_a_skip_fails_and_says_why(sample: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                            workers: list[str]) -> None:
    monkeypatch.setenv("CI", "1")
    result = sample.runpytest_subprocess("-p", "tests.conftest", "-p", "no:randomly", "-ra", *workers)
    result.assert_outcomes(passed=1, failed=1, xfailed=1)  # an expected failure is no skip
    result.stdout.fnmatch_lines(["*skipped under CI, where nothing may be: *no server here*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "two xdist workers"])
def test_locally_a_skip_stays_a_skip(sample: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                     workers: list[str]) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = sample.runpytest_subprocess("-p", "tests.conftest", "-p", "no:randomly", "-ra", *workers)
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["SKIPPED*no server here*"])
    assert result.ret == pytest.ExitCode.OK
