"""The `exchange` command: run exchanges and inspect quarantine; access and audit commands are in
exchange/cli/access.py and exchange/cli/audit.py."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup
from typer.exceptions import Abort

from exchange.errors import BadFile, BadInput, ExchangeError, outcome, validation_summary

if TYPE_CHECKING:
    from exchange.hub import Hub

M = TypeVar("M", bound=BaseModel)
_debug: ContextVar[bool] = ContextVar("exchange_cli_debug", default=False)


class ExchangeGroup(TyperGroup):
    """The `exchange` command group: every failure, in every command, ends as one line and an exit code.

    Usage errors (click's) and the hub's errors are printed as one plain line on stderr naming the problem,
    with the exit code from exchange/errors.py's table (2 bad input, 1 a refusal or failed check); any other
    exception is an internal failure, also one line. `exchange --debug ...` re-raises instead, traceback
    and all. Commands therefore raise and never catch to print.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        token = _debug.set(False)
        try:
            try:
                result = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
                # Without standalone mode click returns a command's typer.Exit code, or its return value.
                code = result if isinstance(result, int) else 0
            except NoArgsIsHelpError as exc:
                code = exc.exit_code  # the help is the answer, already printed
            except ClickException as exc:
                ctx = getattr(exc, "ctx", None)  # usage errors know the command they were raised for
                where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                code = _say_error(exc.format_message() + where, exc.exit_code)
            except Abort:
                code = _say_error("aborted", 1)
            except Exception as exc:  # noqa: BLE001 - the one place a command's failure is turned into a line
                if _debug.get():
                    raise
                code = _report(exc)
        finally:
            _debug.reset(token)
        if standalone_mode:
            sys.exit(code)
        return code


def _report(exc: BaseException) -> int:
    """One line for a failure and its exit code."""
    if isinstance(exc, ExchangeError):
        return _say_error(str(exc), outcome(exc).exit_code)
    if isinstance(exc, OSError):  # a full disk, a permission: the environment, not a bug
        return _say_error(f"{exc} (check the disk and permissions; rerun with --debug for the traceback)",
                          outcome(exc).exit_code)
    return _say_error(f"internal error: {type(exc).__name__}: {exc} (a bug in the hub; rerun with --debug for "
                      "the traceback and report it)", outcome(exc).exit_code)


def _say_error(message: str, code: int) -> int:
    # Plain text, one line: a value from the user or the data (`[/b]`, `:cn:`) is never markup.
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return code


app = typer.Typer(cls=ExchangeGroup, help="Yangtze River Delta government data-exchange hub.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Records the contracts rejected, with reasons.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


def plain_console(**options: Any) -> Console:
    """A console that prints strings as they are: no markup, emoji codes or highlighting.

    What the CLI prints includes values from provinces and departments (`[/x]` would crash rich's markup
    parser, `[records]` would vanish); style a whole line with `style=`, or parts with rich.text.Text.
    """
    return Console(markup=False, emoji=False, highlight=False, **options)


console = plain_console()


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of a failure")] = False) -> None:
    _debug.set(debug)


def _hub() -> Hub:
    # Imported lazily: `exchange --help` should not load DuckDB, GX and the adapters.
    from exchange.hub import Hub

    return Hub.current()


def write_text(path: Path, text: str) -> None:
    """Write a file the user named; BadFile naming it when its folder is missing or not writable."""
    try:
        path.write_text(text, encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        raise BadFile(path, f"cannot write it: {exc.strerror or exc}") from None


def read_model(path: Path, model: type[M], what: str) -> M:
    """A JSON document the user handed us, or BadFile naming the file and the first problems."""
    try:
        return model.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise BadFile(path, f"cannot read {what}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise BadFile(path, f"not {what}: {validation_summary(exc)}") from None


@app.command()
def demo(
    home: Annotated[Path, typer.Option(help="EXCHANGE_HOME for the demo", envvar="EXCHANGE_HOME")] = Path("var"),
    fresh: Annotated[bool, typer.Option(help="Start from an empty EXCHANGE_HOME")] = True,
    records: Annotated[int, typer.Option(min=1, help="Records per province and dataset")] = 5_000,
) -> None:
    """Seed the sandboxes, run all four province DAGs through Airflow, extract, verify, summarize."""
    from exchange.demo import run_demo

    if home.exists() and not home.is_dir():
        raise BadInput(f"--home {home} is a file, not a folder; give a folder (it is emptied first with --fresh)")

    raise typer.Exit(run_demo(home, fresh=fresh, records=records))


@app.command()
def run(
    province: Annotated[str, typer.Option(help="shanghai, jiangsu, zhejiang or anhui")],
    dataset: Annotated[str, typer.Option(help="e_license or enterprise_registration")],
    start: Annotated[datetime, typer.Option(help="Window start (ISO 8601, with offset)")],
    end: Annotated[datetime, typer.Option(help="Window end (ISO 8601, with offset)")],
) -> None:
    """Run pull -> validate -> commit for one window outside Airflow."""
    from adapters.base import Window
    from exchange.datasets import dataset as known_dataset
    from exchange.datasets import province as known_province

    # Checked here, before a hub is opened or anything is written under EXCHANGE_HOME (and before the pipeline
    # is imported: a mistyped option is answered at once).
    known_province(province)
    known_dataset(dataset)
    window = Window(start, end)
    from exchange.pipeline import run_exchange

    console.print_json(run_exchange(province, dataset, start, end, _hub()).model_dump_json())
    from exchange.airflow.local_runs import after_hand_run
    from exchange.config import Layout, settings

    # Once every dataset of the window is done, its DAG run is recorded so a scheduler does not run it again.
    for recorded in after_hand_run(Layout(settings().home), province, window):  # stdout stays the JSON result
        plain_console(stderr=True).print(f"recorded in Airflow as the window's scheduled run: {recorded}",
                                         soft_wrap=True)


def record_label(row: dict[str, Any]) -> str:
    """A quarantine row's record as an office finds it: its key, or which key is missing (never "None")."""
    from exchange.datasets import dataset as canonical_dataset

    if row.get("record_key") is not None:
        return str(row["record_key"])
    return f"(no {canonical_dataset(str(row['dataset'])).key})"


def _status_text(status: str, by: str | None) -> str:
    return {"resolved": f"resolved by {by}", "rechecked": f"re-checked in {by}"}.get(status, status)


@quarantine_app.command("list")
def quarantine_list(
    province: Annotated[str | None, typer.Option(help="Only this province")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show")] = 50,
    open_only: Annotated[bool, typer.Option("--open/--all", help="Only records still awaiting a fix (default), "
                                                                 "or also those a replay committed or re-checked")]
    = True,
) -> None:
    """Show quarantined records: batch, record key, rule, the reason to act on, and status.

    A record a replay committed is "resolved by" that replay; one a replay re-checked and rejected again is
    "re-checked in" it (that replay's row is the one to act on). Derived from the lake alone.
    """
    from exchange.datasets import province as known_province

    if province is not None:
        known_province(province)
    from exchange.replay import quarantine_status

    rows = quarantine_status(_hub().settings, province=province, include_closed=not open_only, limit=limit)
    table = Table("batch", "record", "rule", "reason", "status")
    for row in rows:
        table.add_row(row["batch_id"], record_label(row), row["rule_id"], row["reason"],
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
        console.print(f"{row['province']} {row['dataset']}", style="bold", end="")
        console.print(f" batch {row['batch_id']}\n  rules:  {row['rule_id']}\n  reason: {row['reason']}\n"
                      f"  status: {_status_text(row['status'], row['by'])}")
        if row.get("as_sent"):  # the values that could not be read, exactly as the province sent them
            console.print("  as sent (unreadable fields):")
            console.print_json(row["as_sent"])
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

    result = replay(batch_id, _hub(), rule=rule, dry_run=dry_run)
    if as_json:
        console.print_json(result.model_dump_json())
        return
    verdict = {
        "dry_run": f"dry run: would commit {result.accepted} as {result.replay_id}",
        "committed": f"committed {result.accepted} as {result.replay_id} (snapshot {result.snapshot_id})",
        "nothing_pending": "nothing pending: every quarantined record of this batch was replayed already",
        "nothing_passes": "nothing committed: no pending record passes the current contract",
    }[result.status]
    console.print(
        f"{result.origin}: {result.replayed} re-checked against contract {result.contract_version} "
        f"(origin {result.origin_contract_version}), {result.accepted} pass, "
        f"{result.quarantined} still quarantined, {result.already_replayed} replayed before, "
        f"{len(result.repeats_held_back)} held back as repeats of a committed key\n{verdict}"
    )
    for item in result.rules:
        console.print(f"  {item.rule_id} ({item.severity}): {item.unexpected}")


# Sub-command groups live beside this module; importing them registers their commands on `app`.
from exchange.cli import access as _access  # noqa: E402, F401
from exchange.cli import airflow as _airflow  # noqa: E402, F401
from exchange.cli import audit as _audit  # noqa: E402, F401
from exchange.cli import backfill as _backfill  # noqa: E402, F401
from exchange.cli import contracts as _contracts  # noqa: E402, F401
from exchange.cli import deltasharing as _deltasharing  # noqa: E402, F401
from exchange.cli import lake as _lake  # noqa: E402, F401
from exchange.cli import recover as _recover  # noqa: E402, F401

if __name__ == "__main__":
    app()
from exchange.cli import sharing as _sharing  # noqa: E402, F401
