"""The crash harness: for every named crash point (exchange/faults.py), a real child process runs the stage and
dies there; the stage is run again and the hub must be settled: verify intact, each batch committed once and
fully recorded, pulled = accepted + quarantined, no partial or unreferenced file (tests/unit/crash_harness.py).

A point added to faults.POINTS is tested here without any change: the parametrization is the registry.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from exchange.faults import CRASH_EXIT, POINTS
from tests.conftest import REPO
from tests.fixture_cache import built_once
from tests.unit.crash_harness import assert_settled, build_home, hub_at, run_crashing, stage_action


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("crash", build_home, tmp_path_factory) / "home"


def test_every_crash_point_in_the_code_is_declared_and_every_declared_one_is_used() -> None:
    used = set()
    for path in [*REPO.joinpath("exchange").rglob("*.py"), *REPO.joinpath("adapters").rglob("*.py")]:
        used |= set(re.findall(r'crash_point\("([^"]+)"\)', path.read_text(encoding="utf-8")))
    assert used == set(POINTS)


@pytest.mark.parametrize("point", sorted(POINTS))
def test_a_crash_at_the_point_then_a_rerun_leaves_the_hub_settled(built: Path, tmp_path: Path, point: str) -> None:
    root = tmp_path / "copy"
    shutil.copytree(built.parent, root, symlinks=True)
    home, contracts = root / "home", root / "contracts"
    assert run_crashing(home, point, contracts) == CRASH_EXIT, f"{point} was not reached"
    hub = hub_at(home)
    stage_action(point, contracts)(hub)  # the re-run: recovery first, then the stage completes
    assert_settled(hub)
