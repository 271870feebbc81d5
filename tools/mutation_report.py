"""The per-module kill rate of the last `mutmut run` (`make mutation`), and the gate of issue 21.

mutmut keeps one verdict per mutant in mutants/<module path>.meta (JSON, `exit_code_by_key`). A module passes
when at least 90 % of its mutants are detected, after subtracting the mutants listed as equivalent in
tests/mutation/equivalent.txt (one line each: the mutant's name, then why no test can tell it from the code).
Every mutant that survives and is not listed is printed by name (`mutmut show NAME` shows its diff): kill it
with a test or list it with its reason. Exit status 1 when a module is under the bar, or was not fully run
(unless --partial, for a run narrowed to some mutants).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

BAR = 0.90
ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "tests" / "mutation" / "equivalent.txt"

# mutmut 3.8's exit codes (mutmut/stats.py): what each says about the tests.
DETECTED = {1: "killed", 3: "killed", 37: "caught by type check", 36: "timeout", 24: "timeout", -24: "timeout",
            152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault"}
UNDETECTED = {0: "survived", 5: "no tests", 33: "no tests"}
# Verdicts that hold on any machine: a test failed, or the type checker refused the mutant. A timeout or a kill by
# signal can also come from a loaded machine, so the mutation ledger does not keep those across runs.
KILLED = frozenset(code for code, label in DETECTED.items() if label in ("killed", "caught by type check"))


@dataclass
class ModuleRate:
    """One mutated module's verdicts."""

    module: str
    total: int = 0
    detected: int = 0
    equivalent: int = 0
    unchecked: int = 0  # not run yet (or skipped, suspicious): the rate is not final
    undetected: list[str] = field(default_factory=list)  # survived or covered by no test, and not listed

    @property
    def scored(self) -> int:
        """Mutants the rate is over: all but the equivalent and those not run."""
        return self.total - self.equivalent - self.unchecked

    @property
    def rate(self) -> float:
        return self.detected / self.scored if self.scored else 1.0

    def passes(self, partial: bool) -> bool:
        return self.rate >= BAR and (partial or self.unchecked == 0)


def module_of(mutant: str) -> str:
    """`exchange.lake.protocol.x_commit__mutmut_3` -> `exchange.lake.protocol` (methods: `xǁClassǁname__...`)."""
    return mutant.split("__mutmut_")[0].rsplit(".", 1)[0]


def parse_equivalent(lines: Iterable[str]) -> dict[str, str]:
    """Mutant name -> reason, from `NAME reason...` lines; blank lines and `#` comments skipped."""
    listed: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition(" ")
        if not reason.strip():
            raise ValueError(f"{EQUIVALENT.name}:{number}: {name} has no reason; say why no test can kill it")
        listed[name] = reason.strip()
    return listed


def rates(verdicts: Mapping[str, int | None], equivalent: Mapping[str, str]) -> list[ModuleRate]:
    """Per-module rates from mutant name -> mutmut exit code (None: not run)."""
    by_module: dict[str, ModuleRate] = {}
    for name, code in sorted(verdicts.items()):
        m = by_module.setdefault(module_of(name), ModuleRate(module_of(name)))
        m.total += 1
        if code in DETECTED:
            m.detected += 1
        elif name in equivalent:
            m.equivalent += 1
        elif code in UNDETECTED:
            m.undetected.append(name)
        else:
            m.unchecked += 1
    return sorted(by_module.values(), key=lambda m: m.module)


def stale(verdicts: Mapping[str, int | None], equivalent: Mapping[str, str]) -> list[str]:
    """Listed as equivalent, but killed now or no longer generated (the code changed): to remove from the list.
    Only for modules that have results (a narrowed run says nothing about the others)."""
    run = {module_of(n) for n in verdicts}
    return sorted(n for n in equivalent
                  if module_of(n) in run and (n not in verdicts or verdicts[n] in DETECTED))


def read_verdicts(mutants: Path, modules: Iterable[str]) -> dict[str, int | None]:
    """Every verdict mutmut recorded for the given source files (paths relative to the repository)."""
    verdicts: dict[str, int | None] = {}
    for module in modules:
        meta = mutants / f"{module}.meta"
        if meta.exists():
            verdicts.update(json.loads(meta.read_text("utf-8"))["exit_code_by_key"])
    return verdicts


def trust_core(pyproject: Path) -> list[str]:
    """The files `make mutation` mutates: [tool.mutmut] only_mutate."""
    return list(tomllib.loads(pyproject.read_text("utf-8"))["tool"]["mutmut"]["only_mutate"])


def render(results: list[ModuleRate], partial: bool) -> str:
    lines = [f"{'module':40} {'mutants':>7} {'equiv':>5} {'not run':>7} {'killed':>6} {'rate':>7}"]
    for m in results:
        mark = "ok" if m.passes(partial) else ("NOT RUN" if m.unchecked and not partial else "BELOW 90 %")
        lines.append(f"{m.module:40} {m.total:7} {m.equivalent:5} {m.unchecked:7} {m.detected:6} "
                     f"{m.rate:7.1%}  {mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partial", action="store_true", help="rate over the mutants run so far")
    parser.add_argument("--mutants", type=Path, default=ROOT / "mutants")
    args = parser.parse_args(argv)
    modules = trust_core(ROOT / "pyproject.toml")
    verdicts = read_verdicts(args.mutants, modules)
    if not verdicts:
        print(f"no mutmut results under {args.mutants}: run `make mutation` first", file=sys.stderr)
        return 1
    equivalent = parse_equivalent(EQUIVALENT.read_text("utf-8").splitlines())
    results = rates(verdicts, equivalent)
    missing = sorted({p.removesuffix(".py").replace("/", ".") for p in modules} - {m.module for m in results})
    print(render(results, args.partial))
    for name in missing:
        print(f"{name}: no mutmut results (not run)")
    for m in results:
        for name in m.undetected:
            print(f"survived: {name}  (mutmut show {name}; kill it with a test or list it in {EQUIVALENT.name})")
    for name in stale(verdicts, equivalent):
        print(f"stale in {EQUIVALENT.name}: {name} (killed now, or no longer generated): remove the line")
    ok = all(m.passes(args.partial) for m in results) and (args.partial or not missing)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
