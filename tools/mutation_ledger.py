"""mutmut's verdicts kept between checkouts: `tests/mutation/verdicts.json` (issue 21).

mutmut records each mutant's verdict in the git-ignored mutants/<path>.meta, beside a hash of every mutated
function's AST, and keeps a verdict while its function's hash is unchanged. A fresh checkout (a CI runner, a
new machine) therefore started over, and a full run of the trust core takes a day on two cores. `seed` writes
the ledger's verdicts into mutants/ before `mutmut run`, for each module mutants/ has no record of yet, so
mutmut re-tests only functions changed since the ledger was saved, and every survivor; `save` writes back
every verdict reached.

mutmut also drops every verdict when its test selection changes (a test file added to `[tool.mutmut]`); `seed`
puts the ledger's kills back for each function whose hash is unchanged, and `save` keeps them, so a mutants/ reset
that way is never written over the ledger.

A kill stands while its function is unchanged, as in mutmut's own cache. Survivors are not seeded: a test added
for one since is credited by the next run. Nor are timeouts: a busy machine can cause one. `make mutation
MUTANTS=NAME` re-tests a named mutant whatever its verdict, and `make mutation MUTATION_FRESH=1` ignores the
ledger. A ledger written by another mutmut version is
not used: mutants are numbered by the mutmut that generated them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tools.mutation_report import KILLED, ROOT, trust_core

LEDGER = ROOT / "tests" / "mutation" / "verdicts.json"
Ledger = dict[str, Any]


def module_name(path: str) -> str:
    """`exchange/lake/protocol.py` -> `exchange.lake.protocol`, as mutmut names a module's mutants."""
    return path.removesuffix(".py").replace("/", ".")


def ledger_entry(path: str, meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """One module's .meta -> function -> {hash, verdicts: mutant number -> exit code}, verdicts reached only."""
    prefix = module_name(path) + "."
    functions: dict[str, dict[str, Any]] = {
        function: {"hash": digest, "verdicts": {}} for function, digest in sorted(meta["hash_by_function_name"].items())
    }
    for mutant, code in meta["exit_code_by_key"].items():
        function, _, number = mutant.removeprefix(prefix).partition("__mutmut_")
        if code is not None and function in functions:
            functions[function]["verdicts"][number] = code
    for entry in functions.values():
        entry["verdicts"] = dict(sorted(entry["verdicts"].items(), key=lambda kv: int(kv[0])))
    return functions


def meta_from(path: str, functions: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A .meta as mutmut 3.8 reads it (every key it asserts), holding the ledger's hashes and verdicts."""
    prefix = module_name(path) + "."
    return {
        "exit_code_by_key": {f"{prefix}{function}__mutmut_{number}": code
                             for function, entry in functions.items() for number, code in entry["verdicts"].items()},
        "hash_by_function_name": {function: entry["hash"] for function, entry in functions.items()},
        "type_check_error_by_key": {},
        "durations_by_key": {},
        "estimated_durations_by_key": {},
    }


def kills_only(functions: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The record with only the killed mutants' verdicts: a survivor is tested again, so a test written for it
    since is credited without naming it, and so is a timeout, which a loaded machine can cause."""
    return {function: {"hash": entry["hash"],
                       "verdicts": {n: code for n, code in entry["verdicts"].items() if code in KILLED}}
            for function, entry in functions.items()}


def restore(path: str, meta: dict[str, Any], functions: Mapping[str, Mapping[str, Any]]) -> int:
    """Fill the mutants of `meta` that have no verdict with the ledger's kills of the same, unchanged function (a
    verdict reached in mutants/ is never replaced); the number filled."""
    prefix = module_name(path) + "."
    codes, hashes = meta.get("exit_code_by_key", {}), meta.get("hash_by_function_name", {})
    filled = 0
    for function, entry in kills_only(functions).items():
        if hashes.get(function) != entry["hash"]:
            continue  # changed since the ledger: its mutants are new
        for number, code in entry["verdicts"].items():
            key = f"{prefix}{function}__mutmut_{number}"
            if key in codes and codes[key] is None:
                codes[key], filled = code, filled + 1
    return filled


def seed(ledger: Ledger, mutants: Path, modules: Iterable[str], mutmut_version: str) -> dict[str, int]:
    """Write the ledger's kills into mutants/: a whole record for a module it lacks, else the kills its record
    lost without its function changing; module -> kills written."""
    if ledger.get("mutmut") != mutmut_version:
        return {}
    seeded: dict[str, int] = {}
    for path in modules:
        if path not in ledger["modules"]:
            continue
        meta_file = mutants / f"{path}.meta"
        if not meta_file.exists():
            meta_file.parent.mkdir(parents=True, exist_ok=True)
            meta = meta_from(path, kills_only(ledger["modules"][path]))
            written = len(meta["exit_code_by_key"])
        else:
            meta = json.loads(meta_file.read_text("utf-8"))
            written = restore(path, meta, ledger["modules"][path])
            if not written:
                continue  # mutants/ is this checkout's own, newer record
        meta_file.write_text(json.dumps(meta, indent=1), "utf-8")
        seeded[path] = written
    return seeded


def saved(ledger: Ledger, mutants: Path, modules: Iterable[str], mutmut_version: str) -> Ledger:
    """The ledger with every module that mutants/ has a record of replaced by that record."""
    kept = ledger.get("modules", {}) if ledger.get("mutmut") == mutmut_version else {}
    records = dict(kept)
    for path in modules:
        meta = mutants / f"{path}.meta"
        if meta.exists():
            record = json.loads(meta.read_text("utf-8"))
            restore(path, record, kept.get(path, {}))
            records[path] = ledger_entry(path, record)
    return {"mutmut": mutmut_version, "modules": dict(sorted(records.items()))}


def counts(ledger: Ledger) -> dict[str, int]:
    """Module -> verdicts recorded."""
    return {path: sum(len(f["verdicts"]) for f in functions.values()) for path, functions in ledger["modules"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["seed", "save"])
    parser.add_argument("--mutants", type=Path, default=ROOT / "mutants")
    parser.add_argument("--ledger", type=Path, default=LEDGER)
    args = parser.parse_args(argv)
    modules = trust_core(ROOT / "pyproject.toml")
    current = version("mutmut")
    ledger: Ledger = json.loads(args.ledger.read_text("utf-8")) if args.ledger.exists() else {"modules": {}}
    if args.action == "seed":
        if ledger.get("modules") and ledger.get("mutmut") != current:
            print(f"{args.ledger.name} was written by mutmut {ledger.get('mutmut')}, this is {current}: not used")
        for path, written in seed(ledger, args.mutants, modules, current).items():
            print(f"{path}: {written} kills from {args.ledger.name}")
        return 0
    new = saved(ledger, args.mutants, modules, current)
    args.ledger.write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"{args.ledger.name}: " + ", ".join(f"{module_name(p)} {n}" for p, n in counts(new).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
