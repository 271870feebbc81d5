"""Start and stop the Airflow UI of one EXCHANGE_HOME: api-server, scheduler, dag-processor and triggerer.

Everything binds to 127.0.0.1. What the processes share is kept under EXCHANGE_HOME/airflow, owner-only:
the simple auth manager's password file, the JWT and API secrets, and run/ (a pid file per component and
ui.json with the URL and ports), so `down` stops exactly what `up` started, from any shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exchange.atomic import write_private, write_text
from exchange.config import ExchangeSettings, Layout
from exchange.errors import TerminalError

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
USER = "admin"
DEFAULT_PORT = 8080
HEALTH = "/api/v2/monitor/health"
# Seconds `down` gives every process to exit on SIGTERM before SIGKILL: the components exit within a few
# seconds once their children are told to stop too; an api-server or task busy longer is cut off.
GRACE = 5.0
KILL_ROUNDS = 20


@dataclass(frozen=True)
class UiPaths:
    """Where one home's UI keeps its state."""

    layout: Layout

    @property
    def run(self) -> Path:
        return self.layout.airflow / "run"

    @property
    def state(self) -> Path:
        return self.run / "ui.json"

    @property
    def passwords(self) -> Path:
        return self.layout.airflow / "simple_auth_manager_passwords.json.generated"

    @property
    def secrets(self) -> Path:
        return self.layout.airflow / "ui-secrets.json"

    @property
    def logs(self) -> Path:
        return self.layout.airflow / "logs" / "ui"

    def pid(self, component: str) -> Path:
        return self.run / f"{component}.pid"


def _private(path: Path, text: str) -> None:
    """Write a secret owner-only (0600) from the start: the temp file is created with that mode."""
    write_private(path, text.encode("utf-8"))


def ensure_secrets(paths: UiPaths) -> dict[str, str]:
    """The admin password file (simple auth manager's format) and the JWT/API secrets; made once per home."""
    if not paths.passwords.exists():
        _private(paths.passwords, json.dumps({USER: secrets.token_urlsafe(18)}) + "\n")
    if not paths.secrets.exists():
        _private(paths.secrets, json.dumps({"jwt_secret": secrets.token_hex(32), "secret_key": secrets.token_hex(32)}))
    stored: dict[str, str] = json.loads(paths.secrets.read_text(encoding="utf-8"))
    return stored


def password(paths: UiPaths) -> str:
    """The admin password (for a test or a script; `up` prints only where it is)."""
    stored: dict[str, str] = json.loads(paths.passwords.read_text(encoding="utf-8"))
    return stored[USER]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether a server can listen on the loopback port now. Probed as servers bind (SO_REUSEADDR), so a port
    a stopped server's connections left in TIME_WAIT counts as free; one something listens on does not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ui_env(layout: Layout, port: int, base: dict[str, str]) -> dict[str, str]:
    """The environment of every UI process: the embedded default's AIRFLOW_* plus loopback ports and secrets."""
    from exchange.airflow.env import airflow_env

    paths = UiPaths(layout)
    stored = ensure_secrets(paths)
    url = f"http://127.0.0.1:{port}"
    env = {**base, **airflow_env(layout), "EXCHANGE_HOME": str(layout.home)}
    env.update({
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": stored["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": stored["secret_key"],
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(paths.passwords),
        # Own ports, so two homes' UIs (or a test's) can run side by side on one machine.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
    })
    # The demo pins its home's trust anchor beside the home; the audit DAG's verify needs it.
    anchor = layout.home.parent / f"{layout.home.name}.trust-anchor"
    if "EXCHANGE_TRUST_ANCHOR" not in env and anchor.exists():
        env["EXCHANGE_TRUST_ANCHOR"] = str(anchor)
    return env


def alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by whoever inherited it) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def running(paths: UiPaths) -> dict[str, int]:
    """Components whose pid file names a live process."""
    found = {}
    for component in COMPONENTS:
        try:
            pid = int(paths.pid(component).read_text().strip())
        except (OSError, ValueError):
            continue
        if alive(pid):
            found[component] = pid
    return found


def health(url: str, timeout: float = 5) -> dict[str, dict[str, str | None]]:
    """The api-server's health document ({} while it does not answer)."""
    try:
        with urllib.request.urlopen(url + HEALTH, timeout=timeout) as response:  # noqa: S310 - loopback URL we built
            result: dict[str, dict[str, str | None]] = json.loads(response.read())
            return result
    except (urllib.error.URLError, OSError, ValueError):
        return {}


def healthy(doc: dict[str, dict[str, str | None]]) -> bool:
    keys = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((doc.get(k) or {}).get("status") == "healthy" for k in keys)


@dataclass(frozen=True)
class UiInfo:
    """What `up` reports: where the UI is and where its login is kept."""

    url: str
    user: str
    password_file: Path
    pids: dict[str, int]
    logs: Path
    already_running: bool
    recorded: tuple[str, ...] = ()  # windows run by hand, recorded as their scheduled runs before the start


def up(settings: ExchangeSettings, port: int | None = None, timeout: float = 300,
       sleep: Callable[[float], None] = time.sleep) -> UiInfo:
    """Migrate the metadata DB, start the four components, wait until the api-server reports them healthy."""
    from exchange.airflow.env import AIRFLOW, init_metadata_db
    from exchange.airflow.local_runs import record_in_airflow

    layout = Layout(settings.home)
    paths = UiPaths(layout)
    if current := running(paths):
        state = json.loads(paths.state.read_text(encoding="utf-8"))
        return UiInfo(state["url"], USER, paths.passwords, current, paths.logs, already_running=True)
    port = port or (DEFAULT_PORT if port_free(DEFAULT_PORT) else free_port())
    if not port_free(port):
        raise TerminalError(f"port {port} on 127.0.0.1 is taken; pass --port with a free one")
    layout.airflow.mkdir(parents=True, exist_ok=True)
    env = ui_env(layout, port, dict(os.environ))
    init_metadata_db(settings, env)
    # Before the scheduler starts: windows the hub finished by hand are those windows' runs, not due again.
    recorded = tuple(record_in_airflow(env))
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    for component in COMPONENTS:
        with (paths.logs / f"{component}.log").open("ab") as log:
            proc = subprocess.Popen([str(AIRFLOW), component], env=env, stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        pids[component] = proc.pid
        paths.pid(component).write_text(f"{proc.pid}\n")
    url = env["AIRFLOW__API__BASE_URL"]
    write_text(paths.state, json.dumps({"url": url, "port": port, "pids": pids}, indent=2))
    deadline = time.monotonic() + timeout
    doc: dict[str, dict[str, str | None]] = {}
    while time.monotonic() < deadline:
        if dead := [c for c, pid in pids.items() if not alive(pid) or _reaped(pid)]:
            down(settings)
            raise TerminalError(f"airflow {', '.join(dead)} exited while starting; see {paths.logs}/")
        doc = health(url)
        if healthy(doc):
            return UiInfo(url, USER, paths.passwords, pids, paths.logs, already_running=False, recorded=recorded)
        sleep(2)
    down(settings)
    raise TerminalError(f"the Airflow UI was not healthy within {timeout:.0f}s ({doc or 'no answer'}); "
                        f"see {paths.logs}/")


def _reaped(pid: int) -> bool:
    """True once our own child `pid` has exited (collects it, so it is not left a zombie that looks alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def down(settings: ExchangeSettings, grace: float = GRACE, poll: float = 0.1,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Stop everything `up` started for this home; the components that were running.

    Everything: every process in the components' sessions (`up` starts each in a session of its own), which
    includes the task processes the scheduler's executor puts in process groups of their own and any that
    outlived their parent, plus processes writing to the UI's logs. All get SIGTERM at once, so no component
    waits for a child that was never told to stop (the scheduler waits on its running tasks); whatever still
    runs after `grace` seconds gets SIGKILL (a cut-off task is retried, every task being idempotent).
    """
    paths = UiPaths(Layout(settings.home))
    current = running(paths)
    sessions = {pid for c in COMPONENTS if (pid := _pid_in(paths.pid(c))) is not None}

    def members() -> set[int]:
        return {p for p in session_members(sessions) | set(strays(paths.logs)) if alive(p) and not _reaped(p)}

    for pid in members():
        _kill(pid, signal.SIGTERM)
    deadline = clock() + grace
    while members() and clock() < deadline:
        sleep(poll)
    for _ in range(KILL_ROUNDS):  # a process forked meanwhile is a member too
        if not (left := members()):
            break
        for pid in left:
            _kill(pid, signal.SIGKILL)
        sleep(poll)
    for component in COMPONENTS:
        paths.pid(component).unlink(missing_ok=True)
    paths.state.unlink(missing_ok=True)
    return sorted(current)


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def session_members(sessions: set[int]) -> set[int]:
    """Processes whose session id is one of `sessions` (Linux /proc), this process excepted."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) in sessions:  # after the name: state, ppid, process group, session
            found.add(int(proc.name))
    return found - {os.getpid()}


def strays(logs: Path) -> list[int]:
    """Processes whose stdout or stderr is one of this UI's log files (Linux /proc), e.g. orphaned task runs."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        for fd in ("1", "2"):
            try:
                target = os.readlink(proc / "fd" / fd)
            except OSError:
                continue
            if target.startswith(str(logs) + os.sep):
                found.append(int(proc.name))
                break
    return [pid for pid in found if pid != os.getpid()]


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
