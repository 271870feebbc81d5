"""`exchange contracts lint|diff`: check contract files in CI and classify changes between two versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table
from rich.text import Text

from exchange.cli import app, console
from exchange.errors import BadFile, BadInput

contracts_app = typer.Typer(help="Data contracts: lint them, compare two versions.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")


@contracts_app.command("lint")
def lint(
    paths: Annotated[list[Path] | None, typer.Argument(help="Contract files (default: every contracts/*.odcs.yaml)")]
    = None,
) -> None:
    """Check contract files: valid ODCS v3, rules compile to GX, masking per classification, semver, loads.

    Prints one line per problem (file: path: reason) and exits 1 if there is any.
    """
    from exchange.contracts.lint import default_paths, lint_paths

    files = paths or default_paths()
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise BadInput(f"no such contract file: {', '.join(missing)}")
    if not files:
        raise BadInput("no contract files to lint: pass some, or run it where contracts/ holds *.odcs.yaml")
    problems = lint_paths(files)
    for problem in problems:
        # Plain lines, never wrapped to the terminal width: CI logs and editors parse them.
        typer.echo(str(problem))
    if problems:
        broken = len({p.file for p in problems})
        console.print(f"{len(problems)} problem(s) in {broken} of {len(files)} file(s)", style="red")
        raise typer.Exit(1)
    console.print(f"ok: {len(files)} contract file(s)", style="green")


@contracts_app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The released contract (e.g. <(git show main:contracts/x.odcs.yaml))")],
    new: Annotated[Path, typer.Argument(help="The proposed contract")],
) -> None:
    """Classify every change from OLD to NEW as breaking or not.

    Exits 1 when a breaking change comes without a major version bump, or the contract changed and its
    version did not increase; 2 when either file is not a valid ODCS document.
    """
    from exchange.contracts.diff import diff_contracts

    result = diff_contracts(_document(old), _document(new))
    table = Table(title=f"{old} {result.old_version} -> {new} {result.new_version}")
    table.add_column("")
    # Fold, never truncate: a cut-off rule type or value list would hide what changed.
    table.add_column("where", overflow="fold")
    table.add_column("change", overflow="fold")
    for change in sorted(result.changes, key=lambda c: not c.breaking):
        kind = Text("breaking", style="red") if change.breaking else Text("compatible", style="green")
        table.add_row(kind, change.where, change.what)
    if result.changes:
        console.print(table)
    else:
        console.print("no changes")
    problem = result.version_problem
    if problem:
        console.print(f"version: {problem}", style="red")
        raise typer.Exit(1)
    console.print(f"version ok: {len(result.breaking)} breaking of {len(result.changes)} change(s)", style="green")


def _document(path: Path) -> dict[str, Any]:
    """The parsed ODCS document, or BadFile (exit 2) naming the file, path and reason."""
    from exchange.contracts.lint import odcs_schema_problems

    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadFile(path, " ".join(str(exc).split())) from None
    problems = odcs_schema_problems(data) if isinstance(data, dict) else [("", "not a YAML mapping")]
    if problems:
        for where, reason in problems:
            typer.echo(f"{path}: {where or '(document)'}: {reason}")
        raise typer.Exit(2)
    assert isinstance(data, dict)
    return data
