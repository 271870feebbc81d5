"""`exchange airflow up|down`: the Airflow UI of one EXCHANGE_HOME on 127.0.0.1 (see exchange/airflow/launcher.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from exchange.cli import app, console

airflow_app = typer.Typer(help="Start or stop the Airflow UI (api-server, scheduler, dag-processor, triggerer)",
                          no_args_is_help=True)
app.add_typer(airflow_app, name="airflow")


@airflow_app.command()
def up(
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="api-server port (default 8080, else a free one)")]
    = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait until every component is healthy")] = 300,
) -> None:
    """Start the UI for EXCHANGE_HOME and wait until it is healthy; print its URL and where the login is."""
    from exchange.airflow.launcher import up as start
    from exchange.config import settings

    info = start(settings(), port=port, timeout=timeout)
    for recorded in info.recorded:
        console.print(f"recorded a window run by hand (exchange run) as its scheduled run: {recorded}",
                      markup=False, highlight=False, soft_wrap=True)
    state = "already running" if info.already_running else "started"
    console.print(f"Airflow UI {state}: {info.url}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"login: user {info.user}, password in {info.password_file} (readable by you only)",
                  markup=False, highlight=False, soft_wrap=True)
    console.print(f"components: {', '.join(f'{c} (pid {p})' for c, p in info.pids.items())}; logs in {info.logs}",
                  markup=False, highlight=False, soft_wrap=True)
    console.print("stop it with: exchange airflow down", markup=False, highlight=False, soft_wrap=True)


@airflow_app.command()
def down() -> None:
    """Stop the UI components `exchange airflow up` started for EXCHANGE_HOME."""
    from exchange.airflow.launcher import down as stop
    from exchange.config import settings

    stopped = stop(settings())
    console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running for this EXCHANGE_HOME",
                  markup=False, highlight=False, soft_wrap=True)
