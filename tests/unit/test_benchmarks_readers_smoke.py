"""Smoke test of the SQL readers scenario (issue 20, target 1) and of Zhejiang's ingest with its ADBC limit:
both run end to end at a tiny size and write their JSON. Timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> dict[str, object]:
    out = tmp_path / "out.json"
    command = [sys.executable, "-m", "benchmarks", *args, "--json", str(out), "--workdir", str(tmp_path)]
    env = {**os.environ, "EXCHANGE_HOME": str(tmp_path / "unused-home")}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(tmp_path.glob("bench-*")), "the harness must remove its temporary sandboxes"
    doc: dict[str, object] = json.loads(out.read_text())
    return doc


def test_readers_smoke(tmp_path: Path) -> None:
    pytest.importorskip("connectorx", reason="the candidate readers come from the optional `bench` extra")
    doc = _run(tmp_path, "readers", "--records", "1500")
    (result,) = doc["results"]  # type: ignore[misc]
    assert set(result["seconds"]["sqlite"]) == {"sqlalchemy", "adbc", "duckdb", "connectorx"}, result["errors"]
    (target,) = result["targets"]
    assert target["name"].startswith("sqlite: limit reader adbc")


def test_zhejiang_ingest_smoke_with_the_adbc_limit(tmp_path: Path) -> None:
    pytest.importorskip("dlt", reason="the benchmarks' peer tools come from the optional `bench` extra")
    doc = _run(tmp_path, "ingest", "--province", "zhejiang", "--records", "1500", "--dict-sample", "300")
    (result,) = doc["results"]  # type: ignore[misc]
    limit, ours = (next(m for n, m in result["contenders"].items() if n.startswith(p)) for p in ("limit", "ours"))
    assert limit["rows"] == ours["rows"] == 1500
    assert ours["details"]["accepted"] + ours["details"]["quarantined"] == 1500
    assert {t["name"] for t in result["targets"]} >= {"ours / limit", "ours / peer", "peak RSS of ours, MB"}
