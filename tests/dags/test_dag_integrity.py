"""Every DAG file parses without errors and without side effects (no DB, no drivers, no heavy imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from exchange.datasets import DATASETS, PROVINCES

REPO = Path(__file__).resolve().parents[2]

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
heavy = sorted(m for m in ("exchange.pipeline", "duckdb", "great_expectations", "adapters.shanghai.adapter", "lxml",
                           "adapters.zhejiang.adapter") if m in sys.modules)
dags = {d: {"tasks": sorted(t.task_id for t in bag.dags[d].tasks),
            "tags": sorted(bag.dags[d].tags),
            "retries": bag.dags[d].default_args.get("retries"),
            "timetable": type(bag.dags[d].timetable).__name__,
            "outlets": sorted(str(o.uri) for t in bag.dags[d].tasks for o in t.outlets)} for d in bag.dags}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags, "heavy": heavy}))
"""


def _parse(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    # An unreachable metadata DB: any database call while parsing would fail the parse.
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/no-such-dir/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    }
    out = subprocess.run(
        [sys.executable, "-c", PARSE, str(REPO / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    return result


def test_every_dag_file_imports_cleanly_and_lightly(tmp_path: Path) -> None:
    result = _parse(tmp_path)
    assert result["errors"] == {}
    assert sorted(result["dags"]) == sorted([*(f"exchange_{p}" for p in PROVINCES), "exchange_publish",
                                             "exchange_audit", "exchange_sharing"])
    assert result["heavy"] == [], "DAG parsing must not import the pipeline or drivers"
    for province in PROVINCES:
        dag = result["dags"][f"exchange_{province}"]
        assert province in dag["tags"]
        assert dag["retries"] >= 1
        assert dag["timetable"] == "CronDataIntervalTimetable"
        for dataset in DATASETS:
            for stage in ("pull", "validate", "commit"):
                assert f"{stage}_{dataset}" in dag["tasks"]
            assert f"ducklake://lake/{dataset}" in dag["outlets"], "a commit emits the lake table's Asset event"
    assert result["dags"]["exchange_publish"]["timetable"] == "AssetTriggeredTimetable"
    assert result["dags"]["exchange_audit"]["tasks"] == ["verify"]
    assert result["dags"]["exchange_sharing"]["tasks"] == ["overdue_and_expiry"]
