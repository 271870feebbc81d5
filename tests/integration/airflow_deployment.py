"""A real Airflow deployment made of subprocesses on a PostgreSQL metadata DB, shared by the Airflow tests.

`deployed()` creates a database of its own, starts api-server, scheduler and dag-processor (plus any extra
components), and always stops what it started and drops the database, also when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.airflow.launcher import health
from tests.hubs import pin_root
from tests.integration.servers import require_server

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_HOST = os.environ.get("EXCHANGE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("EXCHANGE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("EXCHANGE_TEST_PG_USER", "postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def psql(sql: str, dbname: str = "postgres", params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    """Run one statement on the test PostgreSQL server; the rows it returns, if any."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True) as con:
        cur = con.execute(sql, params or None)
        return cur.fetchall() if cur.description else []


@dataclass
class Deployment:
    """An Airflow deployment made of subprocesses, with the environment to talk to it."""

    tmp: Path
    env: dict[str, str]
    db: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""

    def airflow(self, *args: str, timeout: int = 180) -> str:
        out = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"airflow {' '.join(args)} failed:\n{out.stderr[-3000:]}"
        return out.stdout

    def start(self, name: str, *command: str, env: Mapping[str, str] | None = None) -> None:
        """Start `airflow <command>` (default: `airflow <name>`) in a session of its own, logging to <name>.log."""
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([str(BIN / "airflow"), *(command or (name,))],
                                            env=dict(self.env if env is None else env), stdout=log, stderr=log,
                                            start_new_session=True)

    def stop(self, *names: str, sig: int = signal.SIGTERM, grace: float = 30) -> None:
        """Signal each named component's whole process group (task processes forked by a worker or the scheduler
        go with it) at once, then SIGKILL what has not exited `grace` seconds later."""
        procs = [self.procs.pop(name) for name in names]
        for proc in procs:
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the api-server's REST API as an admin (every user is one here), once it answers: milliseconds of
        the server's time, where each `airflow` CLI call imports Airflow in a new process (about 4.5 CPU-s)."""
        import httpx

        base = self.env["AIRFLOW__API__BASE_URL"]
        if not self.token:
            self.wait_until("the api-server", lambda: bool(health(base)), timeout=300, poll=0.5)
            self.token = httpx.get(f"{base}/auth/token", timeout=30).json()["access_token"]
        response = httpx.request(method, base + path, headers={"Authorization": f"Bearer {self.token}"},
                                 timeout=60, **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text[:1000]}"
        return response.json() if response.content else None

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def commit_slots(self, slots: int, description: str = "lake commits", create: bool = False) -> None:
        """Set (or `create`) the lake_commits pool, which commit tasks wait on."""
        body = {"slots": slots, "description": description, "include_deferred": False}
        if create:
            self.api("POST", "/api/v2/pools", json={"name": "lake_commits", **body})
        else:
            self.api("PATCH", "/api/v2/pools/lake_commits", json={"pool": "lake_commits", **body})

    # The tests poll runs, task states and parsing from the metadata DB directly: milliseconds of the server's
    # time, where each `airflow dags list-runs` / `dags list` starts a Python process that imports Airflow (5-8 s
    # of CPU): polled every few seconds, those CLI calls were most of the CPU the scheduler scenarios used.

    def runs(self, dag_id: str) -> list[dict[str, str]]:
        """`dag_id`'s runs, newest first: run_id, state, run_type and logical_date (ISO 8601, "" if none)."""
        rows = psql("SELECT run_id, state, run_type, logical_date FROM dag_run WHERE dag_id = %s "
                    "ORDER BY coalesce(logical_date, run_after) DESC", dbname=self.db, params=(dag_id,))
        return [{"run_id": str(run_id), "state": str(state), "run_type": str(run_type),
                 "logical_date": logical.isoformat() if isinstance(logical, datetime) else ""}
                for run_id, state, run_type, logical in rows]

    def parsed(self, dag_id: str) -> bool:
        """Whether the dag-processor has serialized `dag_id` (what the scheduler and the API read)."""
        return bool(psql("SELECT 1 FROM serialized_dag WHERE dag_id = %s", dbname=self.db, params=(dag_id,)))

    def task_states(self, dag_id: str) -> dict[tuple[str, str], str]:
        """(run_id, task_id) -> state of every task instance of `dag_id`, read from the metadata DB directly
        (milliseconds, where the CLI takes seconds: fast enough to catch a task while it runs)."""
        rows = psql("SELECT run_id, task_id, coalesce(state, 'none') FROM task_instance WHERE dag_id = %s",
                    dbname=self.db, params=(dag_id,))
        return {(str(r[0]), str(r[1])): str(r[2]) for r in rows}

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float, poll: float = 0.2) -> None:
        """Poll `condition` until it holds; `timeout` is a hang guard, failing with `what` and the logs."""
        deadline = time.monotonic() + timeout
        while not condition():
            if dead := [name for name, proc in self.procs.items() if proc.poll() is not None]:
                raise AssertionError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.logs()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} did not happen within {timeout}s\n{self.logs()}")
            time.sleep(poll)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.tmp.glob("*.log"))

    def wait_for(self, dag_id: str, states: set[str], timeout: float) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dead := [name for name, proc in self.procs.items() if proc.poll() is not None]:
                raise AssertionError(f"{', '.join(dead)} exited while waiting for {dag_id}:\n{self.logs()}")
            runs = self.runs(dag_id)
            if runs and all(r["state"] in states for r in runs):
                return runs
            time.sleep(1)
        raise AssertionError(f"{dag_id} runs did not reach {states} within {timeout}s: {self.runs(dag_id)}\n"
                             f"{self.logs()}")


def deployment_env(tmp: Path, db: str) -> dict[str, str]:
    """The environment of every process of a deployment on database `db`, with ports of its own."""
    port = free_port()
    url = f"{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXCHANGE_", "AIRFLOW"))}
    env.update({
        "EXCHANGE_HOME": str(tmp / "home"),
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        # The hub's plugin: the scheduler reads the province DAGs' deadline reference (data interval end) from it.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "exchange" / "airflow" / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{url}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg_async://{url}",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__API__PORT": str(port),
        # Every port of its own: several deployments (parallel test sessions) may share the machine.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Notice a task whose scheduler (and worker) died within a minute rather than the default five.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    })
    return env


@contextmanager
def deployed(tmp: Path, overrides: Mapping[str, str] | None = None,
             components: Sequence[str] = ("api-server", "scheduler", "dag-processor")) -> Iterator[Deployment]:
    """A migrated deployment with the lake_commits pool and `components` running; torn down on exit."""
    require_server(PG_HOST, PG_PORT, "PostgreSQL")
    db = f"exchange_af_{uuid.uuid4().hex[:10]}"
    psql(f"CREATE DATABASE {db}")
    dep = Deployment(tmp, {**deployment_env(tmp, db), **(overrides or {})}, db)
    try:
        dep.airflow("db", "migrate", timeout=300)
        for name in components:
            dep.start(name)
        if "api-server" in components:  # DAGs are paused at creation: no commit task runs before this
            dep.commit_slots(1, create=True)
        yield dep
    finally:
        # All at once, 10 s of grace: the api-server and the scheduler exit within about 2 s, where a
        # dag-processor was once seen parsing on for the whole 30 s after its SIGTERM.
        dep.stop(*dep.procs, grace=10)
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def seed_jiangsu(home: Path, start: datetime, end: datetime, n: int = 600) -> None:
    """Seed the Jiangsu drop folder under `home` with `n` records per dataset updated in [start, end)."""
    from adapters.base import sandbox_for
    from exchange.config import Layout
    from exchange.synthetic import generate

    sandbox = sandbox_for("jiangsu", Layout(home).ensure().sandboxes / "jiangsu")
    for dataset in ("e_license", "enterprise_registration"):
        sandbox.seed(dataset, generate(dataset, "jiangsu", n, seed=5, start=start, end=end))


def wait_parsed(dep: Deployment, dag_id: str, timeout: float = 180) -> None:
    dep.wait_until(f"{dag_id} parsed by the dag-processor", lambda: dep.parsed(dag_id), timeout=timeout, poll=1)


def lake_batches(home: Path) -> list[dict[str, object]]:
    manifests = sorted((home / "manifests").rglob("*.json"))
    return [json.loads(p.read_text())["manifest"] for p in manifests]


def recent_window() -> tuple[datetime, datetime]:
    from exchange.demo import DemoWindow

    window = DemoWindow.around(datetime.now(UTC))
    return window.start, window.end


def verify(env: dict[str, str]) -> None:
    # The deployment's operator pins the hub's root key outside the home, once it exists.
    env = {**env, "EXCHANGE_TRUST_ANCHOR": str(pin_root(Path(env["EXCHANGE_HOME"])))}
    out = subprocess.run([str(BIN / "exchange"), "verify"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
