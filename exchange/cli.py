"""The `exchange` command: run exchanges, verify, extract, manage departments and grants."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from exchange.errors import ExchangeError

if TYPE_CHECKING:
    from exchange.pipeline import Hub

app = typer.Typer(help="Yangtze River Delta government data-exchange hub.", no_args_is_help=True)
departments_app = typer.Typer(help="Departments that receive shared data.", no_args_is_help=True)
grants_app = typer.Typer(help="Grants: what a department may see, why, until when.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Records the contracts rejected, with reasons.", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys and the public trust bundle.", no_args_is_help=True)
app.add_typer(departments_app, name="departments")
app.add_typer(grants_app, name="grants")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(keys_app, name="keys")
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


@app.command()
def verify() -> None:
    """Re-check the provenance chain, every signature, manifest, lake file, count and extract."""
    from exchange.provenance.verify import verify_home

    report = verify_home(_hub().settings)
    if report.ok:
        console.print(f"[green]intact[/]: {report.entries} provenance entries, {report.manifests} manifests, "
                      f"{report.files} lake files, {report.extracts} extracts")
        return
    console.print(f"[red]BROKEN[/]: {len(report.problems)} problem(s); first: {report.problems[0]}")
    for problem in report.problems[1:]:
        console.print(f"  also: {problem}")
    raise typer.Exit(1)


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


@keys_app.command("export-trust")
def keys_export_trust(out: Annotated[Path, typer.Option(help="Where to write the trust bundle")]) -> None:
    """Export the public trust bundle that verifiers need offline."""
    hub = _hub()
    hub.signer  # noqa: B018 - make sure the hub key exists before exporting
    out.write_text(hub.keyring.trust_bundle().model_dump_json(indent=2))
    console.print(f"trust bundle -> {out}")


if __name__ == "__main__":
    app()
