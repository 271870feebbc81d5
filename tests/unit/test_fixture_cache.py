"""tests/fixture_cache.py and the conftest's test order under mutmut: a built test home is reused, only an unmutated run
writes it, and a mutant's tests run fastest first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import fixture_cache
from tests.fixture_cache import built_once


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setattr(fixture_cache, "CACHE", tmp_path / "cache")
    return []


def _build(builds: list[Path]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        builds.append(root)
        (root / "home").mkdir()
        (root / "home" / "log.jsonl").write_text(f"built {len(builds)}\n", encoding="utf-8")
    return build


def test_outside_mutmut_every_session_builds(builds: list[Path], tmp_path_factory: pytest.TempPathFactory,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fixture_cache.MUTANT, raising=False)
    first, second = (built_once("h", _build(builds), tmp_path_factory) for _ in range(2))
    assert builds == [first, second] and first != second
    assert not (fixture_cache.CACHE).exists()


def test_a_mutant_reuses_what_the_unmutated_run_built_on_a_copy_of_its_own(
    builds: list[Path], tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fixture_cache.MUTANT, "exchange.recovery.x__settle__mutmut_3")
    first = built_once("h", _build(builds), tmp_path_factory)
    assert builds == [first] and not fixture_cache.CACHE.exists()  # a mutant's build is never kept
    monkeypatch.setenv(fixture_cache.MUTANT, "stats")
    clean = built_once("h", _build(builds), tmp_path_factory)
    assert builds == [first, clean]
    monkeypatch.setenv(fixture_cache.MUTANT, "exchange.recovery.x__settle__mutmut_4")
    reused = built_once("h", _build(builds), tmp_path_factory)
    assert builds == [first, clean]  # not built again
    assert (reused / "home" / "log.jsonl").read_text(encoding="utf-8") == "built 2\n"
    (reused / "home" / "log.jsonl").write_text("changed by a test\n", encoding="utf-8")
    again = built_once("h", _build(builds), tmp_path_factory)
    assert again != reused and (again / "home" / "log.jsonl").read_text(encoding="utf-8") == "built 2\n"
    assert len(list(fixture_cache.CACHE.iterdir())) == 1


def test_the_key_changes_with_the_code_and_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    today = fixture_cache.source_key()
    assert fixture_cache.source_key() == today

    class Tomorrow(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Tomorrow:
            return cls(2099, 1, 1, tzinfo=tz)

    monkeypatch.setattr(fixture_cache, "datetime", Tomorrow)
    assert fixture_cache.source_key() != today


def test_under_mutmut_a_mutants_tests_run_fastest_first_each_modules_together(tmp_path: Path) -> None:
    import json
    from types import SimpleNamespace

    from tests.conftest import _fastest_first

    stats = tmp_path / "mutmut-stats.json"
    stats.write_text(json.dumps({"duration_by_test": {"a.py::slow": 9.0, "a.py::quick": 0.1, "b.py::one": 1.0,
                                                      "b.py::two": 0.5}}), encoding="utf-8")
    names = ["b.py::one", "a.py::slow", "c.py::untimed", "b.py::two", "a.py::quick"]
    items = [SimpleNamespace(nodeid=n) for n in names]
    _fastest_first(items, stats)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == ["a.py::quick", "a.py::slow", "b.py::two", "b.py::one", "c.py::untimed"]
    _fastest_first(items, tmp_path / "missing.json")  # no stats: the order is left alone
    assert [i.nodeid for i in items][0] == "a.py::quick"
