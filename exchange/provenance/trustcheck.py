"""verify, part 0: the trust bundle against the anchor the verifier holds, and the grants the hub signed."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pydantic import BaseModel

from exchange.errors import VerificationError
from exchange.provenance.verify_result import VerifyReport, check
from exchange.signing.anchor import resolve_anchor, root_ids
from exchange.signing.canonical import canonical_bytes
from exchange.signing.roles import Signed, check_signer
from exchange.signing.signers import Signature
from exchange.signing.trust import TrustBundle, verify_bundle, verify_signature


def check_trust(report: VerifyReport, bundle: TrustBundle, item: str, *, setting: str | None,
                anchors: Sequence[str] | None = None, home: Path | None = None) -> None:
    """Check `bundle` (its signature, endorsements, and the hub's key history from the pinned anchor) into
    `report`. Without any anchor the report records the root key ids to pin (verdict UNANCHORED)."""
    try:
        anchor = resolve_anchor(bundle, setting, anchors, home)
    except VerificationError as exc:  # an anchor that is configured but unusable is a problem, not "unpinned"
        report.problems.append(exc)
        return
    check(report, lambda: verify_bundle(bundle, anchor.key_ids if anchor else None, item=item))
    if anchor is None:
        report.unpinned = root_ids(bundle) or ["(the bundle has no hub key)"]
    else:
        report.anchor = anchor.describe()


def check_grants(report: VerifyReport, access: Path, bundle: TrustBundle) -> None:
    """Every recorded grant and grant revocation carries a valid signature by a key allowed to sign it."""
    from exchange.access.registry import Registry

    registry = Registry(access)
    signed: list[tuple[str, Signature, BaseModel, Signed]] = [
        (f"grant {g.grant.id} ({registry.grants_path.name})", g.signature, g.grant, Signed.GRANT)
        for g in registry.grants()
    ] + [
        (f"revocation of grant {r.revocation.grant_id} ({registry.revocations_path.name})", r.signature,
         r.revocation, Signed.GRANT_REVOCATION)
        for r in registry.revocations()
    ]
    for item, signature, content, thing in signed:
        check(report, partial(_check_signed, bundle, signature, content, thing, item))


def _check_signed(bundle: TrustBundle, signature: Signature, content: BaseModel, thing: Signed, item: str) -> None:
    key = check_signer(bundle, signature, thing, item)
    # A grant records when it was issued, not when it was signed: the bytes are checked within the key's validity.
    verify_signature(bundle, signature, canonical_bytes(content.model_dump(mode="json")), key.not_before, item)
