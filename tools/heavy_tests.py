"""Write tests/heavy.txt, the tests `make test-fast` leaves to `make test`, from a run's JUnit XML report.

    .venv/bin/pytest -n auto --dist loadfile --junitxml=/tmp/run.xml   # the whole suite, as `make test`
    .venv/bin/python tools/heavy_tests.py /tmp/run.xml [more reports ...] [--seconds 1.0]

A test is heavy when it took at least --seconds in any of the runs given (setup and teardown included, as
JUnit records them); tests/conftest.py marks the listed ones `heavy`. The list is a measurement, not a
judgement: a test missing from it (a new one) runs in the quick loop until the list is refreshed. Tests
under tests/integration and tests/e2e are not listed: `make test-fast` does not run those folders.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "heavy.txt"
HEADER = """\
# Tests `make test-fast` leaves out (they run in `make test`): each took at least {seconds} s in the run
# recorded by tools/heavy_tests.py (its docstring says how to refresh this list). One node id per line.
"""


def node_id(classname: str, name: str) -> str:
    """pytest's node id from JUnit's dotted classname (module path, then any test class) and test name."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = Path(*parts[:cut]).with_suffix(".py")
        if (ROOT / path).is_file():
            return "::".join([path.as_posix(), *parts[cut:], name])
    raise SystemExit(f"{classname}: no test file of that name under {ROOT}; is this report from this repository?")


def heavy(reports: list[Path], seconds: float) -> list[tuple[str, float]]:
    took: dict[str, float] = {}
    for report in reports:
        for case in ET.parse(report).iter("testcase"):
            classname = case.get("classname", "")
            if classname.startswith(("tests.integration.", "tests.e2e.")):
                continue  # `make test-fast` does not run those folders
            node = node_id(classname, case.get("name", ""))
            took[node] = max(took.get(node, 0.0), float(case.get("time", "0")))
    return sorted((node, t) for node, t in took.items() if t >= seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, nargs="+", help="pytest --junitxml reports of whole-suite runs")
    parser.add_argument("--seconds", type=float, default=1.0, help="a test this slow or slower is heavy")
    args = parser.parse_args(argv)
    listed = heavy(args.reports, args.seconds)
    OUT.write_text(HEADER.format(seconds=args.seconds) + "".join(f"{node}\n" for node, _ in listed),
                   encoding="utf-8")
    print(f"{len(listed)} heavy tests ({sum(t for _, t in listed):.0f} s of that run) -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
