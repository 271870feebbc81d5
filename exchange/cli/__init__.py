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
    # One line, however narrow the terminal: scripts and log scrapers read it whole.
    console.print(f"[red]error:[/] {exc}", soft_wrap=True)
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


def _status_text(status: str, by: str | None) -> str:
    return {"resolved": f"resolved by {by}", "rechecked": f"re-checked in {by}"}.get(status, status)


@quarantine_app.command("list")
def quarantine_list(
    province: Annotated[str | None, typer.Option(help="Only this province")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show")] = 50,
    open_only: Annotated[bool, typer.Option("--open/--all", help="Only records still awaiting a fix (default), "
                                                                 "or also those a replay committed or re-checked")]
    = True,
) -> None:
    """Show quarantined records: batch, record key, rule, the reason to act on, and status.

    A record a replay committed is "resolved by" that replay; one a replay re-checked and rejected again is
    "re-checked in" it (that replay's row is the one to act on). Derived from the lake alone.
    """
    from exchange.replay import quarantine_status

    rows = quarantine_status(_hub().settings, province=province, include_closed=not open_only, limit=limit)
    table = Table("batch", "record", "rule", "reason", "status")
    for row in rows:
        table.add_row(*[str(row[k]) for k in ("batch_id", "record_key", "rule_id", "reason")],
                      _status_text(row["status"], row["by"]))
    console.print(table)


@quarantine_app.command("show")
def quarantine_show(
    record_key: Annotated[str, typer.Argument(help="Key of the rejected record (licence id, USCC, ...)")],
) -> None:
    """Show every rejection of one record with its status and the full record as the province sent it (after
    mapping)."""
    from exchange.replay import quarantine_status

    rows = quarantine_status(_hub().settings, record_key=record_key)
    if not rows:
        console.print(f"no quarantined record with key {record_key!r}")
        raise typer.Exit(1)
    for row in rows:
        console.print(f"[bold]{row['province']} {row['dataset']}[/] batch {row['batch_id']}\n"
                      f"  rules:  {row['rule_id']}\n  reason: {row['reason']}\n"
                      f"  status: {_status_text(row['status'], row['by'])}")
        console.print_json(row["record_json"])


@quarantine_app.command("replay")
def quarantine_replay(
    batch_id: Annotated[str, typer.Argument(help="Origin batch whose quarantined records to re-check")],
    rule: Annotated[str | None, typer.Option(help="Only records that failed this rule id")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would pass; commit nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Re-validate a batch's quarantined records with the current contract; commit those that now pass, once.

    The passing records become batch <BATCH_ID>.replay-N with its own snapshot, signed manifest and provenance
    entries naming the origin; the rest stay quarantined. Contracts are read from EXCHANGE_CONTRACTS_DIR.
    """
    from exchange.replay import replay

    try:
        result = replay(batch_id, _hub(), rule=rule, dry_run=dry_run)
    except ExchangeError as exc:
        _fail(exc)
        return
    if as_json:
        console.print_json(json.dumps(result, default=str, ensure_ascii=False))
        return
    verdict = {
        "dry_run": f"dry run: would commit {result['accepted']} as {result['replay_id']}",
        "committed": f"committed {result['accepted']} as {result['replay_id']} (snapshot {result.get('snapshot_id')})",
        "nothing_pending": "nothing pending: every quarantined record of this batch was replayed already",
        "nothing_passes": "nothing committed: no pending record passes the current contract",
    }[result["status"]]
    console.print(
        f"{result['origin']}: {result['replayed']} re-checked against contract {result['contract_version']} "
        f"(origin {result['origin_contract_version']}), {result['accepted']} pass, "
        f"{result['quarantined']} still quarantined, {result['already_replayed']} replayed before, "
        f"{len(result['repeats_held_back'])} held back as repeats of a committed key\n{verdict}"
    )
    for item in result["rules"]:
        console.print(f"  {item['rule_id']} ({item['severity']}): {item['unexpected']}")


# Sub-command groups live beside this module; importing them registers their commands on `app`.
from exchange.cli import access as _access  # noqa: E402, F401
from exchange.cli import audit as _audit  # noqa: E402, F401
from exchange.cli import backfill as _backfill  # noqa: E402, F401
from exchange.cli import contracts as _contracts  # noqa: E402, F401
from exchange.cli import recover as _recover  # noqa: E402, F401

if __name__ == "__main__":
    app()
