"""Extract encryption to a department's age X25519 key (age-encryption.org/v1), so `age -d -i KEY FILE` opens it.

A department's extract key is an age identity (``AGE-SECRET-KEY-1...``); the hub holds only its recipient
(``age1...``). Files are encrypted with pyrage, the Python binding of the maintained rage implementation:
a fresh file key per file, wrapped to the recipient with X25519, the payload sealed in 64 KiB
ChaCha20-Poly1305 chunks, so reordered, dropped or truncated chunks fail and memory stays bounded whatever
the size of the extract. The signed manifest lists each file's plaintext SHA-256, checked after decryption.
Extracts published earlier in the hub's own stream format still open (exchange.access.legacy_envelope).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyrage
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import BaseModel, Field

from exchange.access import bech32, legacy_envelope
from exchange.access.legacy_envelope import DecryptionFailed, raw_public
from exchange.errors import BadFile, VerificationError
from exchange.signing.canonical import file_sha256, sha256_hex

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["ALGORITHM", "DecryptionFailed", "ExtractEncryption", "FileEnvelope", "AgeWriter", "decrypt_file"]

ALGORITHM = "age-encryption.org/v1 X25519"
_RECIPIENT_HRP = "age"
_IDENTITY_HRP = "age-secret-key-"


class FileEnvelope(BaseModel, frozen=True):
    """How one delivered file was encrypted and what it holds once decrypted."""

    name: str = Field(description="Ciphertext file name (as listed in the manifest's files)")
    plaintext_name: str = Field(description="File name after decryption")
    plaintext_sha256: str = Field(description="Hex SHA-256 of the decrypted bytes")
    plaintext_size: int = Field(description="Size of the decrypted file in bytes")
    ephemeral_public_key: str | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description=f"{legacy_envelope.ALGORITHM} only: base64 raw X25519 public key of the hub's one-time key "
                    "for this file (age keeps its own inside the file header)")
    salt: str | None = Field(default=None, exclude_if=lambda v: v is None,
                             description=f"{legacy_envelope.ALGORITHM} only: base64 HKDF salt (16 random bytes)")


class ExtractEncryption(BaseModel, frozen=True):
    """The envelope parameters of an encrypted extract (everything but the recipient's private key)."""

    algorithm: str = Field(description=f"{ALGORITHM} (an age file per delivered file: `age -d -i KEY FILE` "
                                       f"opens it), or {legacy_envelope.ALGORITHM} for extracts published "
                                       "before the age format")
    recipient_key_id: str = Field(description="x25519:<first 32 hex of SHA-256 of the recipient's raw public key>")
    chunk_size: int | None = Field(default=None, exclude_if=lambda v: v is None,
                                   description=f"{legacy_envelope.ALGORITHM} only: plaintext bytes per chunk")
    files: list[FileEnvelope] = Field(description="One envelope per delivered file")


def key_id(public: X25519PublicKey) -> str:
    """The fingerprint that names a department's extract key (the same whichever text form it came in)."""
    return f"x25519:{sha256_hex(raw_public(public))[:32]}"


def recipient(public: X25519PublicKey) -> str:
    """The age recipient (``age1...``) of a public key: what the department registry stores."""
    return bech32.encode(_RECIPIENT_HRP, raw_public(public))


def identity(key: X25519PrivateKey) -> str:
    """The age identity (``AGE-SECRET-KEY-1...``) of a private key."""
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return bech32.encode(_IDENTITY_HRP, raw).upper()


def public_key_b64(public: X25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key (the registry's form before age recipients; still accepted)."""
    return base64.b64encode(raw_public(public)).decode()


def parse_public_key(value: str) -> X25519PublicKey:
    """An X25519 public key from an age recipient or base64 raw bytes, or ValueError saying what is wrong."""
    if value.startswith(_RECIPIENT_HRP + "1"):
        try:
            hrp, raw = bech32.decode(value)
        except ValueError as exc:
            raise ValueError(f"extract public key is not a valid age recipient: {exc}") from None
        if hrp != _RECIPIENT_HRP:
            raise ValueError("extract public key is not an age X25519 recipient")
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise ValueError("extract public key is neither an age recipient (age1...) nor valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"extract public key must be 32 raw X25519 bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def generate_private_key() -> X25519PrivateKey:
    """A new department extract key."""
    return X25519PrivateKey.generate()


def write_private_key(key: X25519PrivateKey, path: Path) -> None:
    """Store the key as an age identity file (as age-keygen writes it), readable by its owner only
    (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# public key: {recipient(key.public_key())}\n{identity(key)}\n"
    # O_EXCL: never overwrite an existing key (that would make its extracts unreadable).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)


def load_private_key(path: Path) -> X25519PrivateKey:
    """A department's X25519 private key from an age identity file or (older keys) a PKCS#8 PEM file,
    or BadFile if it is neither."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadFile(path, f"cannot read an extract key: {exc}") from None
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise BadFile(path, f"cannot read an X25519 private key: {exc}") from None
        if not isinstance(key, X25519PrivateKey):
            raise BadFile(path, f"holds a {type(key).__name__}, not an X25519 extract key")
        return key
    lines = [line.strip() for line in data.decode(errors="replace").splitlines()]
    identities = [line for line in lines if line and not line.startswith("#")]
    if len(identities) != 1:
        raise BadFile(path, f"holds {len(identities)} identities, expected one age identity (AGE-SECRET-KEY-1...)")
    try:
        hrp, raw = bech32.decode(identities[0])
    except ValueError as exc:
        raise BadFile(path, f"not an age identity: {exc}") from None
    if hrp != _IDENTITY_HRP or len(raw) != 32:
        raise BadFile(path, "not an age X25519 identity (AGE-SECRET-KEY-1...)")
    return X25519PrivateKey.from_private_bytes(raw)


class AgeWriter(io.RawIOBase):
    """A write-only file object that encrypts what is written into `sink` as an age file.

    pyarrow's ParquetWriter writes straight into it, so the plaintext extract never touches the disk:
    the bytes go through a pipe to pyrage's streaming encryptor on a helper thread, so memory stays
    bounded by the pipe and age's 64 KiB chunk. Call :meth:`envelope` after :meth:`close`.
    """

    def __init__(self, sink: BinaryIO, to: X25519PublicKey, name: str, plaintext_name: str) -> None:
        super().__init__()
        self._name, self._plaintext_name = name, plaintext_name
        self._plain = hashlib.sha256()
        self._size = 0
        self._error: BaseException | None = None
        read_fd, write_fd = os.pipe()
        self._pipe = os.fdopen(write_fd, "wb")
        target = pyrage.x25519.Recipient.from_str(recipient(to))

        def encrypt() -> None:
            try:
                with os.fdopen(read_fd, "rb") as source:
                    pyrage.encrypt_io(source, sink, [target])  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - handed to the writing thread, which raises it
                self._error = exc

        self._thread = threading.Thread(target=encrypt, name=f"age-{name}", daemon=True)
        self._thread.start()

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        self._plain.update(view)
        self._size += len(view)
        try:
            self._pipe.write(view)
        except BrokenPipeError:
            # The encryptor stopped reading: its own error says why.
            self._finish()
            raise
        return len(view)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._finish()

    def _finish(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # the encryptor already stopped; its error says why
            self._pipe.close()
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise OSError(f"age encryption of {self._name} failed: {error}") from error

    def envelope(self) -> FileEnvelope:
        """The file's envelope (only meaningful once closed)."""
        if not self.closed:
            raise RuntimeError("close the writer before reading its envelope")
        return FileEnvelope(name=self._name, plaintext_name=self._plaintext_name,
                            plaintext_sha256=self._plain.hexdigest(), plaintext_size=self._size)


def decrypt_file(source: Path, target: Path, key: X25519PrivateKey, envelope: FileEnvelope,
                 encryption: ExtractEncryption) -> None:
    """Open `source` into `target` in the extract's format, then check the plaintext SHA-256 and size.

    The plaintext is written to a temporary name and only renamed to `target` once all of it checked
    out, so a failed decryption never leaves a partial file that looks like a delivered one.
    """
    partial = target.with_name(f".{target.name}.partial")
    try:
        if encryption.algorithm == ALGORITHM:
            _decrypt_age(source, partial, key)
        elif encryption.algorithm == legacy_envelope.ALGORITHM and envelope.ephemeral_public_key \
                and envelope.salt and encryption.chunk_size:
            legacy_envelope.decrypt_stream(source, partial, key, envelope.ephemeral_public_key, envelope.salt,
                                           envelope.name, encryption.chunk_size)
        else:
            raise VerificationError(str(source), f"unknown or incomplete extract encryption {encryption.algorithm!r}")
        if partial.stat().st_size != envelope.plaintext_size or file_sha256(partial) != envelope.plaintext_sha256:
            raise VerificationError(str(target), "decrypted content differs from the extract manifest "
                                    "(plaintext SHA-256 mismatch)")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _decrypt_age(source: Path, out: Path, key: X25519PrivateKey) -> None:
    try:
        with source.open("rb") as src, out.open("wb") as sink:
            pyrage.decrypt_io(src, sink, [pyrage.x25519.Identity.from_str(identity(key))])
    except (pyrage.DecryptError, OSError) as exc:
        # pyrage reports a failed payload chunk in decrypt_io as an OSError ("decryption error").
        raise DecryptionFailed(f"{source.name}: does not authenticate (wrong key, or the file was altered or "
                               f"truncated): {exc}") from None
