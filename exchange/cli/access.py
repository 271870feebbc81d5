"""`exchange extract|verify-extract|departments|grants`: what departments receive, under which grant."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from exchange.cli import _fail, _hub, app, console
from exchange.errors import ExchangeError

departments_app = typer.Typer(help="Departments that receive shared data.", no_args_is_help=True)
grants_app = typer.Typer(help="Grants: what a department may see, why, until when.", no_args_is_help=True)
app.add_typer(departments_app, name="departments")
app.add_typer(grants_app, name="grants")


@app.command()
def extract(
    department: Annotated[str, typer.Option(help="Department id, e.g. js.public_security")],
    dataset: Annotated[str, typer.Option(help="Dataset the grant covers")],
    out: Annotated[Path, typer.Option(help="Folder to write the extract to")],
    snapshot: Annotated[int | None, typer.Option(help="Lake snapshot (default: latest)")] = None,
) -> None:
    """Cut the department's grant into Parquet plus a signed extract manifest."""
    from exchange.access.service import extract_for_department

    try:
        signed = extract_for_department(_hub(), department, dataset, out, snapshot)
    except ExchangeError as exc:
        _fail(exc)
        return
    m = signed.manifest
    console.print(f"{m.rows} rows of {m.dataset} at snapshot {m.snapshot_id} -> {out} (grant {m.grant_id})")


@app.command("verify-extract")
def verify_extract_cmd(
    directory: Annotated[Path, typer.Argument(help="Extract folder")],
    trust_bundle: Annotated[Path, typer.Option(help="Trust bundle exported by the hub")],
) -> None:
    """Check an extract offline against the hub's trust bundle."""
    from exchange.access.extract import verify_extract
    from exchange.signing.keys import TrustBundle

    try:
        signed = verify_extract(directory, TrustBundle.model_validate_json(trust_bundle.read_text()))
    except ExchangeError as exc:
        _fail(exc)
        return
    console.print(f"[green]intact[/]: {signed.manifest.rows} rows, signed by {signed.signature.key_id}")


@departments_app.command("add")
def departments_add(
    id: Annotated[str, typer.Argument(help="Province code, dot, short name")],
    name: Annotated[str, typer.Option(help="Official name")],
    province: Annotated[str, typer.Option(help="Province the department belongs to")],
) -> None:
    """Register a department."""
    from exchange.access.models import Department
    from exchange.access.registry import Registry

    hub = _hub()
    Registry(hub.layout.access).add_department(Department(id=id, name=name, province=province))
    hub.log.append(hub.signer, actor="hub", action="department_add", subject=id, details={"name": name})
    console.print(f"registered {id}")


@departments_app.command("list")
def departments_list() -> None:
    """List registered departments."""
    from exchange.access.registry import Registry

    table = Table("id", "name", "province")
    for d in Registry(_hub().layout.access).departments():
        table.add_row(d.id, d.name, d.province)
    console.print(table)


@grants_app.command("add")
def grants_add(file: Annotated[Path, typer.Argument(help="Grant as JSON (see schemas/grant.schema.json)")]) -> None:
    """Record a grant after checking it against the contract's sharing terms."""
    from exchange.access.models import Grant
    from exchange.access.registry import Registry

    hub = _hub()
    try:
        signed = Registry(hub.layout.access).add_grant(Grant.model_validate_json(file.read_text()), hub.signer)
    except ExchangeError as exc:
        _fail(exc)
        return
    hub.log.append(hub.signer, actor=signed.grant.approved_by, action="grant", subject=signed.grant.id,
                   details={"department": signed.grant.department, "dataset": signed.grant.dataset})
    console.print(f"recorded grant {signed.grant.id}")


@grants_app.command("list")
def grants_list() -> None:
    """List grants with their expiry."""
    from exchange.access.registry import Registry

    table = Table("id", "department", "dataset", "columns", "expires", "approved by")
    today = date.today()
    for g in Registry(_hub().layout.access).grants():
        expired = " (expired)" if g.grant.expires_on < today else ""
        table.add_row(g.grant.id, g.grant.department, g.grant.dataset, ", ".join(g.grant.columns),
                      f"{g.grant.expires_on}{expired}", g.grant.approved_by)
    console.print(table)
