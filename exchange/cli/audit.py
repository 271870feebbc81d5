"""`exchange verify|keys`: what an auditor runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange.cli import _hub, app, console

keys_app = typer.Typer(help="Signing keys and the public trust bundle.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


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


@keys_app.command("export-trust")
def keys_export_trust(out: Annotated[Path, typer.Option(help="Where to write the trust bundle")]) -> None:
    """Export the public trust bundle that verifiers need offline."""
    hub = _hub()
    hub.signer  # noqa: B018 - make sure the hub key exists before exporting
    out.write_text(hub.keyring.trust_bundle().model_dump_json(indent=2))
    console.print(f"trust bundle -> {out}")
