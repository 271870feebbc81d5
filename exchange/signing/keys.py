"""Ed25519 signing keys under EXCHANGE_HOME/keys: a keyring with rotation and revocation, and the trust bundle.

Every owner (the hub, each province data office, each department) has one current private key,
``keys/<owner>.ed25519.pem`` (0600). The keyring's public half is ``keys/trust-bundle.json``: every key
ever issued, with owner, algorithm, validity period and status, signed by the hub's current key, so a key
slipped into the bundle breaks its signature. A verifier needs only that bundle, offline.

Rotation hands over: the old key's validity ends at the rotation instant (what it signed before stays
valid), the new key starts there and carries an endorsement by the old key, so a verifier that pinned the
old fingerprint can follow the hand-over. Revocation at T invalidates every signature claimed after T.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, Field

from exchange.errors import VerificationError
from exchange.signing.canonical import canonical_bytes, sha256_hex

ALGORITHM = "ed25519"
HUB_OWNER = "hub"
# Owners become file names: keep them to a safe alphabet (no path separators, no leading dot).
_OWNER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
# A key is trusted a few minutes before it was made, so a signature stamped by a slightly slow clock verifies.
_SKEW = timedelta(minutes=5)
DEFAULT_YEARS = 5


class Signature(BaseModel, frozen=True):
    """A detached signature over the canonical bytes of a document."""

    key_id: str = Field(description="Fingerprint of the signing public key (algorithm:sha256 prefix)")
    algorithm: str = Field(description="Signature algorithm, e.g. ed25519")
    value: str = Field(description="Base64 signature over the RFC 8785 canonical JSON of the document")


class TrustedKey(BaseModel, frozen=True):
    """A public key a verifier trusts, for an owner and a validity period."""

    key_id: str = Field(description="Fingerprint: algorithm + ':' + first 32 hex chars of SHA-256 of the raw key")
    owner: str = Field(description="Who holds the private key, e.g. 'hub' or 'jiangsu.data_office'")
    algorithm: str = Field(description="Signature algorithm")
    public_key: str = Field(description="Base64 raw public key")
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
            "public_key": self.public_key, "not_before": _z(self.not_before),
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


class Signer(Protocol):
    """Anything that signs bytes (Ed25519 now; an SM2 signer can sit beside it)."""

    @property
    def key_id(self) -> str:
        """Fingerprint of the public key."""
        ...

    def sign(self, data: bytes) -> Signature:
        """Sign `data`."""
        ...


def _z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def key_id_for(public: Ed25519PublicKey) -> str:
    """The fingerprint that names a public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{ALGORITHM}:{sha256_hex(raw)[:32]}"


@dataclass
class Ed25519Signer:
    """Signs with an Ed25519 private key."""

    private: Ed25519PrivateKey
    owner: str

    @property
    def key_id(self) -> str:
        """Fingerprint of the public key."""
        return key_id_for(self.private.public_key())

    def sign(self, data: bytes) -> Signature:
        """Sign `data` (Ed25519 is deterministic: no nonce to get wrong)."""
        value = base64.b64encode(self.private.sign(data)).decode()
        return Signature(key_id=self.key_id, algorithm=ALGORITHM, value=value)

    def trusted_key(self, not_before: datetime, years: int = DEFAULT_YEARS) -> TrustedKey:
        """The public record of this key, valid from `not_before` for `years`."""
        raw = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return TrustedKey(
            key_id=self.key_id,
            owner=self.owner,
            algorithm=ALGORITHM,
            public_key=base64.b64encode(raw).decode(),
            not_before=not_before,
            not_after=not_before + timedelta(days=365 * years),
        )


class Keyring:
    """The keys folder: each owner's current private key (0600) and the signed trust bundle (public).

    Every change happens under an exclusive lock on ``keys/.lock``, so four province workers creating
    their keys at once neither overwrite a key nor lose a bundle entry.
    """

    def __init__(self, keys_dir: Path) -> None:
        self.dir = keys_dir

    @property
    def trust_bundle_path(self) -> Path:
        """Where the keyring's (signed) trust bundle lives."""
        return self.dir / "trust-bundle.json"

    def key_path(self, owner: str) -> Path:
        """The owner's current private key file."""
        if not _OWNER.match(owner):
            raise ValueError(f"invalid key owner {owner!r}: use lower-case letters, digits, '.', '_' or '-'")
        return self.dir / f"{owner}.ed25519.pem"

    def signer(self, owner: str = HUB_OWNER) -> Ed25519Signer:
        """The owner's current signer, generating its key (and trusting it) on first use."""
        path = self.key_path(owner)
        if path.exists():
            signer = Ed25519Signer(_load(path), owner)
            bundle = self.trust_bundle()
            if bundle.signature is not None and any(k.key_id == signer.key_id for k in bundle.keys):
                return signer
        with self._locked():
            return self._signer_locked(owner)

    def create(self, owner: str) -> TrustedKey:
        """Make sure the owner has a key; return its public record."""
        signer = self.signer(owner)
        return self.trust_bundle().key(signer.key_id)

    def rotate(self, owner: str, at: datetime | None = None) -> TrustedKey:
        """Replace the owner's key: the old one is retired at `at` (default now), the new one endorsed by it."""
        at = at or datetime.now(UTC)
        with self._locked():
            old = self._signer_locked(owner)
            new = Ed25519Signer(Ed25519PrivateKey.generate(), owner)
            record = new.trusted_key(at)
            record = record.model_copy(update={"endorsement": old.sign(record.identity())})
            bundle = self._read_bundle()
            bundle.keys = [
                k.model_copy(update={"status": "retired", "not_after": min(k.not_after, at)})
                if k.key_id == old.key_id else k
                for k in bundle.keys
            ] + [record]
            _write_private(self.key_path(owner), new.private, replace=True)
            self._save(bundle)
            return record

    def revoke(self, key_id: str, at: datetime | None = None, reason: str = "") -> TrustedKey:
        """Revoke a key from `at` (default now); its private key leaves service at once."""
        at = at or datetime.now(UTC)
        with self._locked():
            bundle = self._read_bundle()
            old = bundle.key(key_id)
            revoked = old.model_copy(update={"status": "revoked", "revoked_at": at,
                                             "revocation_reason": reason or None})
            bundle.keys = [revoked if k.key_id == key_id else k for k in bundle.keys]
            path = self.key_path(old.owner)
            # A revoked key is presumed compromised: never sign with it again. The owner's next
            # signer() call makes a fresh key, deliberately without an endorsement by the revoked one.
            if path.exists() and Ed25519Signer(_load(path), old.owner).key_id == key_id:
                path.unlink()
            self._save(bundle)
            return revoked

    def trust_bundle(self) -> TrustBundle:
        """The keyring's trust bundle (empty if no key exists yet)."""
        return self._read_bundle()

    def export_trust(self) -> TrustBundle:
        """A freshly issued copy of the trust bundle, signed by the hub's current key."""
        with self._locked():
            self._signer_locked(HUB_OWNER)
            bundle = self._read_bundle()
            bundle.issued_at = datetime.now(UTC)
            return _signed(bundle, self._hub_signer_locked())

    # -- internals; every *_locked method expects the caller to hold the lock ------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        with (self.dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _signer_locked(self, owner: str) -> Ed25519Signer:
        path = self.key_path(owner)
        if path.exists():
            signer = Ed25519Signer(_load(path), owner)
        else:
            signer = Ed25519Signer(Ed25519PrivateKey.generate(), owner)
            _write_private(path, signer.private, replace=False)
        bundle = self._read_bundle()
        if not any(k.key_id == signer.key_id for k in bundle.keys):
            bundle.keys.append(signer.trusted_key(datetime.now(UTC) - _SKEW))
            self._save(bundle)
        elif bundle.signature is None:  # a keyring from before bundles were signed: sign it now
            self._save(bundle)
        return signer

    def _hub_signer_locked(self) -> Ed25519Signer:
        return Ed25519Signer(_load(self.key_path(HUB_OWNER)), HUB_OWNER)

    def _read_bundle(self) -> TrustBundle:
        if self.trust_bundle_path.exists():
            return TrustBundle.model_validate_json(self.trust_bundle_path.read_text(encoding="utf-8"))
        return TrustBundle(issued_at=datetime.now(UTC), keys=[])

    def _save(self, bundle: TrustBundle) -> None:
        """Sign the bundle with the hub's current key (making one if there is none yet) and write it."""
        hub_path = self.key_path(HUB_OWNER)
        if not hub_path.exists():  # first key of the keyring, or the hub key was just revoked
            _write_private(hub_path, Ed25519PrivateKey.generate(), replace=False)
        hub = self._hub_signer_locked()
        if not any(k.key_id == hub.key_id for k in bundle.keys):
            bundle.keys.append(hub.trusted_key(datetime.now(UTC) - _SKEW))
        bundle.issued_at = datetime.now(UTC)
        signed = _signed(bundle, hub)
        tmp = self.trust_bundle_path.with_suffix(".tmp")
        tmp.write_text(signed.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(self.trust_bundle_path)


def _signed(bundle: TrustBundle, hub: Ed25519Signer) -> TrustBundle:
    unsigned = bundle.model_copy(update={"signature": None})
    return unsigned.model_copy(update={"signature": hub.sign(unsigned.signed_bytes())})


def _load(path: Path) -> Ed25519PrivateKey:
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise VerificationError(str(path), "not an Ed25519 private key")
    return private


def _write_private(path: Path, private: Ed25519PrivateKey, *, replace: bool) -> None:
    """Write a private key 0600: to a temp file first, so no reader ever sees a half-written key."""
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    if replace:
        tmp.replace(path)
        return
    try:  # link() fails if the key appeared meanwhile: an existing key is never overwritten
        os.link(tmp, path)
    finally:
        tmp.unlink()


def verify_signature(bundle: TrustBundle, signature: Signature, data: bytes, at: datetime, item: str) -> None:
    """Check `signature` over `data` with the bundle's key valid at `at`; raise VerificationError naming `item`."""
    try:
        key = bundle.key(signature.key_id)
    except VerificationError:
        raise VerificationError(item, f"signed by key {signature.key_id}, which is not in the trust bundle") from None
    if key.algorithm != ALGORITHM or signature.algorithm != ALGORITHM:
        raise VerificationError(item, f"unsupported algorithm {signature.algorithm}")
    if key.revoked_at is not None and at > key.revoked_at:
        raise VerificationError(item, f"signed at {_z(at)} with key {key.key_id} ({key.owner}), which was revoked "
                                      f"at {_z(key.revoked_at)}")
    if not key.not_before <= at <= key.not_after:
        raise VerificationError(item, f"signed at {_z(at)}, outside the validity of key {key.key_id} ({key.owner}: "
                                      f"{_z(key.not_before)} .. {_z(key.not_after)}, {key.status})")
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
    try:
        public.verify(base64.b64decode(signature.value), data)
    except (InvalidSignature, ValueError):
        raise VerificationError(item, f"signature by {key.key_id} does not match the content") from None


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
