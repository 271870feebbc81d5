"""tools/mutation_ledger.py: mutmut's verdicts survive a fresh checkout and a reset of mutants/, and only while their
function is unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tools.mutation_ledger import ledger_entry, meta_from, saved, seed

MUTMUT = version("mutmut")
OPS = "calc/ops.py"
VERDICTS = st.sampled_from([None, 0, 1, 3, 33, 37, 24, -9])


@given(st.dictionaries(st.sampled_from(["x_valid", "xǁSignerǁsign", "x__check"]),
                       st.dictionaries(st.integers(1, 400), VERDICTS, max_size=8), min_size=1))
def test_a_module_record_round_trips_with_the_verdicts_reached(functions: dict[str, dict[int, int | None]]) -> None:
    module = "exchange.signing.signers"
    hashes = {f: f"h{len(f)}" for f in functions}
    codes = {f"{module}.{f}__mutmut_{n}": code for f, by_number in functions.items() for n, code in by_number.items()}
    meta = {"hash_by_function_name": hashes, "exit_code_by_key": codes}
    back = meta_from("exchange/signing/signers.py", ledger_entry("exchange/signing/signers.py", meta))
    assert back["hash_by_function_name"] == hashes
    assert back["exit_code_by_key"] == {k: v for k, v in codes.items() if v is not None}


def test_seeding_never_overwrites_this_checkouts_record_nor_uses_another_mutmuts(tmp_path: Path) -> None:
    ledger = {"mutmut": MUTMUT, "modules": {OPS: {"x_add": {"hash": "h", "verdicts": {"1": 1, "2": 0, "3": 36}}}}}
    mutants = tmp_path / "mutants"
    assert seed({**ledger, "mutmut": "2.0.0"}, mutants, [OPS], MUTMUT) == {}
    assert seed(ledger, mutants, [OPS], MUTMUT) == {OPS: 1}
    seeded = json.loads((mutants / f"{OPS}.meta").read_text("utf-8"))["exit_code_by_key"]
    assert seeded == {"calc.ops.x_add__mutmut_1": 1}  # the survivor and the timeout (36) are tested again
    (mutants / f"{OPS}.meta").write_text("{}", "utf-8")
    assert seed(ledger, mutants, [OPS], MUTMUT) == {}
    assert (mutants / f"{OPS}.meta").read_text("utf-8") == "{}"


def test_kills_lost_to_a_reset_of_mutants_come_back_and_are_never_saved_away(tmp_path: Path) -> None:
    # mutmut drops every verdict when its test selection changes; a changed function's mutants are new.
    ledger = {"mutmut": MUTMUT, "modules": {OPS: {
        "x_add": {"hash": "h1", "verdicts": {"1": 1, "2": 37, "3": 0, "4": 1}},
        "x_neg": {"hash": "h2", "verdicts": {"1": 1}}}}}
    reset = {"hash_by_function_name": {"x_add": "h1", "x_neg": "h2-changed"},
             "exit_code_by_key": {"calc.ops.x_add__mutmut_1": None, "calc.ops.x_add__mutmut_2": None,
                                  "calc.ops.x_add__mutmut_3": None, "calc.ops.x_add__mutmut_4": 0,
                                  "calc.ops.x_neg__mutmut_1": None}}
    mutants = tmp_path / "mutants"
    (mutants / "calc").mkdir(parents=True)
    meta = mutants / f"{OPS}.meta"
    meta.write_text(json.dumps(reset), "utf-8")

    kept = saved(ledger, mutants, [OPS], MUTMUT)["modules"][OPS]
    assert kept["x_add"]["verdicts"] == {"1": 1, "2": 37, "4": 0}  # this run's survivor 4 stands
    assert kept["x_neg"] == {"hash": "h2-changed", "verdicts": {}}

    assert seed(ledger, mutants, [OPS], MUTMUT) == {OPS: 2}  # kills 1 and 2; not the survivor 3
    assert json.loads(meta.read_text("utf-8"))["exit_code_by_key"] == {
        "calc.ops.x_add__mutmut_1": 1, "calc.ops.x_add__mutmut_2": 37, "calc.ops.x_add__mutmut_3": None,
        "calc.ops.x_add__mutmut_4": 0, "calc.ops.x_neg__mutmut_1": None}
    assert seed(ledger, mutants, [OPS], MUTMUT) == {}  # nothing left to restore: the record is left as it is


def _toy(root: Path) -> None:
    """A project of two functions, each killed by its own test."""
    (root / "calc").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(
        '[tool.mutmut]\nsource_paths = ["calc"]\nonly_mutate = ["calc/ops.py"]\n'
        'pytest_add_cli_args = ["-p", "no:cacheprovider"]\npytest_add_cli_args_test_selection = ["tests"]\n'
        "use_git_change_detection = false\n", "utf-8")
    (root / "calc" / "__init__.py").write_text("", "utf-8")
    (root / "calc" / "ops.py").write_text(
        "def add(a: int, b: int) -> int:\n    return a + b\n\n\ndef neg(a: int) -> int:\n    return -a\n", "utf-8")
    (root / "tests" / "test_ops.py").write_text(
        "from calc.ops import add, neg\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n\n\n"
        "def test_neg() -> None:\n    assert neg(2) == -2\n", "utf-8")


def _mutmut_run(root: Path) -> dict[str, int | None]:
    mutmut = Path(sys.executable).parent / "mutmut"
    subprocess.run([str(mutmut), "run", "--max-children", "1"], cwd=root, check=True, capture_output=True, timeout=300)
    codes: dict[str, int | None] = json.loads((root / "mutants" / f"{OPS}.meta").read_text("utf-8"))["exit_code_by_key"]
    return codes


def test_a_fresh_checkout_retests_only_the_functions_changed_since_the_ledger(tmp_path: Path) -> None:
    _toy(tmp_path)
    first = _mutmut_run(tmp_path)
    assert first == {"calc.ops.x_add__mutmut_1": 1, "calc.ops.x_neg__mutmut_1": 1}
    ledger: dict[str, Any] = saved({}, tmp_path / "mutants", [OPS], MUTMUT)

    # A fresh checkout in which `neg` changed and `add` lost its test: a re-run `add` mutant would now count as
    # covered by no test (33), so a kill of it after seeding can only have come from the ledger.
    subprocess.run(["rm", "-rf", str(tmp_path / "mutants")], check=True)
    ops = tmp_path / "calc" / "ops.py"
    ops.write_text(ops.read_text("utf-8").replace("return -a", "return 0 - a"), "utf-8")
    test = tmp_path / "tests" / "test_ops.py"
    test.write_text(test.read_text("utf-8").replace("def test_add", "def _no_longer_a_test_add"), "utf-8")
    assert seed(ledger, tmp_path / "mutants", [OPS], MUTMUT) == {OPS: 2}
    second = _mutmut_run(tmp_path)

    assert second["calc.ops.x_add__mutmut_1"] == 1  # unchanged function: the ledger's verdict stands
    neg = {k: v for k, v in second.items() if "x_neg" in k}
    assert neg and all(v == 1 for v in neg.values())  # changed: every mutant of the new `neg` tested and killed

    # Without the ledger the same checkout tests `add` again and finds no test for it.
    subprocess.run(["rm", "-rf", str(tmp_path / "mutants")], check=True)
    assert _mutmut_run(tmp_path)["calc.ops.x_add__mutmut_1"] == 33
