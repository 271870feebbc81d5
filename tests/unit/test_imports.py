"""`exchange query`, `exchange verify` and `exchange serve` never import Great Expectations, Airflow or dlt.

Each command's real code path runs in a fresh interpreter on a small committed home (the serve command with
uvicorn replaced by an in-process client that makes a real query), and the interpreter reports which heavy
packages ended up in sys.modules. The home itself is built in this process, which may import anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.base import sandbox_for
from exchange.access.models import Department, Grant, RowCondition
from exchange.access.registry import Registry
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.synthetic import generate
from tests.hubs import pin_root

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("great_expectations", "airflow", "dlt")
DEPARTMENT = "js.public_security"

# Runs one command's code path, then prints the heavy packages loaded (top-level names) as JSON.
PROBE = textwrap.dedent(
    """
    import json, sys
    from typer.testing import CliRunner

    command = sys.argv[1]
    if command == "serve":
        import uvicorn
        from fastapi.testclient import TestClient

        def serve_briefly(app, **_):
            with TestClient(app) as client:
                me = client.get("/v1/me", headers={"Authorization": "Bearer " + sys.argv[2]})
                assert me.status_code == 200, me.text
                answer = client.post("/v1/query", headers={"Authorization": "Bearer " + sys.argv[2]},
                                     json={"sql": "SELECT count(*) AS n FROM e_license"})
                assert answer.status_code == 200, answer.text

        uvicorn.run = serve_briefly
        args = ["serve"]
    elif command == "query":
        args = ["query", "SELECT count(*) AS n FROM e_license", "--department", sys.argv[2]]
    else:
        args = ["verify"]

    from exchange.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    heavy = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[3].split(",")))
    print("HEAVY=" + json.dumps(heavy))
    """
)


@pytest.fixture(scope="module")
def committed_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home with one committed Jiangsu batch, a department, a grant on it and an API token."""
    home = tmp_path_factory.mktemp("imports") / "home"
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    hub = Hub(ExchangeSettings(home=home, jiangsu_drop_dir=home / "sandboxes" / "jiangsu" / "drop"))
    sandbox.seed("e_license", generate("e_license", "jiangsu", 200, seed=3, start=START, end=END))
    run_exchange("jiangsu", "e_license", START, END, hub)
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEPARTMENT, name="江苏省公安厅", province="jiangsu"))
    registry.add_grant(
        Grant(id="g1", department=DEPARTMENT, dataset="e_license", columns=["license_id", "status"],
              row_filter=[RowCondition(column="status", op="in", values=["valid"])], purpose="licence checks",
              legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
              expires_on=datetime.now(UTC).date() + timedelta(days=30), issued_at=datetime.now(UTC)),
        hub.signer,
    )
    _, bearer = registry.issue_token(DEPARTMENT)
    return home, bearer


@pytest.mark.parametrize("command", ["query", "verify", "serve"])
def test_command_imports_no_heavy_package(command: str, committed_home: tuple[Path, str]) -> None:
    home, bearer = committed_home
    env = {**os.environ, "EXCHANGE_HOME": str(home), "PYTHONPATH": str(ROOT),
           "EXCHANGE_TRUST_ANCHOR": str(pin_root(home))}
    argument = bearer if command == "serve" else DEPARTMENT
    done = subprocess.run([sys.executable, "-c", PROBE, command, argument, ",".join(HEAVY)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == [], f"`exchange {command}` imported {line}"


def test_the_composition_root_imports_no_stage_machinery() -> None:
    """exchange.hub wires settings, keys and the log: no GX, Airflow, dlt, adapters or contract code."""
    banned = (*HEAVY, "adapters", "exchange.contracts", "exchange.pipeline")
    probe = ("import sys, exchange.hub; "
             f"print(sorted(m for m in sys.modules for b in {banned!r} if m == b or m.startswith(b + '.')))")
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", done.stdout
