"""Standing extracts: every live grant gets a fresh extract when its dataset's lake table changes."""

from __future__ import annotations

from datetime import UTC, datetime

from exchange.access.policy import grant_status
from exchange.access.registry import Registry
from exchange.access.service import extract_for_department, latest_snapshot
from exchange.hub import Hub
from exchange.stages import StandingExtract


def refresh_standing_extracts(hub: Hub | None = None) -> list[StandingExtract]:
    """Cut each unexpired grant at the latest snapshot, once per (grant, snapshot); return what was cut."""
    hub = hub or Hub.current()
    snapshot = latest_snapshot(hub)
    today = datetime.now(UTC).date()
    registry = Registry(hub.layout.access)
    revoked = registry.revoked_grants()
    cut: list[StandingExtract] = []
    for signed in registry.grants():
        grant = signed.grant
        if grant_status(grant, revoked, today) != "active":
            continue
        out = hub.layout.extracts / grant.department / "standing" / f"{grant.dataset}-s{snapshot}"
        if out.exists():  # this snapshot was published already: a retry or re-run is a no-op
            continue
        # A department that registered an extract key gets its standing extracts sealed to it.
        encrypt = registry.department(grant.department).extract_public_key is not None
        extract = extract_for_department(hub, grant.department, grant.dataset, out, snapshot, encrypt=encrypt)
        cut.append(StandingExtract(grant=grant.id, snapshot=snapshot, rows=extract.signed.manifest.rows,
                                   out=extract.folder, encrypted=encrypt))
    return cut
