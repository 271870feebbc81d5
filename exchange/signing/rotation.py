"""Changing who holds which key: rotation, revocation, and trusting a key another party holds.

Rotation hands over: the old key's validity ends at the rotation instant (what it signed before stays
valid), the new key starts there and carries an endorsement by the old key, so a verifier that pinned the
old fingerprint can follow the hand-over. Revocation at T invalidates every signature claimed after T.
"""

from __future__ import annotations

from datetime import UTC, datetime

from exchange.signing.keyring import Keyring, write_private
from exchange.signing.signers import generate, key_id, public_key_from_pem
from exchange.signing.trust import HUB_OWNER, TrustedKey, public_record, record_of, retired


def rotate(keyring: Keyring, owner: str, at: datetime | None = None, algorithm: str | None = None) -> TrustedKey:
    """Replace the owner's key: the old one is retired at `at` (default now), the new one endorsed by it.

    `algorithm` (default: the old key's) may differ from the old key's: an Ed25519 key endorses its SM2
    successor as well as the other way round, and what the old key signed stays valid either way.
    """
    at = at or datetime.now(UTC)
    with keyring.locked():
        old = keyring.signer_locked(owner)
        new = generate(algorithm or old.algorithm, owner)
        record = record_of(new, at)
        record = record.model_copy(update={"endorsement": old.sign(record.identity())})
        bundle = keyring.trust_bundle()
        bundle.keys = [retired(k, at) if k.key_id == old.key_id else k for k in bundle.keys] + [record]
        old_path, new_path = keyring.key_path(owner, old.algorithm), keyring.key_path(owner, new.algorithm)
        write_private(new_path, new, replace=True)
        # Until the old file goes, Keyring.current() tells the two apart by the bundle, so save the bundle
        # (signed by the new key if this is the hub's) before removing it.
        keyring.save_locked(bundle, hub=new if owner == HUB_OWNER else None)
        if old_path != new_path:
            old_path.unlink(missing_ok=True)
        return record


def revoke(keyring: Keyring, key_id: str, at: datetime | None = None, reason: str = "") -> TrustedKey:
    """Revoke the key `key_id` from `at` (default now); its private key leaves service at once."""
    at = at or datetime.now(UTC)
    with keyring.locked():
        bundle = keyring.trust_bundle()
        old = bundle.key(key_id)
        revoked = old.model_copy(update={"status": "revoked", "revoked_at": at, "revocation_reason": reason or None})
        bundle.keys = [revoked if k.key_id == key_id else k for k in bundle.keys]
        # A revoked key is presumed compromised: never sign with it again. The owner's next
        # signer() call makes a fresh key, deliberately without an endorsement by the revoked one.
        for path, signer in keyring.files(old.owner):
            if signer.key_id == key_id:
                path.unlink()
        keyring.save_locked(bundle)
        return revoked


def trust(keyring: Keyring, owner: str, pem: bytes, at: datetime | None = None) -> TrustedKey:
    """Trust a public key another party holds the private half of (e.g. a province office's, sent out of
    band) for `owner`, from `at` (default now). The owner's active key, if any, retires at `at`: what it
    signed before stays valid; a private key the hub held for `owner` is deleted. Importing a key already
    trusted for `owner` changes nothing."""
    if owner == HUB_OWNER:
        raise ValueError("the hub's own key is made here: use `exchange keys rotate hub`")
    keyring.key_path(owner)  # checks the owner's name
    algorithm, raw = public_key_from_pem(pem)
    new_id, at = key_id(algorithm, raw), at or datetime.now(UTC)
    with keyring.locked():
        bundle = keyring.trust_bundle()
        known = next((k for k in bundle.keys if k.key_id == new_id), None)
        if known is not None:
            if known.owner != owner or known.status == "revoked":
                raise ValueError(f"key {new_id} is already in the trust bundle ({known.owner}, {known.status})")
            return known
        record = public_record(owner, algorithm, raw, at)
        bundle.keys = [
            retired(k, at) if k.owner == owner and k.status == "active" else k
            for k in bundle.keys
        ] + [record]
        keyring.save_locked(bundle)
        # A private key the hub kept for this owner (the embedded default's) could sign, backdated, what
        # the retired key still vouches for: from now on only the owner holds a key.
        for path, _ in keyring.files(owner):
            path.unlink()
        return record
