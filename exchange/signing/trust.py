"""The trust bundle: the public keys a verifier trusts, and the checks of signatures against it.

The bundle (``keys/trust-bundle.json``) lists every key ever issued, with owner, algorithm, validity
period and status, signed by the hub's current key, so a key slipped into the bundle breaks its signature.
A verifier needs only that bundle, offline. A rotated key carries an endorsement by its predecessor, so a
verifier that pinned the old fingerprint can follow the hand-over; revocation at T invalidates every
signature claimed after T. The hub's key history must chain from an anchor held outside EXCHANGE_HOME (the
root key's fingerprint, exchange/signing/anchor.py): a bundle replaced by one self-signed with a new "hub"
key, or a rotated hub key without its predecessor's endorsement, is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from exchange.errors import VerificationError
from exchange.provenance.problems import Mismatch
from exchange.signing.canonical import canonical_bytes, utc_z
from exchange.signing.roles import Signed, check_signer
from exchange.signing.signers import (
    ALGORITHMS,
    KeySigner,
    Signature,
    Signer,
    key_id,
    public_key_pem,
    signature_valid,
)

HUB_OWNER = "hub"
DEFAULT_YEARS = 5


class TrustedKey(BaseModel, frozen=True):
    """A public key a verifier trusts, for an owner and a validity period."""

    key_id: str = Field(description="Fingerprint: algorithm + ':' + first 32 hex chars of SHA-256 of the raw key")
    owner: str = Field(description="Who holds the private key, e.g. 'hub' or 'jiangsu.data_office'")
    algorithm: str = Field(description="Signature algorithm: ed25519 or SM2-SM3")
    public_key: str = Field(description="Base64 raw public key (ed25519: 32 bytes; SM2-SM3: the uncompressed "
                                        "point 04||x||y on the sm2p256v1 curve, 65 bytes)")
    not_before: datetime = Field(description="Start of validity")
    not_after: datetime = Field(description="End of validity (a rotated key's ends when its successor takes over)")
    status: str = Field(default="active", description="active, retired or revoked")
    revoked_at: datetime | None = Field(default=None, description="Signatures claimed after this are invalid")
    revocation_reason: str | None = Field(default=None, description="Why the key was revoked")
    endorsement: Signature | None = Field(
        default=None,
        description="On rotation: the owner's previous key's signature over this key's identity "
        "(canonical JSON of key_id, owner, algorithm, public_key, not_before)",
    )

    def identity(self) -> bytes:
        """The bytes a predecessor endorses: what names this key, not its (changeable) status."""
        return canonical_bytes({
            "key_id": self.key_id, "owner": self.owner, "algorithm": self.algorithm,
            "public_key": self.public_key, "not_before": utc_z(self.not_before),
        })


class TrustBundle(BaseModel):
    """The public keys a verifier needs, exported by the hub and signed by the hub's current key."""

    version: int = Field(default=1, description="Bundle format version")
    issued_at: datetime = Field(description="When the bundle was exported")
    keys: list[TrustedKey] = Field(description="Trusted public keys")
    signature: Signature | None = Field(
        default=None, description="Hub signature over the canonical JSON of the bundle without this field"
    )

    def key(self, key_id: str) -> TrustedKey:
        """The trusted key with this id, or a VerificationError naming it."""
        for k in self.keys:
            if k.key_id == key_id:
                return k
        raise VerificationError(f"key {key_id}", "not in the trust bundle")

    def current(self, owner: str) -> TrustedKey | None:
        """The owner's active key (the newest, if several), or None."""
        mine = [k for k in self.keys if k.owner == owner and k.status == "active"]
        return max(mine, key=lambda k: k.not_before) if mine else None

    def signed_bytes(self) -> bytes:
        """The canonical bytes the hub signs."""
        return canonical_bytes(self.model_dump(mode="json", exclude={"signature"}))


def public_record(owner: str, algorithm: str, raw: bytes, not_before: datetime,
                  years: int = DEFAULT_YEARS) -> TrustedKey:
    """The trust-bundle record of a raw public key held by `owner`, valid from `not_before` for `years`."""
    return TrustedKey(
        key_id=key_id(algorithm, raw),
        owner=owner,
        algorithm=algorithm,
        public_key=base64.b64encode(raw).decode(),
        not_before=not_before,
        not_after=not_before + timedelta(days=365 * years),
    )


def record_of(signer: KeySigner, not_before: datetime, years: int = DEFAULT_YEARS) -> TrustedKey:
    """The public record of a signer's key, valid from `not_before` for `years`."""
    return public_record(signer.owner, signer.algorithm, signer.public_bytes(), not_before, years)


def retired(key: TrustedKey, at: datetime) -> TrustedKey:
    """`key` handed over at `at`: what it signed before stays valid."""
    return key.model_copy(update={"status": "retired", "not_after": min(key.not_after, at)})


def signed(bundle: TrustBundle, hub: Signer) -> TrustBundle:
    """A copy of `bundle` signed by `hub` over its canonical bytes."""
    return bundle.model_copy(update={"signature": hub.sign(bundle.signed_bytes())})  # signed_bytes leaves it out


def public_pem(key: TrustedKey) -> str:
    """The trusted key as SubjectPublicKeyInfo PEM: what `openssl pkeyutl -verify -pubin` reads."""
    pem = public_key_pem(key.algorithm, base64.b64decode(key.public_key))
    if pem is None:
        raise VerificationError(f"key {key.key_id}", f"unsupported algorithm {key.algorithm}")
    return pem


def verify_signature(bundle: TrustBundle, signature: Signature, data: bytes, at: datetime, item: str) -> None:
    """Check `signature` over `data` with the bundle's key valid at `at`; raise VerificationError naming `item`.

    Verification dispatches on the algorithm the trust bundle records for the key, never on the signature's word.
    """
    try:
        key = bundle.key(signature.key_id)
    except VerificationError:
        raise VerificationError(item, f"signed by key {signature.key_id}, which is not in the trust bundle") from None
    if key.algorithm not in ALGORITHMS:
        raise VerificationError(item, f"key {key.key_id} has unsupported algorithm {key.algorithm}")
    if signature.algorithm != key.algorithm:
        raise VerificationError(item, f"signature claims algorithm {signature.algorithm}, but key {key.key_id} is "
                                      f"{key.algorithm}")
    if key.revoked_at is not None and at > key.revoked_at:
        raise VerificationError(item, f"signed at {utc_z(at)} with key {key.key_id} ({key.owner}), which was revoked "
                                      f"at {utc_z(key.revoked_at)}")
    if not key.not_before <= at <= key.not_after:
        raise VerificationError(item, f"signed at {utc_z(at)}, outside the validity of key {key.key_id} ({key.owner}: "
                                      f"{utc_z(key.not_before)} .. {utc_z(key.not_after)}, {key.status})")
    try:
        ok = signature_valid(key.algorithm, base64.b64decode(key.public_key), signature, data)
    except ValueError:  # bad base64, a malformed key or signature encoding
        ok = False
    if not ok:
        raise VerificationError(item, f"signature by {key.key_id} does not match the content")


def verify_bundle(bundle: TrustBundle, anchors: Collection[str] | None = None, item: str = "trust bundle") -> None:
    """Check a trust bundle: every key named by its own fingerprint, the hub's signature over it, every
    rotation endorsement (by a key of the same owner); and, given `anchors` (the hub root key ids a verifier
    pinned outside EXCHANGE_HOME), that the hub's whole key history chains from them (:func:`check_history`)."""
    if bundle.signature is None:
        raise VerificationError(item, "not signed by the hub")
    for k in bundle.keys:
        _check_fingerprint(k, item)
    if not any(k.key_id == bundle.signature.key_id for k in bundle.keys):
        raise VerificationError(item, f"signed by {bundle.signature.key_id}, which is not a hub key in the bundle")
    check_signer(bundle, bundle.signature, Signed.TRUST_BUNDLE, item)
    verify_signature(bundle, bundle.signature, bundle.signed_bytes(), bundle.issued_at,
                     f"{item} (signature over the bundle: a key added, removed or edited?)")
    for k in bundle.keys:
        if k.endorsement is not None:
            where = f"{item}: endorsement of {k.key_id}"
            verify_signature(bundle, k.endorsement, k.identity(), k.not_before, where)
            endorser = bundle.key(k.endorsement.key_id)
            if endorser.owner != k.owner:
                raise Mismatch(where, f"endorsed by a key of {endorser.owner}: only the owner's previous key hands "
                                      "over", expected=f"a previous key of {k.owner}",
                               found=f"{endorser.key_id} ({endorser.owner})")
    if anchors is not None:
        check_history(bundle, anchors, item)


def hub_keys(bundle: TrustBundle) -> list[TrustedKey]:
    """The hub's keys in the order they took over (oldest first)."""
    return sorted((k for k in bundle.keys if k.owner == HUB_OWNER), key=lambda k: k.not_before)


def roots(bundle: TrustBundle) -> list[TrustedKey]:
    """The hub keys no earlier hub key endorsed: the first one, and any made after a revocation. These are
    what an operator and an auditor pin as the trust anchor."""
    return [k for k in hub_keys(bundle) if k.endorsement is None]


def check_history(bundle: TrustBundle, anchors: Collection[str], item: str = "trust bundle") -> None:
    """The hub's key history chains from `anchors`: each hub key is pinned, or endorsed by an earlier hub key
    that itself chains (a rotation). A hub key that is neither (a rotated key without its predecessor's
    signature, or a key slipped in by whoever could write the bundle) is refused, naming it.

    Endorsement signatures themselves are checked by :func:`verify_bundle`.
    """
    pinned = ", ".join(sorted(anchors)) or "none"
    history = hub_keys(bundle)
    if not any(k.key_id in anchors for k in history):
        raise Mismatch(item, "does not chain to the trust anchor: its hub keys are "
                             "neither a pinned hub key nor handed over from one (bundle replaced?)",
                       expected=f"hub key {pinned}",
                       found=", ".join(k.key_id for k in history) or "no hub key")
    chained: set[str] = set()
    for k in history:
        if k.key_id in anchors:
            chained.add(k.key_id)
            continue
        where = f"{item}: hub key {k.key_id} (from {utc_z(k.not_before)})"
        if k.endorsement is None:
            raise Mismatch(where, "neither a pinned hub key nor endorsed by its predecessor (a rotated key "
                                  "missing its predecessor's signature, or a key slipped in)",
                           expected=f"pinned ({pinned}) or endorsed by an earlier hub key", found="no endorsement")
        if k.endorsement.key_id not in chained:
            raise Mismatch(where, f"endorsed by {k.endorsement.key_id}, which is neither a pinned hub key nor "
                                  "handed over from one", expected=f"a chain from {pinned}",
                           found=k.endorsement.key_id)
        chained.add(k.key_id)


def _check_fingerprint(key: TrustedKey, item: str) -> None:
    """A key id is the fingerprint of its public key: a record naming a pinned id with other key bytes is forged."""
    try:
        raw = base64.b64decode(key.public_key, validate=True)
    except ValueError:
        raise VerificationError(item, f"key {key.key_id} has a malformed public key") from None
    actual = key_id(key.algorithm, raw)
    if actual != key.key_id:
        raise Mismatch(item, f"key {key.key_id} ({key.owner}) is not the fingerprint of its public key",
                       expected=key.key_id, found=actual)
