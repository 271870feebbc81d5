"""Signing keys under EXCHANGE_HOME/keys: a keyring with rotation and revocation, and the trust bundle.

Every owner (the hub, each province data office, each department) has one current private key, PKCS#8 PEM
(0600): ``keys/<owner>.ed25519.pem`` for Ed25519 (the default) or ``keys/<owner>.sm2.pem`` for the
national suite SM2-SM3 (GB/T 32918 signatures over GB/T 32905 digests). The algorithm is chosen per key:
an owner can rotate from one to the other, and every verifier dispatches on the key's algorithm in the
trust bundle. The keyring's public half is ``keys/trust-bundle.json``: every key
ever issued, with owner, algorithm, validity period and status, signed by the hub's current key, so a key
slipped into the bundle breaks its signature. A verifier needs only that bundle, offline.

Rotation hands over: the old key's validity ends at the rotation instant (what it signed before stays
valid), the new key starts there and carries an endorsement by the old key, so a verifier that pinned the
old fingerprint can follow the hand-over. Revocation at T invalidates every signature claimed after T.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, Field

from exchange.errors import VerificationError
from exchange.locking import file_lock
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.sm2 import DEFAULT_USER_ID, SM2PrivateKey, SM2PublicKey

ED25519 = "ed25519"
SM2_SM3 = "SM2-SM3"
ALGORITHM = ED25519  # the default for new keys
ALGORITHMS = (ED25519, SM2_SM3)
# What `--algorithm` accepts, and the file-name suffix of each algorithm's private keys.
_ALIASES = {"ed25519": ED25519, "sm2": SM2_SM3, "sm2-sm3": SM2_SM3}
_SUFFIX = {ED25519: "ed25519", SM2_SM3: "sm2"}
HUB_OWNER = "hub"
# Owners become file names: keep them to a safe alphabet (no path separators, no leading dot).
_OWNER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
# A key is trusted a few minutes before it was made, so a signature stamped by a slightly slow clock verifies.
_SKEW = timedelta(minutes=5)
DEFAULT_YEARS = 5


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
    """Anything that signs bytes: what the provenance log, manifests, grants and extracts need."""

    @property
    def key_id(self) -> str:
        """Fingerprint of the public key."""
        ...

    def sign(self, data: bytes) -> Signature:
        """Sign `data`."""
        ...


class KeySigner(Signer, Protocol):
    """A keyring key: a Signer that also knows its owner, algorithm and public record."""

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

    def trusted_key(self, not_before: datetime, years: int = DEFAULT_YEARS) -> TrustedKey:
        """The public record of this key, valid from `not_before` for `years`."""
        ...


def _z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def algorithm_name(value: str) -> str:
    """The canonical name of a signature algorithm ('sm2', 'SM2-SM3' -> SM2-SM3); ValueError if unknown."""
    try:
        return _ALIASES[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown signature algorithm {value!r}: use ed25519 or sm2") from None


def _key_id(algorithm: str, raw: bytes) -> str:
    return f"{algorithm.lower()}:{sha256_hex(raw)[:32]}"


def key_id_for(public: Ed25519PublicKey) -> str:
    """The fingerprint that names an Ed25519 public key."""
    return _key_id(ED25519, public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


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


def _trusted_key(signer: KeySigner, not_before: datetime, years: int) -> TrustedKey:
    return _public_record(signer.owner, signer.algorithm, signer.public_bytes(), not_before, years)


def _public_record(owner: str, algorithm: str, raw: bytes, not_before: datetime, years: int) -> TrustedKey:
    return TrustedKey(
        key_id=_key_id(algorithm, raw),
        owner=owner,
        algorithm=algorithm,
        public_key=base64.b64encode(raw).decode(),
        not_before=not_before,
        not_after=not_before + timedelta(days=365 * years),
    )


def _retired(key: TrustedKey, at: datetime) -> TrustedKey:
    """`key` handed over at `at`: what it signed before stays valid."""
    return key.model_copy(update={"status": "retired", "not_after": min(key.not_after, at)})


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

    def trusted_key(self, not_before: datetime, years: int = DEFAULT_YEARS) -> TrustedKey:
        """The public record of this key, valid from `not_before` for `years`."""
        return _trusted_key(self, not_before, years)


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
        return _key_id(SM2_SM3, self.public_bytes())

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

    def trusted_key(self, not_before: datetime, years: int = DEFAULT_YEARS) -> TrustedKey:
        """The public record of this key, valid from `not_before` for `years`."""
        return _trusted_key(self, not_before, years)


def generate(algorithm: str, owner: str) -> KeySigner:
    """A signer with a fresh key of `algorithm` (ed25519 or SM2-SM3, aliases accepted)."""
    if algorithm_name(algorithm) == SM2_SM3:
        return SM2Signer(SM2PrivateKey.generate(), owner)
    return Ed25519Signer(Ed25519PrivateKey.generate(), owner)


class Keyring:
    """The keys folder: each owner's current private key (0600) and the signed trust bundle (public).

    Every change happens under an exclusive lock on ``keys/.lock``, so four province workers creating
    their keys at once neither overwrite a key nor lose a bundle entry. `algorithm` is what new keys get
    (ed25519 unless told otherwise); a rotation keeps the owner's algorithm unless it is asked for another.
    """

    def __init__(self, keys_dir: Path, algorithm: str = ED25519) -> None:
        self.dir = keys_dir
        self.algorithm = algorithm_name(algorithm)

    @property
    def trust_bundle_path(self) -> Path:
        """Where the keyring's (signed) trust bundle lives."""
        return self.dir / "trust-bundle.json"

    def key_path(self, owner: str, algorithm: str | None = None) -> Path:
        """Where the owner's private key of `algorithm` (default: the keyring's) lives."""
        if not _OWNER.match(owner):
            raise ValueError(f"invalid key owner {owner!r}: use lower-case letters, digits, '.', '_' or '-'")
        return self.dir / f"{owner}.{_SUFFIX[algorithm_name(algorithm or self.algorithm)]}.pem"

    def signer(self, owner: str = HUB_OWNER) -> KeySigner:
        """The owner's current signer, generating its key (and trusting it) on first use."""
        signer = self._current(owner)
        if signer is not None:
            bundle = self.trust_bundle()
            if bundle.signature is not None and any(k.key_id == signer.key_id for k in bundle.keys):
                return signer
        with self._locked():
            return self._signer_locked(owner)

    def create(self, owner: str, algorithm: str | None = None) -> TrustedKey:
        """Make sure the owner has a key (of `algorithm` if it is new); return its public record."""
        if algorithm is None or self._current(owner) is not None:
            signer = self.signer(owner)
        else:
            with self._locked():
                signer = self._signer_locked(owner, algorithm)
        return self.trust_bundle().key(signer.key_id)

    def rotate(self, owner: str, at: datetime | None = None, algorithm: str | None = None) -> TrustedKey:
        """Replace the owner's key: the old one is retired at `at` (default now), the new one endorsed by it.

        `algorithm` (default: the old key's) may differ from the old key's: an Ed25519 key endorses its SM2
        successor as well as the other way round, and what the old key signed stays valid either way.
        """
        at = at or datetime.now(UTC)
        with self._locked():
            old = self._signer_locked(owner)
            new = generate(algorithm or old.algorithm, owner)
            record = new.trusted_key(at)
            record = record.model_copy(update={"endorsement": old.sign(record.identity())})
            bundle = self._read_bundle()
            bundle.keys = [
                _retired(k, at) if k.key_id == old.key_id else k
                for k in bundle.keys
            ] + [record]
            old_path, new_path = self.key_path(owner, old.algorithm), self.key_path(owner, new.algorithm)
            _write_private(new_path, new, replace=True)
            # Until the old file goes, _current() tells the two apart by the bundle, so save the bundle
            # (signed by the new key if this is the hub's) before removing it.
            self._save(bundle, hub=new if owner == HUB_OWNER else None)
            if old_path != new_path:
                old_path.unlink(missing_ok=True)
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
            # A revoked key is presumed compromised: never sign with it again. The owner's next
            # signer() call makes a fresh key, deliberately without an endorsement by the revoked one.
            for path, signer in self._files(old.owner):
                if signer.key_id == key_id:
                    path.unlink()
            self._save(bundle)
            return revoked

    def trust(self, owner: str, pem: bytes, at: datetime | None = None) -> TrustedKey:
        """Trust a public key another party holds the private half of (e.g. a province office's, sent out of
        band) for `owner`, from `at` (default now). The owner's active key, if any, retires at `at`: what it
        signed before stays valid; a private key the hub held for `owner` is deleted. Importing a key already
        trusted for `owner` changes nothing."""
        if owner == HUB_OWNER:
            raise ValueError("the hub's own key is made here: use `exchange keys rotate hub`")
        self.key_path(owner)  # checks the owner's name
        algorithm, raw = public_key_from_pem(pem)
        key_id, at = _key_id(algorithm, raw), at or datetime.now(UTC)
        with self._locked():
            bundle = self._read_bundle()
            known = next((k for k in bundle.keys if k.key_id == key_id), None)
            if known is not None:
                if known.owner != owner or known.status == "revoked":
                    raise ValueError(f"key {key_id} is already in the trust bundle ({known.owner}, {known.status})")
                return known
            record = _public_record(owner, algorithm, raw, at, DEFAULT_YEARS)
            bundle.keys = [
                _retired(k, at) if k.owner == owner and k.status == "active" else k
                for k in bundle.keys
            ] + [record]
            self._save(bundle)
            # A private key the hub kept for this owner (the embedded default's) could sign, backdated, what
            # the retired key still vouches for: from now on only the owner holds a key.
            for path, _ in self._files(owner):
                path.unlink()
            return record

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
        with file_lock(self.dir / ".lock"):
            yield

    def _files(self, owner: str) -> list[tuple[Path, KeySigner]]:
        """The owner's private key files, one per algorithm at most, loaded."""
        found = []
        for algorithm in ALGORITHMS:
            path = self.key_path(owner, algorithm)
            if path.exists():
                found.append((path, _load(path, algorithm, owner)))
        return found

    def _current(self, owner: str) -> KeySigner | None:
        """The owner's key in service. Two files exist only if a rotation between algorithms stopped
        half-way: then the bundle decides (the active key, the newest if several); failing that, the key
        of the keyring's algorithm."""
        files = [signer for _, signer in self._files(owner)]
        if len(files) <= 1:
            return files[0] if files else None
        records = {k.key_id: k for k in self._read_bundle().keys if k.status == "active"}
        trusted = [s for s in files if s.key_id in records]
        if trusted:
            return max(trusted, key=lambda s: records[s.key_id].not_before)
        return next((s for s in files if s.algorithm == self.algorithm), files[0])

    def _signer_locked(self, owner: str, algorithm: str | None = None) -> KeySigner:
        signer = self._current(owner)
        if signer is None and owner != HUB_OWNER and (held := self._read_bundle().current(owner)) is not None:
            # A key imported with trust(): its owner holds the private half, the hub must never sign as them.
            raise ValueError(f"{owner}'s key {held.key_id} is held by {owner} (imported); the hub has no "
                             "private key for it and makes none")
        if signer is None:
            signer = generate(algorithm or self.algorithm, owner)
            _write_private(self.key_path(owner, signer.algorithm), signer, replace=False)
        bundle = self._read_bundle()
        if not any(k.key_id == signer.key_id for k in bundle.keys):
            bundle.keys.append(signer.trusted_key(datetime.now(UTC) - _SKEW))
            self._save(bundle)
        elif bundle.signature is None:  # a keyring from before bundles were signed: sign it now
            self._save(bundle)
        return signer

    def _hub_signer_locked(self) -> KeySigner:
        hub = self._current(HUB_OWNER)
        if hub is None:
            raise VerificationError(str(self.dir), "the hub has no private key")
        return hub

    def _read_bundle(self) -> TrustBundle:
        if self.trust_bundle_path.exists():
            return TrustBundle.model_validate_json(self.trust_bundle_path.read_text(encoding="utf-8"))
        return TrustBundle(issued_at=datetime.now(UTC), keys=[])

    def _save(self, bundle: TrustBundle, hub: KeySigner | None = None) -> None:
        """Sign the bundle with the hub's current key (making one if there is none yet) and write it."""
        if hub is None:
            hub = self._current(HUB_OWNER)
        if hub is None:  # first key of the keyring, or the hub key was just revoked
            hub = generate(self.algorithm, HUB_OWNER)
            _write_private(self.key_path(HUB_OWNER, hub.algorithm), hub, replace=False)
        if not any(k.key_id == hub.key_id for k in bundle.keys):
            bundle.keys.append(hub.trusted_key(datetime.now(UTC) - _SKEW))
        bundle.issued_at = datetime.now(UTC)
        signed = _signed(bundle, hub)
        tmp = self.trust_bundle_path.with_suffix(".tmp")
        tmp.write_text(signed.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(self.trust_bundle_path)


def _signed(bundle: TrustBundle, hub: Signer) -> TrustBundle:
    unsigned = bundle.model_copy(update={"signature": None})
    return unsigned.model_copy(update={"signature": hub.sign(unsigned.signed_bytes())})


def _load(path: Path, algorithm: str, owner: str) -> KeySigner:
    pem = path.read_bytes()
    if algorithm == SM2_SM3:
        try:
            return SM2Signer(SM2PrivateKey.from_pem(pem), owner)
        except ValueError as exc:
            raise VerificationError(str(path), f"not an SM2 private key: {exc}") from None
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise VerificationError(str(path), "not an Ed25519 private key")
    return Ed25519Signer(private, owner)


def _write_private(path: Path, signer: KeySigner, *, replace: bool) -> None:
    """Write a private key 0600: to a temp file first, so no reader ever sees a half-written key."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(signer.private_pem())
        handle.flush()
        os.fsync(handle.fileno())
    if replace:
        tmp.replace(path)
        return
    try:  # link() fails if the key appeared meanwhile: an existing key is never overwritten
        os.link(tmp, path)
    finally:
        tmp.unlink()


def public_pem(key: TrustedKey) -> str:
    """The trusted key as SubjectPublicKeyInfo PEM: what `openssl pkeyutl -verify -pubin` reads."""
    raw = base64.b64decode(key.public_key)
    if key.algorithm == SM2_SM3:
        return SM2PublicKey.from_bytes(raw).to_pem()
    if key.algorithm == ED25519:
        return Ed25519PublicKey.from_public_bytes(raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    raise VerificationError(f"key {key.key_id}", f"unsupported algorithm {key.algorithm}")


def _ed25519_valid(key: TrustedKey, signature: Signature, data: bytes) -> bool:
    if signature.user_id is not None:  # Ed25519 has no user ID: one here was added after signing
        return False
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
    try:
        public.verify(base64.b64decode(signature.value), data)
    except InvalidSignature:
        return False
    return True


def _sm2_valid(key: TrustedKey, signature: Signature, data: bytes) -> bool:
    if signature.user_id is None:  # without it Z_A cannot be recomputed
        return False
    public = SM2PublicKey.from_bytes(base64.b64decode(key.public_key))
    return public.verify_der(data, base64.b64decode(signature.value), signature.user_id.encode())


# Verification dispatches on the algorithm the trust bundle records for the key, never on the signature's word.
_VERIFIERS = {ED25519: _ed25519_valid, SM2_SM3: _sm2_valid}


def verify_signature(bundle: TrustBundle, signature: Signature, data: bytes, at: datetime, item: str) -> None:
    """Check `signature` over `data` with the bundle's key valid at `at`; raise VerificationError naming `item`."""
    try:
        key = bundle.key(signature.key_id)
    except VerificationError:
        raise VerificationError(item, f"signed by key {signature.key_id}, which is not in the trust bundle") from None
    valid = _VERIFIERS.get(key.algorithm)
    if valid is None:
        raise VerificationError(item, f"key {key.key_id} has unsupported algorithm {key.algorithm}")
    if signature.algorithm != key.algorithm:
        raise VerificationError(item, f"signature claims algorithm {signature.algorithm}, but key {key.key_id} is "
                                      f"{key.algorithm}")
    if key.revoked_at is not None and at > key.revoked_at:
        raise VerificationError(item, f"signed at {_z(at)} with key {key.key_id} ({key.owner}), which was revoked "
                                      f"at {_z(key.revoked_at)}")
    if not key.not_before <= at <= key.not_after:
        raise VerificationError(item, f"signed at {_z(at)}, outside the validity of key {key.key_id} ({key.owner}: "
                                      f"{_z(key.not_before)} .. {_z(key.not_after)}, {key.status})")
    try:
        ok = valid(key, signature, data)
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
