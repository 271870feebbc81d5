"""Shared fixtures: an isolated EXCHANGE_HOME per test and the project's paths."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

# pytest-xdist workers (`make test`) start with COLUMNS=80 in their environment. The CLI's rich console reads
# COLUMNS once, when exchange.cli is imported, and would then wrap at 80 whatever width a test's CliRunner env
# asks for; without it the console reads the width of each call, as in a single pytest process.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)

from exchange.signing.anchor import when_unpinned as _UNPINNED  # the product's policy, before the fixture pins
from tests.demo_home import DemoHome, shared_demo_home

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _hub_roots_pinned() -> Iterator[None]:
    """Every test hub verifies as if its operator had pinned its root key (EXCHANGE_TRUST_ANCHOR) when setting it
    up, so tests of other features see intact or BROKEN, not UNANCHORED. The pin is the root of the bundle under
    test; tests of the anchor itself pin explicitly (a configured anchor takes precedence) or use `unpinned`."""
    from exchange.signing import anchor

    def roots_of_the_bundle_under_test(bundle: anchor.TrustBundle) -> anchor.Anchor | None:
        ids = anchor.root_ids(bundle)
        return anchor.Anchor(frozenset(ids), "test fixture: the test hub's root") if ids else None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(anchor, "when_unpinned", roots_of_the_bundle_under_test)
        yield


@pytest.fixture
def unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """No trust anchor at all, as on a hub whose operator never pinned one (the product's own policy)."""
    from exchange.signing import anchor

    monkeypatch.delenv(anchor.SETTING, raising=False)
    monkeypatch.setattr(anchor, "when_unpinned", _UNPINNED)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh EXCHANGE_HOME, also exported so code reading settings from the environment sees it."""
    root = tmp_path / "home"
    monkeypatch.setenv("EXCHANGE_HOME", str(root))
    yield root


HEAVY = REPO / "tests" / "heavy.txt"  # written by tools/heavy_tests.py


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests tests/heavy.txt lists `heavy`: `make test-fast` deselects them, `make test` runs them. Under
    `make mutation`, run a mutant's tests fastest first."""
    listed = {line for line in HEAVY.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")}
    for item in items:
        if item.nodeid in listed:
            item.add_marker(pytest.mark.heavy)
    if "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", ""):
        _fastest_first(items, REPO / "mutmut-stats.json")


def _fastest_first(items: list[pytest.Item], stats: Path) -> None:
    """Order a mutant's tests by mutmut's own timings, a module's tests kept together (modules by their fastest
    test): mutmut passes them by call time alone, so modules interleave and a module's fixtures are set up again
    each time its tests resume; its fork server passes them in no order. A killed mutant costs the tests before
    the first failure. The tests run in the mutants/ copy, beside mutmut's stats file."""
    import json

    try:
        seconds: dict[str, float] = json.loads(stats.read_text(encoding="utf-8"))["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    fastest: dict[str, float] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        fastest[module] = min(fastest.get(module, float("inf")), seconds.get(item.nodeid, float("inf")))
    items.sort(key=lambda item: (fastest[item.nodeid.split("::")[0]], item.nodeid.split("::")[0],
                                 seconds.get(item.nodeid, float("inf"))))


CPU_LOG = os.environ.get("EXCHANGE_TEST_CPU_LOG")  # a file: append each test's CPU seconds to it


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, None]:
    """With EXCHANGE_TEST_CPU_LOG set, log the CPU time each test took (setup to teardown, this process and the
    children it waited for, e.g. `exchange` subprocesses and Airflow components), when it started and ended (epoch
    seconds) and on which xdist worker: CPU seconds say which tests to make cheaper, the timeline what a run's
    wall time waits on (BENCHMARKS.md, issue 20)."""
    if not CPU_LOG:
        yield
        return
    import resource

    def used() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    before, started = used(), time.time()
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(CPU_LOG, "a", encoding="utf-8") as log:  # one short line per write: workers' lines do not mix
        log.write(f"{used() - before:.2f}\t{started:.1f}\t{time.time():.1f}\t{worker}\t{item.nodeid}\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    """Under CI (CI set) a skipped test is a failed one: CI installs every server, tool and extra the suite
    uses (`make test`, .ci/run), so a skip there can only hide a check that did not run. Locally a skip stays
    a skip, and `-ra` lists its reason."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be: {reason}"


@pytest.fixture(scope="session")
def shared_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoHome:
    """The run's one demo-sized home (tests/demo_home.py): copy it with `copy_home` before using it."""
    return shared_demo_home(tmp_path_factory)
