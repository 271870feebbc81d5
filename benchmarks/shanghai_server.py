"""Serve a seeded Shanghai sandbox from its own process, so the API server's memory is not counted
against the client contender (its CPU still competes, as it would on one machine).

``python -m benchmarks.shanghai_server <root>`` prints one JSON line of EXCHANGE_* settings, then serves
until its stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from adapters.base import sandbox_for


class ShanghaiServer:
    """Context manager running :mod:`benchmarks.shanghai_server` for a sandbox root; ``env`` points at it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env: dict[str, str] = {}
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ShanghaiServer:
        from benchmarks.harness import _project_root

        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.shanghai_server", str(self.root)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=_project_root(),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the Shanghai sandbox server did not start")
        self.env = json.loads(line)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


def sandbox_env(stack: ExitStack, root: Path, province: str) -> dict[str, str]:
    """The EXCHANGE_ settings pointing at a province's sandbox under `root`; Shanghai's API is served from its
    own process until `stack` closes (the others are files or a database)."""
    if province == "shanghai":
        return dict(stack.enter_context(ShanghaiServer(root)).env)
    return sandbox_for(province, root).env()


def main(root: str) -> int:
    """Start the sandbox, announce its env, serve until stdin closes."""
    sandbox = sandbox_for("shanghai", Path(root))
    sandbox.start()
    try:
        print(json.dumps(sandbox.env()), flush=True)
        sys.stdin.read()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
