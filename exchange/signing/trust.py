"""The trust bundle: the public keys a verifier trusts, and the checks of signatures against it.

The bundle (``keys/trust-bundle.json``) lists every key ever issued, with owner, algorithm, validity
period and status, signed by the hub's current key, so a key slipped into the bundle breaks its signature.
A verifier needs only that bundle, offline. A rotated key carries an endorsement by its predecessor, so a
verifier that pinned the old fingerprint can follow the hand-over; revocation at T invalidates every
signature claimed after T.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from exchange.errors import VerificationError
from exchange.signing.canonical import canonical_bytes, utc_z
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
    unsigned = bundle.model_copy(update={"signature": None})
    return unsigned.model_copy(update={"signature": hub.sign(unsigned.signed_bytes())})


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


def verify_bundle(bundle: TrustBundle, anchors: set[str] | None = None, item: str = "trust bundle") -> None:
    """Check a trust bundle: the hub's signature over it, every rotation endorsement, and (optionally) that
    its signing key is one of `anchors` (fingerprints the verifier pinned) or was handed over from one."""
    if bundle.signature is None:
        raise VerificationError(item, "not signed by the hub")
    signer = next((k for k in bundle.keys if k.key_id == bundle.signature.key_id), None)
    if signer is None or signer.owner != HUB_OWNER:
        raise VerificationError(item, f"signed by {bundle.signature.key_id}, which is not a hub key in the bundle")
    verify_signature(bundle, bundle.signature, bundle.signed_bytes(), bundle.issued_at,
                     f"{item} (signature over the bundle: a key added, removed or edited?)")
    for k in bundle.keys:
        if k.endorsement is not None:
            verify_signature(bundle, k.endorsement, k.identity(), k.not_before, f"{item}: endorsement of {k.key_id}")
    if anchors is None or signer.key_id in anchors:
        return
    current: TrustedKey | None = signer
    for _ in bundle.keys:  # follow the hand-over chain back towards a pinned key
        if current is None or current.endorsement is None:
            break
        endorser = current.endorsement.key_id
        current = next((k for k in bundle.keys if k.key_id == endorser), None)
        if current is not None and current.key_id in anchors:
            return
    raise VerificationError(item, f"signed by {signer.key_id}, which is neither a pinned hub key "
                                  f"({', '.join(sorted(anchors))}) nor handed over from one")
