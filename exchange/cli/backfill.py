"""`exchange backfill`: `airflow backfill create` for one province's DAG, then wait and report.

With no Airflow deployment configured (no AIRFLOW_HOME / AIRFLOW__DATABASE__SQL_ALCHEMY_CONN in the
environment) it uses the hub's embedded one under EXCHANGE_HOME/airflow: it migrates the SQLite metadata
DB, creates the lake_commits pool, serializes the DAGs and, since nothing else would run the backfill's
runs, starts an api-server and a scheduler for as long as it waits. Against a configured deployment it
only creates the backfill and watches the runs its scheduler executes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from exchange.cli import app, console
from exchange.errors import TerminalError

if TYPE_CHECKING:
    from exchange.config import Layout

TERMINAL = ("success", "failed")
POLL_SECONDS = 5.0


class Reprocess(StrEnum):
    """`airflow backfill create --reprocess-behavior`: what to do with intervals that already have a run."""

    none = "none"
    failed = "failed"
    completed = "completed"


@dataclass(frozen=True)
class BackfillRange:
    """Data intervals starting on days `start`..`end` (inclusive) in the province's time zone."""

    dag_id: str
    start: date
    end: date
    tz: ZoneInfo

    @property
    def from_date(self) -> datetime:
        return datetime.combine(self.start, datetime.min.time(), self.tz)

    @property
    def to_date(self) -> datetime:
        # `--to-date` is inclusive of logical dates: the last second of the end day covers a run at any hour.
        return datetime.combine(self.end + timedelta(days=1), datetime.min.time(), self.tz) - timedelta(seconds=1)

    def interval_starts(self, schedule: str) -> list[datetime]:
        """When the intervals `schedule` (a cron in the range's time zone) starts in the range begin."""
        from croniter import croniter

        fires = croniter(schedule, self.from_date - timedelta(microseconds=1))
        starts = []
        while (at := fires.get_next(datetime)) <= self.to_date:
            starts.append(at)
        return starts

    def covers(self, logical_date: str) -> bool:
        if not logical_date:
            return False
        return self.from_date <= datetime.fromisoformat(logical_date) <= self.to_date


def create_args(rng: BackfillRange, max_active_runs: int, reprocess: Reprocess, dry_run: bool) -> list[str]:
    """The `airflow` arguments that create the backfill."""
    args = ["backfill", "create", "--dag-id", rng.dag_id, "--from-date", rng.from_date.isoformat(),
            "--to-date", rng.to_date.isoformat(), "--max-active-runs", str(max_active_runs),
            "--reprocess-behavior", reprocess.value]
    return [*args, "--dry-run"] if dry_run else args


def backfill_runs(runs: list[dict[str, str]], rng: BackfillRange) -> list[dict[str, str]]:
    """The backfill's runs among `airflow dags list-runs` output, oldest interval first."""
    mine = [r for r in runs if r.get("run_id", "").startswith("backfill__") and rng.covers(r.get("logical_date", ""))]
    return sorted(mine, key=lambda r: r["logical_date"])


Runner = Callable[[list[str], dict[str, str]], str]


def run_airflow(args: list[str], env: dict[str, str]) -> str:
    """Run `airflow ARGS`; its stdout, or an error naming the command and Airflow's message."""
    from exchange.airflow.env import AIRFLOW

    out = subprocess.run([str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        tail = (out.stderr.strip() or out.stdout.strip()).splitlines()[-5:]
        raise TerminalError(f"airflow {' '.join(args[:2])} failed (exit {out.returncode}): {' | '.join(tail)}")
    return out.stdout


def list_runs(runner: Runner, env: dict[str, str], dag_id: str) -> list[dict[str, str]]:
    text = runner(["dags", "list-runs", dag_id, "-o", "json"], env)
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("[")), "[]")
    runs: list[dict[str, str]] = json.loads(line)
    return runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scheduler_env(env: dict[str, str]) -> dict[str, str]:
    """What an embedded api-server and scheduler need to talk to each other (own ports, a shared secret)."""
    port = _free_port()
    return {**env,
            "AIRFLOW__API_AUTH__JWT_SECRET": env.get("AIRFLOW__API_AUTH__JWT_SECRET", uuid.uuid4().hex),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(_free_port())}


@contextmanager
def embedded_scheduler(env: dict[str, str], logs: Path) -> Iterator[None]:
    """An api-server and a scheduler for the embedded deployment; both stopped (process groups) on exit."""
    from exchange.airflow.env import AIRFLOW

    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for name in ("api-server", "scheduler"):
            with (logs / f"{name}.log").open("ab") as log:
                procs.append(subprocess.Popen([str(AIRFLOW), name], env=env, stdout=log, stderr=log,
                                              start_new_session=True))
        yield
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def wait_for(runner: Runner, env: dict[str, str], rng: BackfillRange, timeout: float,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> list[dict[str, str]]:
    """Poll until every run of the backfill is success or failed, or `timeout` seconds passed."""
    deadline = clock() + timeout
    while True:
        runs = backfill_runs(list_runs(runner, env, rng.dag_id), rng)
        if (runs and all(r["state"] in TERMINAL for r in runs)) or clock() >= deadline:
            return runs
        sleep(POLL_SECONDS)


def _report(runs: list[dict[str, str]], rng: BackfillRange) -> int:
    table = Table("logical date", "run", "state", "started", "ended", title=f"{rng.dag_id} backfill")
    for r in runs:
        local = datetime.fromisoformat(r["logical_date"]).astimezone(rng.tz).isoformat()
        table.add_row(local, r["run_id"], r["state"], r.get("start_date", ""), r.get("end_date", ""))
    console.print(table)
    states = [r["state"] for r in runs]
    if runs and all(s == "success" for s in states):
        console.print(f"{len(runs)} run(s) succeeded", style="green")
        return 0
    if any(s == "failed" for s in states):
        console.print(f"{states.count('failed')} run(s) failed: see EXCHANGE_HOME/reports/failures/", style="red")
        return 1
    console.print("not finished: is a scheduler running for this deployment? "
                  "(`airflow dags list-runs` shows progress)")
    return 1


@app.command()
def backfill(
    province: Annotated[str, typer.Option(help="shanghai, jiangsu, zhejiang or anhui")],
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First day (data intervals starting on it)")],
    end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="Last day, inclusive")],
    max_active_runs: Annotated[int, typer.Option(min=1, help="Intervals run at the same time")] = 1,
    reprocess: Annotated[Reprocess, typer.Option(help="Intervals that already have a run: none = leave them, "
                                                      "failed = re-run failed ones, completed = re-run all")]
    = Reprocess.none,
    dry_run: Annotated[bool, typer.Option(help="Only list the intervals Airflow would run")] = False,
    wait: Annotated[bool, typer.Option(help="Wait for the runs and report their states")] = True,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for the runs")] = 3600,
    run_scheduler: Annotated[bool | None, typer.Option(
        help="Start an api-server and scheduler while waiting (default: only for the embedded deployment)")]
    = None,
) -> None:
    """Re-run a province's exchange for a date range with `airflow backfill create` (idempotent per interval)."""
    from exchange.config import Layout, settings
    from exchange.datasets import PROVINCES
    from exchange.province_config import load_province

    if province not in PROVINCES:
        raise typer.BadParameter(f"unknown province {province!r}; one of {', '.join(PROVINCES)}",
                                 param_hint="--province")
    if end.date() < start.date():
        raise typer.BadParameter(f"--end {end:%Y-%m-%d} is before --start {start:%Y-%m-%d}", param_hint="--end")
    try:
        cfg = load_province(province)  # the current schedule: a broken province.yaml stops here, named
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--province") from None
    if start.date() < cfg.start_date:
        raise typer.BadParameter(f"{province}'s DAG starts on {cfg.start_date} (province.yaml start_date); "
                                 "there are no intervals before it", param_hint="--start")
    rng = BackfillRange(f"exchange_{province}", start.date(), end.date(), ZoneInfo(cfg.timezone))
    if dry_run:
        # What province.yaml says now, whatever schedule the deployment serialized before (Airflow's list below).
        starts = rng.interval_starts(cfg.schedule)
        span = f": {starts[0].isoformat()} .. {starts[-1].isoformat()}" if starts else ""
        console.print(f"adapters/{province}/province.yaml schedule {cfg.schedule!r} ({cfg.timezone}): "
                      f"{len(starts)} interval(s) start in the range{span}", markup=False, highlight=False)
    try:
        code = run_backfill(rng, max_active_runs, reprocess, dry_run, wait, timeout, run_scheduler,
                            Layout(settings().home), run_airflow)
    except subprocess.SubprocessError as exc:  # airflow did not answer in time
        raise TerminalError(f"airflow: {exc}") from exc
    raise typer.Exit(code)


def run_backfill(rng: BackfillRange, max_active_runs: int, reprocess: Reprocess, dry_run: bool, wait: bool,
                 timeout: float, run_scheduler: bool | None, layout: Layout, runner: Runner) -> int:
    """Create the backfill (preparing the embedded deployment first) and, unless told not to, wait and report."""
    from exchange.airflow.env import airflow_env, init_metadata_db, is_configured
    from exchange.config import settings
    from exchange.datasets import PROVINCES

    embedded = not is_configured(os.environ)
    env = dict(os.environ)
    if embedded:
        layout.airflow.mkdir(parents=True, exist_ok=True)
        env.update(airflow_env(layout))
        console.print(f"embedded Airflow deployment under {layout.airflow}")
        init_metadata_db(settings(), env)
        runner(["dags", "reserialize"], env)  # the backfill needs the DAG in the metadata DB
        # The scheduler started below would also run the other provinces' latest intervals; only this one runs.
        others = "|".join(p for p in PROVINCES if f"exchange_{p}" != rng.dag_id)
        runner(["dags", "pause", "--treat-dag-id-as-regex", "--yes", f"^exchange_({others})$"], env)
        runner(["dags", "unpause", rng.dag_id], env)  # backfills run only for unpaused DAGs
    console.print(f"backfill {rng.dag_id}: intervals starting {rng.from_date.isoformat()} .. {rng.to_date.isoformat()}")
    created = runner(create_args(rng, max_active_runs, reprocess, dry_run), env)
    if dry_run or not wait:
        console.print(created.strip())
        return 0
    if run_scheduler if run_scheduler is not None else embedded:
        env = scheduler_env(env)
        with embedded_scheduler(env, layout.airflow / "logs" / "exchange-backfill"):
            runs = wait_for(runner, env, rng, timeout)
    else:
        runs = wait_for(runner, env, rng, timeout)
    return _report(runs, rng)
