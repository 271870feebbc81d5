"""Ed25519 signing keys under EXCHANGE_HOME/keys and the public trust bundle.

Private keys are generated on first use, written 0600, and never leave the keys folder. The trust
bundle (public keys with owner and validity) is all a verifier needs, offline.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, Field

from exchange.errors import VerificationError
from exchange.signing.canonical import sha256_hex

ALGORITHM = "ed25519"


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
    not_after: datetime = Field(description="End of validity")
    status: str = Field(default="active", description="active, retired or revoked")
    revoked_at: datetime | None = Field(default=None, description="Signatures claimed after this are invalid")


class TrustBundle(BaseModel):
    """The public keys a verifier needs, exported by the hub."""

    version: int = Field(default=1, description="Bundle format version")
    issued_at: datetime = Field(description="When the bundle was exported")
    keys: list[TrustedKey] = Field(description="Trusted public keys")

    def key(self, key_id: str) -> TrustedKey:
        """The trusted key with this id, or a VerificationError naming it."""
        for k in self.keys:
            if k.key_id == key_id:
                return k
        raise VerificationError(f"key {key_id}", "not in the trust bundle")


class Signer(Protocol):
    """Anything that signs bytes (Ed25519 now; an SM2 signer can sit beside it)."""

    @property
    def key_id(self) -> str:
        """Fingerprint of the public key."""
        ...

    def sign(self, data: bytes) -> Signature:
        """Sign `data`."""
        ...


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
        return key_id_for(self.private.public_key())

    def sign(self, data: bytes) -> Signature:
        value = base64.b64encode(self.private.sign(data)).decode()
        return Signature(key_id=self.key_id, algorithm=ALGORITHM, value=value)

    def trusted_key(self, not_before: datetime, years: int = 5) -> TrustedKey:
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
    """The keys folder: private keys (0600) and the trust bundle (public)."""

    def __init__(self, keys_dir: Path) -> None:
        self.dir = keys_dir

    @property
    def trust_bundle_path(self) -> Path:
        return self.dir / "trust-bundle.json"

    def signer(self, owner: str = "hub") -> Ed25519Signer:
        """The owner's signer, generating its key (and trusting it) on first use."""
        path = self.dir / f"{owner}.ed25519.pem"
        if path.exists():
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(private, Ed25519PrivateKey):
                raise VerificationError(str(path), "not an Ed25519 private key")
            return Ed25519Signer(private, owner)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # O_EXCL: two processes racing on first use must not overwrite each other's key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.signer(owner)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        signer = Ed25519Signer(private, owner)
        self._trust(signer.trusted_key(datetime.now(UTC) - timedelta(minutes=5)))
        return signer

    def _trust(self, key: TrustedKey) -> None:
        bundle = self.trust_bundle()
        bundle.keys = [k for k in bundle.keys if k.key_id != key.key_id] + [key]
        bundle.issued_at = datetime.now(UTC)
        tmp = self.trust_bundle_path.with_suffix(".tmp")
        tmp.write_text(bundle.model_dump_json(indent=2))
        tmp.replace(self.trust_bundle_path)

    def trust_bundle(self) -> TrustBundle:
        """The current trust bundle (empty if no key exists yet)."""
        if self.trust_bundle_path.exists():
            return TrustBundle.model_validate_json(self.trust_bundle_path.read_text())
        return TrustBundle(issued_at=datetime.now(UTC), keys=[])


def verify_signature(bundle: TrustBundle, signature: Signature, data: bytes, at: datetime, item: str) -> None:
    """Check `signature` over `data` with the bundle's key valid at `at`; raise VerificationError naming `item`."""
    key = bundle.key(signature.key_id)
    if key.algorithm != ALGORITHM or signature.algorithm != ALGORITHM:
        raise VerificationError(item, f"unsupported algorithm {signature.algorithm}")
    if not key.not_before <= at <= key.not_after:
        raise VerificationError(item, f"signed at {at.isoformat()} outside the validity of key {key.key_id}")
    if key.revoked_at is not None and at > key.revoked_at:
        raise VerificationError(item, f"key {key.key_id} was revoked at {key.revoked_at.isoformat()}")
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
    try:
        public.verify(base64.b64decode(signature.value), data)
    except InvalidSignature:
        raise VerificationError(item, f"signature by {key.key_id} does not match the content") from None
