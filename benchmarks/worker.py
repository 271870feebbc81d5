"""Entry point of a contender subprocess: ``python -m benchmarks.worker <task> '<json spec>'``.

Heavy imports happen before the measured section; the result is one ``BENCH-RESULT {...}`` line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import Stopwatch, emit

Result = tuple[float, int, dict[str, Any]]


def _prepare(spec: dict[str, Any]) -> Result:
    from benchmarks.sources import prepare

    with Stopwatch() as watch:
        details = prepare(
            Path(spec["root"]), spec["province"], spec["dataset"], int(spec["records"]), int(spec.get("weeks", 1))
        )
    return watch.seconds, int(spec["records"]), details


def _limit(spec: dict[str, Any]) -> Result:
    from benchmarks.contenders import run_limit

    return run_limit(spec["province"], spec["dataset"], Path(spec["root"]), spec["env"], _out(spec))


def _ours(spec: dict[str, Any]) -> Result:
    _preload_ours()
    from benchmarks.contenders import run_ours

    return run_ours(spec["province"], spec["dataset"], Path(spec["root"]), spec["env"], _out(spec), spec.get("profile"))


def _pull(spec: dict[str, Any]) -> Result:
    from benchmarks.contenders import run_pull

    return run_pull(spec["province"], spec["dataset"], Path(spec["root"]), spec["env"], _out(spec))


def _peer(spec: dict[str, Any]) -> Result:
    import dlt  # noqa: F401 - imported before the clock starts, like ours
    import great_expectations  # noqa: F401

    from benchmarks.contenders import run_peer

    return run_peer(spec["province"], spec["dataset"], Path(spec["root"]), spec["env"], _out(spec))


def _dictpath(spec: dict[str, Any]) -> Result:
    import dlt  # noqa: F401

    from benchmarks.contenders import run_dictpath

    return run_dictpath(spec["dataset"], Path(spec["root"]), int(spec["sample"]), _out(spec))


def _reader(spec: dict[str, Any]) -> Result:
    from benchmarks.sql_readers import run_reader

    return run_reader(spec)


def _file_reader(spec: dict[str, Any]) -> Result:
    from benchmarks.file_readers import run_file_reader

    return run_file_reader(spec)


def _zhejiang_pull(spec: dict[str, Any]) -> Result:
    from benchmarks.zhejiang_pull import run_zhejiang_pull

    return run_zhejiang_pull({**spec, "out": str(_out(spec))})


def _verify(spec: dict[str, Any]) -> Result:
    from benchmarks.verify_scenario import run_verify

    return run_verify(Path(spec["home"]), bool(spec.get("incremental", False)))


def _build_lake(spec: dict[str, Any]) -> Result:
    _preload_ours()
    from benchmarks.verify_scenario import build_lake

    return build_lake(spec["province"], spec["dataset"], Path(spec["home"]), spec["env"], spec["weeks"])


def _build_synthetic_lake(spec: dict[str, Any]) -> Result:
    _preload_ours()
    from benchmarks.verify_scenario import build_synthetic_lake

    return build_synthetic_lake(spec["province"], spec["dataset"], Path(spec["home"]), float(spec["lake_gb"]),
                                int(spec["batch_records"]), int(spec["records"]))


def _query_build(spec: dict[str, Any]) -> Result:
    from benchmarks.query import build_home

    return build_home(Path(spec["home"]), int(spec["rows"]), int(spec["chunk_rows"]))


def _query_ours(spec: dict[str, Any]) -> Result:
    import exchange.access.service  # noqa: F401 - imported before the clock starts
    from benchmarks.query import run_ours

    return run_ours(Path(spec["home"]), spec["sample"], int(spec["repeat"]), _out(spec))


def _query_raw(spec: dict[str, Any]) -> Result:
    from benchmarks.query import run_raw

    return run_raw(spec["files"], spec["sample"], int(spec["repeat"]), _out(spec))


def _query_http(spec: dict[str, Any]) -> Result:
    from benchmarks.query import run_http

    return run_http(Path(spec["home"]), spec["sample"], int(spec["clients"]), float(spec["seconds"]))


def _out(spec: dict[str, Any]) -> Path:
    """A fresh output folder for this contender run (``out`` in the spec)."""
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    return out


def _preload_ours() -> None:
    """Import what run_exchange imports lazily, so the clock measures work, not module loading."""
    import great_expectations  # noqa: F401

    import exchange.contracts.expectations  # noqa: F401 - validate.py imports GX's modules only when it runs
    import exchange.contracts.suite  # noqa: F401
    import exchange.contracts.validate  # noqa: F401
    import exchange.pipeline  # noqa: F401


TASKS: dict[str, Callable[[dict[str, Any]], Result]] = {
    "prepare": _prepare,
    "limit": _limit,
    "ours": _ours,
    "pull": _pull,
    "peer": _peer,
    "dictpath": _dictpath,
    "reader": _reader,
    "file_reader": _file_reader,
    "zhejiang_pull": _zhejiang_pull,
    "verify": _verify,
    "build_lake": _build_lake,
    "build_synthetic_lake": _build_synthetic_lake,
    "query_build": _query_build,
    "query_ours": _query_ours,
    "query_raw": _query_raw,
    "query_http": _query_http,
}


def main(argv: list[str]) -> int:
    """Run one task and print its result line."""
    logging.basicConfig(level=logging.WARNING)
    task, spec = argv[0], json.loads(argv[1])
    seconds, rows, details = TASKS[task](spec)
    emit(seconds, rows, details)
    return 0


def _exit_now(code: int) -> None:
    """End the contender without the interpreter's teardown. Its result is printed and its files are closed.
    Arrow's native thread pools can still be alive at interpreter exit, and then libstdc++ aborts ("terminate
    called without an active exception", SIGABRT; apache/arrow#34314). That is a library teardown race, not a
    property of the candidate, and it failed a whole benchmark run under load."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main(sys.argv[1:]))
