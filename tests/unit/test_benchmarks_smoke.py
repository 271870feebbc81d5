"""Smoke test of the benchmark harness (issue 8): the ingest scenario runs end to end at a tiny size,
prints its tables and writes JSON with the expected keys. Timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_ingest_smoke(tmp_path: Path) -> None:
    pytest.importorskip("dlt", reason="the benchmarks' peer tools come from the optional `bench` extra")
    out = tmp_path / "ingest.json"
    command = [
        sys.executable, "-m", "benchmarks", "ingest", "--province", "jiangsu", "--records", "2000",
        "--dict-sample", "500", "--json", str(out), "--workdir", str(tmp_path),
    ]
    env = {**os.environ, "EXCHANGE_HOME": str(tmp_path / "unused-home")}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ingest jiangsu e_license" in done.stdout
    assert "PASS" in done.stdout or "MISS" in done.stdout

    doc = json.loads(out.read_text())
    assert doc["scenario"] == "ingest"
    assert {"nproc", "mem_total_gb"} <= set(doc["machine"])
    (result,) = doc["results"]
    assert result["province"] == "jiangsu" and result["records"] == 2000
    assert set(result["ratios"]) == {"ours/limit", "ours/peer", "dict_path/ours"}
    contenders = result["contenders"]
    assert len(contenders) == 4
    for measured in contenders.values():
        assert {"seconds", "peak_rss_mb", "rows", "extrapolated"} <= set(measured)
        assert measured["peak_rss_mb"] > 0
    ours = next(m for name, m in contenders.items() if name.startswith("ours"))
    assert ours["rows"] == 2000
    assert ours["details"]["accepted"] + ours["details"]["quarantined"] == 2000
    assert {t["name"] for t in result["targets"]} >= {"ours / limit", "ours / peer", "dict path / ours"}
    assert not list(tmp_path.glob("bench-*")), "the harness must remove its temporary sandboxes"


def test_scaling_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    command = [sys.executable, "-m", "benchmarks", "scaling", "--province", "jiangsu", "--records", "1000,3000",
               "--json", str(out), "--workdir", str(tmp_path)]
    # Parts of 1,000 records: the larger run is validated in parts, as a batch above the default 500k is.
    env = {**os.environ, "EXCHANGE_VALIDATE_PART_ROWS": "1000"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(out.read_text())["results"]
    assert [p["records"] for p in result["points"]] == [1000, 3000]
    for point in result["points"]:
        assert point["ours_rss_mb"] > 0 and set(point["stages"]) == {"pull", "validate", "commit"}
    assert [t["name"] for t in result["targets"]] == [
        "time per record, max/min", "peak RSS, largest / reference", "peak RSS of the largest, MB",
        "fixed cost per batch, s"]


def test_pull_memory_smoke(tmp_path: Path) -> None:
    out = tmp_path / "pull.json"
    command = [
        sys.executable, "-m", "benchmarks", "pull", "--province", "zhejiang", "--dataset", "provident_fund_transfer",
        "--records", "1000,3000", "--json", str(out), "--workdir", str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(out.read_text())["results"]
    assert [p["records"] for p in result["points"]] == [1000, 3000]
    assert all(p["peak_rss_mb"] > 0 and 0 < p["largest_chunk"] <= p["records"] for p in result["points"])
    assert result["targets"][0]["name"] == "peak RSS, largest / smallest pull"


def test_query_smoke(tmp_path: Path) -> None:
    out = tmp_path / "query.json"
    command = [
        sys.executable, "-m", "benchmarks", "query", "--rows", "3000", "--chunk-rows", "1500", "--repeat", "1",
        "--clients", "2", "--http-seconds", "1", "--json", str(out), "--workdir", str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "department queries: 3,000 e-licences" in done.stdout and "HTTP API" in done.stdout
    (result,) = json.loads(out.read_text())["results"]
    assert result["rows"] == 3000 and 0 < result["details"]["filtered_rows"] < 3000
    for name in ("point", "aggregate", "extract"):
        assert result["ours"][name]["median"] > 0 and result["raw"][name]["median"] > 0
    assert result["ours"]["sandbox_rows"] == result["details"]["filtered_rows"]  # the grant's rows, no more
    assert result["ours"]["sandbox_builds"] == 1 and result["ours"]["lake_attaches"] >= 1
    assert result["http"]["requests"] > 0 and set(result["http"]["statuses"]) == {"200"}
    assert {t["name"] for t in result["targets"]} >= {"point: ours / raw DuckDB", "extract: ours / raw DuckDB"}
    assert not list(tmp_path.glob("bench-query-*")), "the harness must remove its temporary lake"


@pytest.mark.slow  # eight fresh interpreters, each importing GX
def test_concurrent_smoke(tmp_path: Path) -> None:
    out = tmp_path / "four.json"
    command = [sys.executable, "-m", "benchmarks", "concurrent", "--records", "500", "--json", str(out),
               "--workdir", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(out.read_text())["results"]
    assert set(result["single"]) == set(result["together"]) == {"shanghai", "jiangsu", "zhejiang", "anhui"}
    assert set(result["committed"].values()) == {"committed"}, "all four commit into the one shared hub"
    assert result["targets"][0]["name"] == "wall time together / slowest alone"


def test_verify_synthetic_lake_smoke(tmp_path: Path) -> None:
    out = tmp_path / "verify.json"
    command = [sys.executable, "-m", "benchmarks", "verify", "--records", "1000", "--lake-gb", "0.0005",
               "--batch-records", "5000", "--json", str(out), "--workdir", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "synthetic batches" in done.stdout and "load average" in done.stdout
    (result,) = json.loads(out.read_text())["results"]
    assert result["ok"] is True and result["batches"] >= 2 and result["lake_mb"] >= 0.5
    counts = result["incremental_counts"]
    assert counts["manifests"] == 1 and counts["lake_files"] >= 1 and counts["landing_files"] >= 1
    assert {t["name"] for t in result["targets"]} >= {"incremental verify after one batch, s"}
    assert not list(tmp_path.glob("bench-verify-*")), "the harness must remove its temporary lake"
