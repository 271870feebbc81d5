"""Distributed Airflow: CeleryExecutor with a Redis broker and the PostgreSQL result backend.

api-server, scheduler and dag-processor run as in test_airflow_scheduler.py; tasks go through the broker to
one `airflow celery worker` (concurrency 2). The worker is set up as if it ran on another host: an
AIRFLOW_HOME (and so task logs) of its own and no metadata-DB connection - only the broker, the result backend,
the execution API URL, the shared secrets and EXCHANGE_HOME. The test triggers the Jiangsu DAG, checks that
every task ran on that worker and the lake has the batches, then stops everything it started.

EXCHANGE_TEST_CELERY_BROKER picks another broker, e.g. amqp://guest:guest@127.0.0.1:5672// for RabbitMQ.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from exchange.airflow.env import celery_env
from exchange.airflow.preload import TASK_MODULES
from tests.integration.airflow_deployment import (
    Deployment,
    deployed,
    lake_batches,
    psql,
    recent_window,
    seed_jiangsu,
    verify,
    wait_parsed,
)
from tests.integration.servers import require_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Redis DB 5 is this test's own, apart from whatever else uses the local Redis.
BROKER = os.environ.get("EXCHANGE_TEST_CELERY_BROKER", "redis://127.0.0.1:6379/5")
DAG_ID = "exchange_jiangsu"


def _redis_keys() -> set[bytes | str]:
    import redis

    return set(redis.Redis.from_url(BROKER).keys("*")) if BROKER.startswith("redis") else set()


def _clean_broker(queue: str, before: set[bytes | str]) -> None:
    """Remove what the deployment left on the broker: its queue (RabbitMQ), every key it created (Redis)."""
    from kombu.connection import Connection

    with Connection(BROKER) as conn:  # type: ignore[no-untyped-call]
        conn.default_channel.queue_delete(queue)
    if BROKER.startswith("redis"):
        import redis

        client = redis.Redis.from_url(BROKER)
        if new := set(client.keys("*")) - before:
            client.delete(*new)


def _require_celery_executor() -> None:
    """Fail at once, saying why, when the installed provider and Celery cannot load the executor."""
    try:
        import airflow.providers.celery.executors.celery_executor  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the CeleryExecutor does not import with the installed packages ({exc}); "
                    "apache-airflow-providers-celery 3.26.0 needs celery < 5.7 (5.7 dropped "
                    "celery.backends.database.retry)")


@pytest.fixture
def celery_deployment(tmp_path: Path) -> Iterator[tuple[Deployment, str, str]]:
    broker = urlsplit(BROKER)
    require_server(broker.hostname or "127.0.0.1", broker.port or 6379, f"the Celery broker ({broker.scheme})")
    _require_celery_executor()
    tag = uuid.uuid4().hex[:8]
    queue, worker_name = f"exchange_{tag}", f"exchange-{tag}"  # no other worker may take our tasks
    keys_before = _redis_keys()
    overrides = {
        "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,  # signs the api-server's requests for a worker's logs
        # The result backend then records which worker ran each task.
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"result_extended": True}),
    }
    try:
        with deployed(tmp_path, overrides, components=()) as dep:
            # The result backend shares the metadata DB, as Airflow's default does.
            dep.env.update(celery_env(BROKER, dep.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], concurrency=2,
                                      queue=queue))
            for name in ("api-server", "scheduler", "dag-processor"):
                dep.start(name)
            dep.commit_slots(1, create=True)
            worker_env = {k: v for k, v in dep.env.items() if not k.startswith("AIRFLOW__DATABASE__")}
            worker_env["AIRFLOW_HOME"] = str(tmp_path / "worker-airflow")
            # airflow.cfg's WARNING leaves a successful task's log empty; INFO gives the api-server one to fetch.
            worker_env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
            dep.start("celery-worker", "celery", "worker", "--celery-hostname", f"{worker_name}@%h",
                      env=worker_env)
            yield dep, queue, worker_name
    finally:
        _clean_broker(queue, keys_before)


def _task_instances(dep: Deployment) -> list[dict[str, object]]:
    """What Airflow recorded for each task instance, joined with Celery's record of the task it sent."""
    rows = psql(
        "SELECT ti.task_id, ti.run_id, ti.try_number, ti.state, ti.hostname, ti.queue, m.status, m.worker"
        " FROM task_instance ti LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id"
        f" WHERE ti.dag_id = '{DAG_ID}'", dbname=dep.db)
    keys = ("task_id", "run_id", "try_number", "state", "hostname", "queue", "celery_status", "celery_worker")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _task_log(dep: Deployment, ti: dict[str, object]) -> str:
    base = dep.env["AIRFLOW__API__BASE_URL"]
    url = (f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{quote(str(ti['run_id']), safe='')}/taskInstances/"
           f"{ti['task_id']}/logs/{ti['try_number']}?full_content=true")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                timeout=60) as resp:
        return json.dumps(json.load(resp)["content"], ensure_ascii=False)


def test_a_province_dag_runs_on_a_celery_worker(celery_deployment: tuple[Deployment, str, str]) -> None:
    dep, queue, worker_name = celery_deployment
    home = Path(dep.env["EXCHANGE_HOME"])
    seed_jiangsu(home, *recent_window())
    wait_parsed(dep, DAG_ID)
    dep.unpause(DAG_ID)
    dep.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": datetime.now(UTC).isoformat()})
    runs = dep.wait_for(DAG_ID, {"success", "failed"}, timeout=420)
    assert {r["state"] for r in runs} == {"success"}, f"{runs}\n{dep.logs()}"

    # Airflow learns a task's state from the task process (execution API) before the worker's Celery task returns
    # and stores its result: a run can be `success` while its last task's Celery status still says STARTED.
    dep.wait_until("Celery's result of every task it ran", lambda: not [
        ti for ti in _task_instances(dep) if ti["celery_status"] in {"PENDING", "STARTED"}], timeout=120, poll=1)
    tis = _task_instances(dep)
    ran = [ti for ti in tis if ti["state"] == "success"]
    assert ran and all(ti["state"] in {"success", "skipped"} for ti in tis), tis
    for ti in ran:
        # Sent to our queue, run and acknowledged by our worker: the Celery task id Airflow recorded for the
        # task instance is in the result backend, finished, with the worker's name.
        assert ti["queue"] == queue and ti["hostname"], ti
        assert ti["celery_status"] == "SUCCESS", ti
        assert str(ti["celery_worker"]).startswith(f"{worker_name}@"), ti
    # The worker keeps task logs in its own AIRFLOW_HOME; the api-server fetches them from the worker's log
    # server, which only accepts requests signed with the shared [api] secret_key.
    worker_logs = dep.tmp / "worker-airflow" / "logs"
    assert any(worker_logs.rglob("*.log")), "the worker wrote no task logs under its own AIRFLOW_HOME"
    log = _task_log(dep, ran[0])
    served_from = f":{dep.env['AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT']}/log/dag_id={DAG_ID}/"
    assert served_from in log and "Could not read served logs" not in log and "secret_key" not in log, log[:3000]

    batches = lake_batches(home)
    assert sorted(str(b["dataset"]) for b in batches) == ["e_license", "enterprise_registration"]
    for b in batches:
        counts = b["counts"]
        assert isinstance(counts, dict)
        assert counts["pulled"] == 600 and counts["pulled"] == counts["accepted"] + counts["quarantined"]
    verify(dep.env)
    # The worker imported what the tasks import once, before forking its pool (exchange/airflow/celery_config.py).
    worker_log = (dep.tmp / "celery-worker.log").read_text(errors="replace")
    assert f"preloaded {len(TASK_MODULES)} task modules for the Celery worker pool's forks" in worker_log
