"""Issue 20: ``ours`` (run_exchange) from two source trees on one sandbox, alternating, in the same run.

A before/after of a change to the hub's own code: ``python -m benchmarks.trees --before /tmp/base --records
100000 --repeat 3`` runs the worker of the tree at `--before` (e.g. ``git archive <commit> | tar -x -C
/tmp/base``) and of this tree in turn, each in a fresh interpreter started in its own tree, and prints per run
the wall time of the measured section, the stages, and the CPU time of the whole child (imports included).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULT_PREFIX, run_task
from benchmarks.shanghai_server import sandbox_env
from benchmarks.sources import sandbox_root

HERE = Path(__file__).resolve().parents[1]


def run_in(tree: Path, spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The ``ours`` task's result when run from `tree`, and the child's CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "benchmarks.worker", "ours", json.dumps(spec)], cwd=tree,
                          capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"ours from {tree} exited {done.returncode}:\n{done.stderr[-3000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(RESULT_PREFIX))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX):])
    return result, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trees", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="the other source tree (the 'before')")
    parser.add_argument("--province", default="jiangsu")
    parser.add_argument("--dataset", default="e_license")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--after-first", action="store_true", help="run this tree first in each round")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix=f"bench-trees-{args.province}-", dir=args.workdir))
    try:
        base = {"province": args.province, "dataset": args.dataset, "root": str(root), "records": args.records}
        run_task("prepare", base)
        with ExitStack() as stack:
            spec = {**base, "env": sandbox_env(stack, sandbox_root(root, args.province), args.province)}
            for i in range(args.repeat):
                trees = [("before", args.before.resolve()), ("after", HERE)]
                for name, tree in reversed(trees) if args.after_first else trees:
                    out = root / f"run-{i}-{name}"
                    result, cpu = run_in(tree, {**spec, "out": str(out)})
                    shutil.rmtree(out, ignore_errors=True)
                    load = Path("/proc/loadavg").read_text().split()[0]
                    stages = result["details"]["stages"]
                    print(f"run {i + 1} {name:6}: {float(result['seconds']):6.2f} s (pull {stages['pull']:.2f} / "
                          f"validate {stages['validate']:.2f} / commit {stages['commit']:.2f}), child CPU "
                          f"{cpu:.2f} s, accepted {result['details']['accepted']}, quarantined "
                          f"{result['details']['quarantined']} (load {load})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
