"""Signers: what signs bytes, with which algorithm, and the check of one signature against one public key.

Two algorithms sit side by side: Ed25519 (the default) and the national suite SM2-SM3 (GB/T 32918
signatures over GB/T 32905 digests). The algorithm is chosen per key; a key id (fingerprint) names the
algorithm and the public key, so every verifier dispatches on the key, never on the signature's word.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, Field

from exchange.errors import VerificationError
from exchange.signing.canonical import sha256_hex
from exchange.signing.sm2 import DEFAULT_USER_ID, SM2PrivateKey, SM2PublicKey

ED25519 = "ed25519"
SM2_SM3 = "SM2-SM3"
ALGORITHM = ED25519  # the default for new keys
ALGORITHMS = (ED25519, SM2_SM3)
# What `--algorithm` accepts.
_ALIASES = {"ed25519": ED25519, "sm2": SM2_SM3, "sm2-sm3": SM2_SM3}


class Signature(BaseModel, frozen=True):
    """A detached signature over the canonical bytes of a document."""

    key_id: str = Field(description="Fingerprint of the signing public key (algorithm:sha256 prefix)")
    algorithm: str = Field(description="Signature algorithm: ed25519 or SM2-SM3")
    value: str = Field(description="Base64 signature over the RFC 8785 canonical JSON of the document "
                                   "(SM2-SM3: the DER SEQUENCE {r, s} of GM/T 0009)")
    # Absent (not null) for Ed25519, so documents signed before SM2 existed keep their canonical bytes.
    user_id: str | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="SM2-SM3 only: the signer's distinguishing identifier (UTF-8), hashed into Z_A; "
                    "GM/T 0009's default is 1234567812345678",
    )


class Signer(Protocol):
    """Anything that signs bytes: what the provenance log, manifests, grants and extracts need."""

    @property
    def key_id(self) -> str:
        """Fingerprint of the public key."""
        ...

    def sign(self, data: bytes) -> Signature:
        """Sign `data`."""
        ...


class KeySigner(Signer, Protocol):
    """A keyring key: a Signer that also knows its owner, algorithm and public key."""

    @property
    def owner(self) -> str:
        """Who holds the key."""
        ...

    @property
    def algorithm(self) -> str:
        """ed25519 or SM2-SM3."""
        ...

    def public_bytes(self) -> bytes:
        """The raw public key the trust bundle carries."""
        ...

    def private_pem(self) -> bytes:
        """The unencrypted PKCS#8 PEM of the private key (stored 0600)."""
        ...


def algorithm_name(value: str) -> str:
    """The canonical name of a signature algorithm ('sm2', 'SM2-SM3' -> SM2-SM3); ValueError if unknown."""
    try:
        return _ALIASES[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown signature algorithm {value!r}: use ed25519 or sm2") from None


def key_id(algorithm: str, raw: bytes) -> str:
    """The fingerprint naming a raw public key of `algorithm`: algorithm + ':' + 32 hex chars of SHA-256."""
    return f"{algorithm.lower()}:{sha256_hex(raw)[:32]}"


def key_id_for(public: Ed25519PublicKey) -> str:
    """The fingerprint that names an Ed25519 public key."""
    return key_id(ED25519, public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


@dataclass
class Ed25519Signer:
    """Signs with an Ed25519 private key."""

    private: Ed25519PrivateKey
    owner: str

    @property
    def algorithm(self) -> str:
        """Always ed25519."""
        return ED25519

    @property
    def key_id(self) -> str:
        """Fingerprint of the public key."""
        return key_id_for(self.private.public_key())

    def public_bytes(self) -> bytes:
        """The 32-byte raw public key."""
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def private_pem(self) -> bytes:
        """PKCS#8 PEM of the private key."""
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign(self, data: bytes) -> Signature:
        """Sign `data` (Ed25519 is deterministic: no nonce to get wrong)."""
        value = base64.b64encode(self.private.sign(data)).decode()
        return Signature(key_id=self.key_id, algorithm=ED25519, value=value)


@dataclass
class SM2Signer:
    """Signs with an SM2 private key over SM3 (GB/T 32918.2), a fresh CSPRNG nonce per signature.

    `user_id` is the distinguishing identifier hashed into Z_A; it travels in every signature so a verifier
    can recompute Z_A without any other agreement.
    """

    private: SM2PrivateKey
    owner: str
    user_id: str = DEFAULT_USER_ID.decode()

    @property
    def algorithm(self) -> str:
        """Always SM2-SM3."""
        return SM2_SM3

    @property
    def key_id(self) -> str:
        """Fingerprint of the public key."""
        return key_id(SM2_SM3, self.public_bytes())

    def public_bytes(self) -> bytes:
        """The uncompressed public point 04 || x || y."""
        return self.private.public_key().to_bytes()

    def private_pem(self) -> bytes:
        """PKCS#8 PEM of the private key (the form `openssl genpkey -algorithm SM2` writes)."""
        return self.private.to_pem().encode("ascii")

    def sign(self, data: bytes) -> Signature:
        """Sign `data`: DER (r, s) over SM3(Z_A || data)."""
        der = self.private.sign_der(data, self.user_id.encode())
        return Signature(key_id=self.key_id, algorithm=SM2_SM3, value=base64.b64encode(der).decode(),
                         user_id=self.user_id)


def generate(algorithm: str, owner: str) -> KeySigner:
    """A signer with a fresh key of `algorithm` (ed25519 or SM2-SM3, aliases accepted)."""
    if algorithm_name(algorithm) == SM2_SM3:
        return SM2Signer(SM2PrivateKey.generate(), owner)
    return Ed25519Signer(Ed25519PrivateKey.generate(), owner)


def load_signer(path: Path, algorithm: str, owner: str) -> KeySigner:
    """The signer whose PKCS#8 PEM private key of `algorithm` is stored at `path`."""
    pem = path.read_bytes()
    if algorithm == SM2_SM3:
        try:
            return SM2Signer(SM2PrivateKey.from_pem(pem), owner)
        except ValueError as exc:
            raise VerificationError(str(path), f"not an SM2 private key: {exc}") from None
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # e.g. an SM2 key: cryptography has no such curve
        private = None
    if not isinstance(private, Ed25519PrivateKey):
        raise VerificationError(str(path), "not an Ed25519 private key")
    return Ed25519Signer(private, owner)


def public_key_from_pem(pem: bytes) -> tuple[str, bytes]:
    """(algorithm, raw public key) of a SubjectPublicKeyInfo PEM holding an Ed25519 or SM2 key."""
    try:
        return SM2_SM3, SM2PublicKey.from_pem(pem).to_bytes()
    except ValueError:
        pass  # not SM2: cryptography reads the other kinds
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM public key ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError(f"an {type(public).__name__.removeprefix('_')} key: the hub trusts Ed25519 and SM2 keys only")
    return ED25519, public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_pem(algorithm: str, raw: bytes) -> str | None:
    """A raw public key of `algorithm` as SubjectPublicKeyInfo PEM, or None for an unknown algorithm."""
    if algorithm == SM2_SM3:
        return SM2PublicKey.from_bytes(raw).to_pem()
    if algorithm == ED25519:
        return Ed25519PublicKey.from_public_bytes(raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return None


def _ed25519_valid(raw: bytes, signature: Signature, data: bytes) -> bool:
    if signature.user_id is not None:  # Ed25519 has no user ID: one here was added after signing
        return False
    public = Ed25519PublicKey.from_public_bytes(raw)
    try:
        public.verify(base64.b64decode(signature.value), data)
    except InvalidSignature:
        return False
    return True


def _sm2_valid(raw: bytes, signature: Signature, data: bytes) -> bool:
    if signature.user_id is None:  # without it Z_A cannot be recomputed
        return False
    public = SM2PublicKey.from_bytes(raw)
    return public.verify_der(data, base64.b64decode(signature.value), signature.user_id.encode())


_VERIFIERS = {ED25519: _ed25519_valid, SM2_SM3: _sm2_valid}


def signature_valid(algorithm: str, raw: bytes, signature: Signature, data: bytes) -> bool:
    """Whether `signature` over `data` was made by the raw public key `raw` of `algorithm`.

    Pure cryptography: no validity period, no revocation (the trust bundle decides those). ValueError for
    an unknown algorithm or a malformed key or signature encoding.
    """
    valid = _VERIFIERS.get(algorithm)
    if valid is None:
        raise ValueError(f"unsupported algorithm {algorithm}")
    return valid(raw, signature, data)
