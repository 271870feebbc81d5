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


@departments_app.command("token")
def departments_token(
    department: Annotated[str, typer.Argument(help="Department id")],
    days: Annotated[int, typer.Option(help="Days until the token expires")] = 90,
) -> None:
    """Issue an API token for a department; the secret is printed once and only its SHA-256 is kept."""
    from exchange.access.registry import Registry

    hub = _hub()
    try:
        record, bearer = Registry(hub.layout.access).issue_token(department, days)
    except ExchangeError as exc:
        _fail(exc)
        return
    hub.log.append(hub.signer, actor="hub", action="token_issue", subject=record.id,
                   details={"department": department, "expires_at": record.expires_at.isoformat()})
    console.print(f"token {record.id} for {department}, expires {record.expires_at:%Y-%m-%d %H:%M} UTC")
    console.print("bearer token (shown once, store it now):")
    # Plain print: rich would wrap or style the secret, and scripts read this line.
    print(bearer)


@departments_app.command("tokens")
def departments_tokens(department: Annotated[str | None, typer.Argument(help="Only this department")] = None) -> None:
    """List API tokens (ids, expiry, revocation; never secrets)."""
    from exchange.access.registry import Registry

    table = Table("token id", "department", "created", "expires", "revoked")
    for t in Registry(_hub().layout.access).tokens():
        if department is None or t.department == department:
            table.add_row(t.id, t.department, f"{t.created_at:%Y-%m-%d}", f"{t.expires_at:%Y-%m-%d}",
                          f"{t.revoked_at:%Y-%m-%d}" if t.revoked_at else "")
    console.print(table)


@departments_app.command("revoke-token")
def departments_revoke_token(
    token_id: Annotated[str, typer.Argument(help="Token id (the part before the dot)")],
) -> None:
    """Revoke an API token at once; requests bearing it are refused from now on."""
    from exchange.access.registry import Registry

    hub = _hub()
    try:
        record = Registry(hub.layout.access).revoke_token(token_id)
    except ExchangeError as exc:
        _fail(exc)
        return
    hub.log.append(hub.signer, actor="hub", action="token_revoke", subject=token_id,
                   details={"department": record.department})
    console.print(f"revoked token {token_id} of {record.department}")


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
    """List grants with their expiry and revocation."""
    from exchange.access.registry import Registry

    registry = Registry(_hub().layout.access)
    revoked = registry.revoked_grants()
    table = Table("id", "department", "dataset", "columns", "expires", "approved by", "status")
    today = date.today()
    for g in registry.grants():
        status = "revoked" if g.grant.id in revoked else "expired" if g.grant.expires_on < today else "active"
        table.add_row(g.grant.id, g.grant.department, g.grant.dataset, ", ".join(g.grant.columns),
                      str(g.grant.expires_on), g.grant.approved_by, status)
    console.print(table)


@grants_app.command("revoke")
def grants_revoke(
    grant_id: Annotated[str, typer.Argument(help="Grant id")],
    reason: Annotated[str, typer.Option(help="Why the grant is withdrawn")],
    by: Annotated[str, typer.Option(help="Who revokes it (default: the grant's approving office)")] = "",
) -> None:
    """Withdraw a grant now: later queries and extracts under it are refused (earlier extracts still verify)."""
    from exchange.access.registry import Registry

    hub = _hub()
    registry = Registry(hub.layout.access)
    try:
        revoked_by = by or registry.grant(grant_id).grant.approved_by
        signed = registry.revoke_grant(grant_id, revoked_by, reason, hub.signer)
    except ExchangeError as exc:
        _fail(exc)
        return
    from exchange.signing.canonical import document_digest

    hub.log.append(hub.signer, actor=revoked_by, action="grant_revoke", subject=grant_id,
                   digests={"revocation": document_digest(signed.revocation.model_dump(mode="json"))},
                   details={"reason": reason})
    console.print(f"revoked grant {grant_id}")


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="One SELECT over your permitted views (tables named after datasets)")],
    department: Annotated[str, typer.Option(help="Department id, e.g. js.public_security")],
    snapshot: Annotated[int | None, typer.Option(help="Lake snapshot (default: latest)")] = None,
    max_rows: Annotated[int, typer.Option(help="Refuse results larger than this")] = 10_000,
    timeout: Annotated[float, typer.Option(help="Stop the query after this many seconds")] = 10.0,
) -> None:
    """Run a read-only query in the department's sandbox (masked, filtered views only) and print it."""
    from exchange.access.query import QueryLimits
    from exchange.access.service import query_for_department

    try:
        result = query_for_department(_hub(), department, sql, snapshot,
                                      limits=QueryLimits(max_rows=max_rows, timeout_seconds=timeout))
    except ExchangeError as exc:
        _fail(exc)
        return
    table = Table(*result.table.column_names)
    # Bounded by max_rows, so a Python loop over the rows is fine here.
    for row in zip(*(c.to_pylist() for c in result.table.columns), strict=True):
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)
    console.print(f"{result.table.num_rows} rows at snapshot {result.snapshot_id} "
                  f"(grants: {', '.join(result.grants.values())}; result sha256 {result.result_sha256[:16]}...)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8750,
) -> None:
    """Start the department API (OpenAPI document at /openapi.json, docs at /docs)."""
    import uvicorn

    from exchange.api.app import create_app

    uvicorn.run(create_app(_hub()), host=host, port=port)
