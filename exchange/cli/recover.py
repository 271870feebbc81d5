"""`exchange recover`: settle what crashed runs left, on demand (every stage also does it on entry)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from exchange.cli import _hub, app, console


@app.command()
def recover(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be done")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the machine-readable report")] = False,
) -> None:
    """Complete commits a crash left half-recorded, remove files no snapshot references and partial files.

    A batch in the lake without its manifest or commit entry gets them (with a `recovered` entry); a commit
    interrupted before the lake is settled as not committed; what is removed is logged with names and sizes.
    Exits 0, or 1 when something needs an operator (printed as NEEDS AN OPERATOR).
    """
    from exchange.config import existing_home
    from exchange.config import settings as current_settings
    from exchange.recovery import reconcile

    existing_home(current_settings())  # recovering a home that is not there would create an empty one
    report = reconcile(_hub(), full=True, dry_run=dry_run)
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        for line in report.lines():
            console.print(line)
        if not report.lines():
            console.print("nothing to recover: every batch is either not committed or committed and recorded")
    if report.unrecoverable:
        raise typer.Exit(1)
