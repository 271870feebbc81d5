"""The `exchange` command: run exchanges and inspect quarantine; access and audit commands are in
exchange/cli/access.py and exchange/cli/audit.py."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from exchange.errors import ExchangeError

if TYPE_CHECKING:
    from exchange.pipeline import Hub

app = typer.Typer(help="Yangtze River Delta government data-exchange hub.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Records the contracts rejected, with reasons.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")
console = Console()


def _hub() -> Hub:
    # Imported lazily: `exchange --help` should not load DuckDB, GX and the adapters.
    from exchange.pipeline import Hub

    return Hub.current()


def _fail(exc: ExchangeError) -> None:
    console.print(f"[red]error:[/] {exc}")
    raise typer.Exit(2)


@app.command()
def demo(
    home: Annotated[Path, typer.Option(help="EXCHANGE_HOME for the demo", envvar="EXCHANGE_HOME")] = Path("var"),
    fresh: Annotated[bool, typer.Option(help="Start from an empty EXCHANGE_HOME")] = True,
    records: Annotated[int, typer.Option(help="Records per province and dataset")] = 5_000,
) -> None:
    """Seed the sandboxes, run all four province DAGs through Airflow, extract, verify, summarize."""
    from exchange.demo import run_demo

    raise typer.Exit(run_demo(home, fresh=fresh, records=records))


@app.command()
def run(
    province: Annotated[str, typer.Option(help="shanghai, jiangsu, zhejiang or anhui")],
    dataset: Annotated[str, typer.Option(help="e_license or enterprise_registration")],
    start: Annotated[datetime, typer.Option(help="Window start (ISO 8601, with offset)")],
    end: Annotated[datetime, typer.Option(help="Window end (ISO 8601, with offset)")],
) -> None:
    """Run pull -> validate -> commit for one window outside Airflow."""
    from exchange.pipeline import run_exchange

    try:
        console.print_json(json.dumps(run_exchange(province, dataset, start, end, _hub()), default=str))
    except ExchangeError as exc:
        _fail(exc)


@quarantine_app.command("list")
def quarantine_list(
    province: Annotated[str | None, typer.Option(help="Only this province")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show")] = 50,
) -> None:
    """Show quarantined records: batch, record key, rule and the reason to act on."""
    from exchange.lake.connect import LAKE, connect

    with connect(_hub().settings, read_only=True) as con:
        where, params = ("WHERE province = ?", [province]) if province else ("", [])
        rows = con.execute(
            f"SELECT batch_id, record_key, rule_id, reason FROM {LAKE}.quarantine {where} "
            f"ORDER BY batch_id, record_key LIMIT {int(limit)}", params).fetchall()
    table = Table("batch", "record", "rule", "reason")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console.print(table)


@quarantine_app.command("show")
def quarantine_show(
    record_key: Annotated[str, typer.Argument(help="Key of the rejected record (licence id, USCC, ...)")],
) -> None:
    """Show every rejection of one record with the full record as the province sent it (after mapping)."""
    from exchange.lake.connect import LAKE, connect

    with connect(_hub().settings, read_only=True) as con:
        rows = con.execute(
            f"SELECT batch_id, province, dataset, rule_id, reason, record_json FROM {LAKE}.quarantine "
            "WHERE record_key = ? ORDER BY batch_id", [record_key]).fetchall()
    if not rows:
        console.print(f"no quarantined record with key {record_key!r}")
        raise typer.Exit(1)
    for batch_id, province, dataset, rule_id, reason, record in rows:
        console.print(f"[bold]{province} {dataset}[/] batch {batch_id}\n  rules:  {rule_id}\n  reason: {reason}")
        console.print_json(record)


# Sub-command groups live beside this module; importing them registers their commands on `app`.
from exchange.cli import access as _access  # noqa: E402, F401
from exchange.cli import audit as _audit  # noqa: E402, F401

if __name__ == "__main__":
    app()
