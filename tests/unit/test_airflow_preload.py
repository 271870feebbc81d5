"""The scheduler preloads what the tasks import, so each task fork inherits it (exchange/airflow/preload.py)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from exchange.airflow.preload import TASK_MODULES, preload, preloads
from tests.unit.test_import_cost import modules_after

REPO = Path(__file__).resolve().parents[2]
TASK_FILES = ("exchange/airflow/factory.py", "exchange/airflow/operations.py", "exchange/airflow/sharing.py")


def _imported_inside_functions(path: Path) -> set[str]:
    """The hub's modules a file imports inside its functions: what its tasks import when they run."""
    names = set()
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, ast.FunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in {
                        "exchange", "adapters"}:
                    names.add(node.module)
    return names


def test_only_a_local_executors_scheduler_preloads() -> None:
    assert preloads(["airflow", "scheduler"], "LocalExecutor")
    assert preloads(["/venv/bin/airflow", "scheduler", "--pid", "x"], "airflow.executors.local_executor.LocalExecutor")
    assert not preloads(["airflow", "scheduler"], "CeleryExecutor")
    for component in ("dag-processor", "api-server", "triggerer", "celery", "tasks"):
        assert not preloads(["airflow", component], "LocalExecutor")
    assert not preloads(["airflow"], "LocalExecutor")


def test_the_preload_covers_every_module_a_task_imports(tmp_path: Path) -> None:
    loaded = modules_after("from exchange.airflow.preload import preload\nassert preload() == []", tmp_path)
    assert len(set(TASK_MODULES)) == len(TASK_MODULES)
    wanted = set().union(*(_imported_inside_functions(REPO / f) for f in TASK_FILES))
    assert wanted and wanted <= loaded, sorted(wanted - loaded)
    # The heavy libraries the tasks use are what makes the preload worth it.
    assert {"duckdb", "pyarrow", "great_expectations"} <= loaded


def test_a_module_that_fails_to_import_is_left_to_the_task(caplog: pytest.LogCaptureFixture) -> None:
    assert preload(("json", "exchange.no_such_module")) == ["exchange.no_such_module"]
    assert "exchange.no_such_module" in caplog.text and "each task imports it itself" in caplog.text


def test_a_celery_worker_preloads_before_its_pool_with_airflows_configuration_unchanged() -> None:
    pytest.importorskip("airflow.providers.celery", reason="the celery extra is not installed")
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import import_modules

    from exchange.airflow import celery_config
    from exchange.airflow.env import celery_env

    option = celery_env("redis://127.0.0.1:6379/0", "postgresql://db/airflow")["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
    module, _, name = option.rpartition(".")
    assert getattr(importlib.import_module(module), name) is DEFAULT_CELERY_CONFIG
    # The signal a worker sends in its main process before it forks the pool.
    assert any(receiver is celery_config._preload for _, receiver in import_modules.receivers)
