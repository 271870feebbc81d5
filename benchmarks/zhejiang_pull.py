"""Issue 20: Zhejiang's pull with its Arrow reader against the same pull on DBAPI rows (``arrow=False``, the
path it replaced), each run in a fresh subprocess on the same sandbox, alternating, in the same run.

``python -m benchmarks.zhejiang_pull --records 100000 --repeat 3``: prints one line per run and the ratios.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import Stopwatch, run_task
from benchmarks.sources import WINDOW_END, WINDOW_START, sandbox_root, trust_provinces


def run_zhejiang_pull(spec: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
    """Worker task: the adapter's pull and deletions over the whole window (landing included)."""
    import pandas  # noqa: F401 - the mapping imports it lazily; before the clock, as in run_ours

    from adapters.authenticity import SourceTrust
    from adapters.base import Landing, PullRequest, Window
    from adapters.zhejiang.adapter import ZhejiangAdapter

    root, out = Path(spec["root"]), Path(spec["out"])
    trust_provinces(root, out / "hub")
    url = f"sqlite:///{sandbox_root(root, 'zhejiang') / 'zhejiang.sqlite'}"
    adapter = ZhejiangAdapter(url, trust=SourceTrust(out / "hub" / "keys"), arrow=bool(spec["arrow"]))
    request = PullRequest(spec["dataset"], Window(WINDOW_START, WINDOW_END), None)
    rows = 0
    with Stopwatch() as watch:
        landing = Landing(out / "landing")
        for chunk in adapter.pull(request, landing):
            rows += chunk.num_rows
        for _ in adapter.deletions(request, landing):
            pass
    adapter.close()
    return watch.seconds, rows, {"arrow": bool(spec["arrow"])}


def main(argv: list[str] | None = None) -> int:
    """Prepare one sandbox, then alternate rows / Arrow pulls `repeat` times."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zhejiang_pull", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dataset", default="e_license")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-zjpull-", dir=args.workdir))
    try:
        base = {"province": "zhejiang", "dataset": args.dataset, "root": str(root), "records": args.records}
        run_task("prepare", base)
        for i in range(args.repeat):
            seconds = {}
            for arrow in (False, True):
                out = root / f"run-{i}-{arrow}"
                done = run_task("zhejiang_pull", {**base, "arrow": arrow, "out": str(out)})
                seconds[arrow] = float(done["seconds"])
                shutil.rmtree(out, ignore_errors=True)
            load = Path("/proc/loadavg").read_text().split()[0]
            print(f"run {i + 1}: rows {seconds[False]:.2f} s, Arrow {seconds[True]:.2f} s, "
                  f"rows / Arrow {seconds[False] / seconds[True]:.2f} (load {load})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
