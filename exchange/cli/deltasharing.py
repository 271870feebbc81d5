"""`exchange departments profile`: a Delta Sharing profile file for a department."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from exchange.cli import _hub, console
from exchange.cli.access import departments_app
from exchange.provenance import events


@departments_app.command("profile")
def departments_profile(
    department: Annotated[str, typer.Argument(help="Department id, e.g. js.public_security")],
    out: Annotated[Path, typer.Option(help="Profile file to write (0600; it holds the bearer token)")],
    endpoint: Annotated[str, typer.Option(help="The hub's Delta Sharing endpoint as the department reaches it")]
    = "http://127.0.0.1:8750/delta-sharing",
    days: Annotated[int, typer.Option(min=1, help="At most this many days (never past the grants)")] = 90,
) -> None:
    """Issue a token and write a Delta Sharing profile file (shareCredentialsVersion 1) for the department.

    The token expires at the end of the last valid day of the department's grant that ends first, or after
    --days if sooner; read the share with the delta-sharing client (docs/departments.md).
    """
    from exchange.access.registry import Registry
    from exchange.deltasharing.profile import Profile, profile_expiry, write_profile
    from exchange.deltasharing.protocol import share_name

    hub = _hub()
    registry = Registry(hub.layout.access)
    registry.department(department)
    grants = registry.active_grants(department)
    now = datetime.now(UTC)
    expires = profile_expiry(department, [g.grant.expires_on for g in grants], now, days)
    record, bearer = registry.issue_token(department, now=now, expires_at=expires)
    hub.log.append(hub.signer, events.TokenIssue(department=department, expires_at=record.expires_at.isoformat()),
                   actor=events.HUB, subject=record.id)
    write_profile(out, Profile(endpoint=endpoint.rstrip("/"), bearerToken=bearer,
                               expirationTime=record.expires_at.isoformat().replace("+00:00", "Z")))
    tables = ", ".join(f"{share_name(department)}.datasets.{g.grant.dataset}" for g in grants)
    console.print(f"profile {out} for {department}: token {record.id}, expires "
                  f"{record.expires_at:%Y-%m-%d %H:%M} UTC; tables: {tables}")
