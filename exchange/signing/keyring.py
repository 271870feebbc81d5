"""The keys folder under EXCHANGE_HOME/keys: each owner's current private key and the signed trust bundle.

Every owner (the hub, each province data office, each department) has one current private key, PKCS#8 PEM
(0600): ``keys/<owner>.ed25519.pem`` for Ed25519 (the default) or ``keys/<owner>.sm2.pem`` for SM2-SM3.
The keyring's public half is ``keys/trust-bundle.json`` (exchange.signing.trust). Rotation, revocation and
the import of keys other parties hold are in exchange.signing.rotation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exchange import atomic
from exchange.errors import VerificationError
from exchange.locking import file_lock
from exchange.signing.signers import ALGORITHMS, ED25519, SM2_SM3, KeySigner, algorithm_name, generate, load_signer
from exchange.signing.trust import HUB_OWNER, TrustBundle, TrustedKey, record_of, signed

# The file-name suffix of each algorithm's private keys.
_SUFFIX = {ED25519: "ed25519", SM2_SM3: "sm2"}
# Owners become file names: keep them to a safe alphabet (no path separators, no leading dot).
_OWNER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
# A key is trusted a few minutes before it was made, so a signature stamped by a slightly slow clock verifies.
_SKEW = timedelta(minutes=5)


class Keyring:
    """The keys folder: each owner's current private key (0600) and the signed trust bundle (public).

    Every change happens under an exclusive lock on ``keys/.lock``, so four province workers creating
    their keys at once neither overwrite a key nor lose a bundle entry. `algorithm` is what new keys get
    (ed25519 unless told otherwise). Methods named ``*_locked`` expect the caller to hold :meth:`locked`.
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
        signer = self.current(owner)
        if signer is not None:
            bundle = self.trust_bundle()
            if bundle.signature is not None and any(k.key_id == signer.key_id for k in bundle.keys):
                return signer
        with self.locked():
            return self.signer_locked(owner)

    def create(self, owner: str, algorithm: str | None = None) -> TrustedKey:
        """Make sure the owner has a key (of `algorithm` if it is new); return its public record."""
        if algorithm is None or self.current(owner) is not None:
            signer = self.signer(owner)
        else:
            with self.locked():
                signer = self.signer_locked(owner, algorithm)
        return self.trust_bundle().key(signer.key_id)

    def trust_bundle(self) -> TrustBundle:
        """The keyring's trust bundle (empty if no key exists yet)."""
        if self.trust_bundle_path.exists():
            return TrustBundle.model_validate_json(self.trust_bundle_path.read_text(encoding="utf-8"))
        return TrustBundle(issued_at=datetime.now(UTC), keys=[])

    def export_trust(self) -> TrustBundle:
        """A freshly issued copy of the trust bundle, signed by the hub's current key."""
        with self.locked():
            self.signer_locked(HUB_OWNER)
            bundle = self.trust_bundle()
            bundle.issued_at = datetime.now(UTC)
            hub = self.current(HUB_OWNER)
            if hub is None:
                raise VerificationError(str(self.dir), "the hub has no private key")
            return signed(bundle, hub)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the keyring's exclusive lock (creating the folder, 0700)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        with file_lock(self.dir / ".lock"):
            yield

    def files(self, owner: str) -> list[tuple[Path, KeySigner]]:
        """The owner's private key files, one per algorithm at most, loaded."""
        found = []
        for algorithm in ALGORITHMS:
            path = self.key_path(owner, algorithm)
            if path.exists():
                found.append((path, load_signer(path, algorithm, owner)))
        return found

    def current(self, owner: str) -> KeySigner | None:
        """The owner's key in service, or None. Two files exist only if a rotation between algorithms
        stopped half-way: then the bundle decides (the active key, the newest if several); failing that,
        the key of the keyring's algorithm."""
        files = [signer for _, signer in self.files(owner)]
        if len(files) <= 1:
            return files[0] if files else None
        records = {k.key_id: k for k in self.trust_bundle().keys if k.status == "active"}
        trusted = [s for s in files if s.key_id in records]
        if trusted:
            return max(trusted, key=lambda s: records[s.key_id].not_before)
        return next((s for s in files if s.algorithm == self.algorithm), files[0])

    def signer_locked(self, owner: str, algorithm: str | None = None) -> KeySigner:
        """The owner's current signer, making (and trusting) a key of `algorithm` if it has none."""
        signer = self.current(owner)
        if signer is None and owner != HUB_OWNER and (held := self.trust_bundle().current(owner)) is not None:
            # A key imported with trust: its owner holds the private half, the hub must never sign as them.
            raise ValueError(f"{owner}'s key {held.key_id} is held by {owner} (imported); the hub has no "
                             "private key for it and makes none")
        if signer is None:
            signer = generate(algorithm or self.algorithm, owner)
            write_private(self.key_path(owner, signer.algorithm), signer, replace=False)
        bundle = self.trust_bundle()
        if not any(k.key_id == signer.key_id for k in bundle.keys):
            bundle.keys.append(record_of(signer, datetime.now(UTC) - _SKEW))
            self.save_locked(bundle)
        elif bundle.signature is None:  # a keyring from before bundles were signed: sign it now
            self.save_locked(bundle)
        return signer

    def save_locked(self, bundle: TrustBundle, hub: KeySigner | None = None) -> None:
        """Sign the bundle with the hub's current key (making one if there is none yet) and write it."""
        if hub is None:
            hub = self.current(HUB_OWNER)
        if hub is None:  # first key of the keyring, or the hub key was just revoked
            hub = generate(self.algorithm, HUB_OWNER)
            write_private(self.key_path(HUB_OWNER, hub.algorithm), hub, replace=False)
        if not any(k.key_id == hub.key_id for k in bundle.keys):
            bundle.keys.append(record_of(hub, datetime.now(UTC) - _SKEW))
        bundle.issued_at = datetime.now(UTC)
        atomic.write_text(self.trust_bundle_path, signed(bundle, hub).model_dump_json(indent=2))


def write_private(path: Path, signer: KeySigner, *, replace: bool) -> None:
    """Write a private key 0600: to a temp file first, so no reader ever sees a half-written key.

    Without `replace`, an existing key is never overwritten (link() fails if the key appeared meanwhile).
    """
    tmp = atomic.temp_path(path)  # the name recovery knows for a dead writer's temporary file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(signer.private_pem())
        handle.flush()
        os.fsync(handle.fileno())
    if replace:
        tmp.replace(path)
    else:
        try:
            os.link(tmp, path)
        finally:
            tmp.unlink()
    atomic.fsync_dir(path.parent)
