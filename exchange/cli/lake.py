"""`exchange lake attach-sql`: how to open the lake with a stock DuckDB, read-only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from exchange.cli import app

lake_app = typer.Typer(help="The DuckLake lake, for readers outside the hub.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")


@lake_app.command("attach-sql")
def attach_sql(
    copy: Annotated[Path | None, typer.Option(help="A copy of EXCHANGE_HOME/lake (catalog.ducklake and data/)")]
    = None,
) -> None:
    """Print the SQL a stock DuckDB with the ducklake extension runs to attach the lake READ_ONLY.

    Without --copy: the hub's own lake (EXCHANGE_LAKE_CATALOG / EXCHANGE_LAKE_DATA, or EXCHANGE_HOME/lake).
    Paste the output into `duckdb`, or pipe it: `exchange lake attach-sql | duckdb`.
    """
    from exchange.config import settings as current_settings
    from exchange.lake.outside import attach_script

    # Written as is, not through rich: the output is SQL to paste, and paths may hold [brackets].
    sys.stdout.write(attach_script(current_settings(), copy))
