"""tools/mutation_report.py: the per-module gate of `make mutation` (issue 21), on made-up mutmut verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REPO
from tools.mutation_report import (
    BAR,
    EQUIVALENT,
    main,
    module_of,
    parse_equivalent,
    rates,
    stale,
    trust_core,
)

CHECKSUMS = "exchange.reference.checksums"


def _name(module: str, n: int, function: str = "x_valid") -> str:
    return f"{module}.{function}__mutmut_{n}"


def test_module_of_functions_and_methods() -> None:
    assert module_of(_name(CHECKSUMS, 3, "x__fixed_width_bytes")) == CHECKSUMS
    assert module_of("exchange.provenance.log.xǁChainVerifierǁfeed__mutmut_12") == "exchange.provenance.log"


def test_equivalent_mutants_leave_the_denominator_and_unlisted_survivors_are_named() -> None:
    verdicts: dict[str, int | None] = {_name(CHECKSUMS, n): 1 for n in range(1, 10)}
    verdicts[_name(CHECKSUMS, 10)] = 0
    verdicts[_name(CHECKSUMS, 11)] = 0
    [m] = rates(verdicts, {_name(CHECKSUMS, 11): "dead default"})
    assert (m.total, m.detected, m.equivalent, m.scored) == (11, 9, 1, 10)
    assert m.rate == 0.9 and m.passes(partial=False)
    assert m.undetected == [_name(CHECKSUMS, 10)]


def test_a_module_not_fully_run_fails_unless_partial() -> None:
    [m] = rates({_name(CHECKSUMS, 1): 1, _name(CHECKSUMS, 2): None}, {})
    assert m.unchecked == 1 and m.rate == 1.0
    assert not m.passes(partial=False) and m.passes(partial=True)


@given(st.lists(st.sampled_from([0, 1, 33, 36, None]), min_size=1, max_size=60), st.data())
def test_the_rate_counts_every_mutant_once(codes: list[int | None], data: st.DataObject) -> None:
    verdicts = {_name(CHECKSUMS, n): c for n, c in enumerate(codes)}
    listed = {n: "reason" for n in data.draw(st.lists(st.sampled_from(sorted(verdicts)), unique=True))}
    [m] = rates(verdicts, listed)
    assert m.detected + m.equivalent + m.unchecked + len(m.undetected) == m.total == len(codes)
    assert 0.0 <= m.rate <= 1.0
    assert m.passes(partial=True) == (m.rate >= BAR)
    assert not set(m.undetected) & set(listed)


def test_a_listed_mutant_that_is_killed_or_gone_is_stale() -> None:
    verdicts: dict[str, int | None] = {_name(CHECKSUMS, 1): 1, _name(CHECKSUMS, 2): 0}
    listed = {_name(CHECKSUMS, n): "r" for n in (1, 2, 3)} | {_name("exchange.recovery", 1): "not run here"}
    assert stale(verdicts, listed) == [_name(CHECKSUMS, 1), _name(CHECKSUMS, 3)]


def test_every_listed_equivalent_mutant_says_why() -> None:
    with pytest.raises(ValueError, match=r"equivalent.txt:2: .* has no reason"):
        parse_equivalent(["# comment", "exchange.x.x_f__mutmut_1", ""])
    listed = parse_equivalent(EQUIVALENT.read_text("utf-8").splitlines())
    modules = {p.removesuffix(".py").replace("/", ".") for p in trust_core(REPO / "pyproject.toml")}
    assert all(module_of(name) in modules for name in listed), "an equivalent mutant of a module not mutated"


def test_main_reports_and_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = tmp_path / "exchange" / "reference" / "checksums.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": {_name(CHECKSUMS, 1): 1, _name(CHECKSUMS, 2): 0}}))
    assert main(["--mutants", str(tmp_path), "--partial"]) == 1  # 50 %
    out = capsys.readouterr().out
    assert "BELOW 90 %" in out and f"survived: {_name(CHECKSUMS, 2)}" in out
    meta.write_text(json.dumps({"exit_code_by_key": {_name(CHECKSUMS, n): 1 for n in range(5)}}))
    assert main(["--mutants", str(tmp_path), "--partial"]) == 0
    assert main(["--mutants", str(tmp_path)]) == 1  # the other trust-core modules were not run
    assert "no mutmut results (not run)" in capsys.readouterr().out
    assert main(["--mutants", str(tmp_path / "none")]) == 1


def test_ci_runs_mutation_testing_on_its_schedule_only() -> None:
    # `make mutation` takes hours: .ci/run (every stop, 90-minute budget) must not start it.
    assert "mutation" not in (REPO / ".ci" / "run").read_text()
    assert "make mutation" in (REPO / ".ci" / "mutation").read_text()
