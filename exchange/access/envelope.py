"""Extract encryption to a department's X25519 key: ephemeral-static ECDH, HKDF-SHA256, chunked AES-256-GCM.

Each file gets a fresh ephemeral X25519 key, so each file key is used once and the nonces can be
deterministic. The plaintext is cut into fixed-size chunks sealed in order (the STREAM construction of
Hoang et al.): nonce = 11-byte chunk counter || 1-byte "last chunk" flag. Reordered, dropped, repeated
or truncated chunks fail authentication, and memory stays bounded by one chunk, whatever the size of
the extract. The hub never needs the department's private key; the department never needs the hub's.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, Field

from exchange.errors import BadFile, CheckFailed, VerificationError
from exchange.signing.canonical import sha256_hex

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

ALGORITHM = "X25519-HKDF-SHA256-AES-256-GCM-STREAM"
CHUNK_SIZE = 1 << 20
TAG_SIZE = 16
SALT_SIZE = 16
_INFO = b"yrd-exchange extract file v1"


class FileEnvelope(BaseModel, frozen=True):
    """How one delivered file was encrypted and what it holds once decrypted."""

    name: str = Field(description="Ciphertext file name (as listed in the manifest's files)")
    plaintext_name: str = Field(description="File name after decryption")
    plaintext_sha256: str = Field(description="Hex SHA-256 of the decrypted bytes")
    plaintext_size: int = Field(description="Size of the decrypted file in bytes")
    ephemeral_public_key: str = Field(description="Base64 raw X25519 public key of the hub's one-time key for "
                                                  "this file")
    salt: str = Field(description="Base64 HKDF salt (16 random bytes)")


class ExtractEncryption(BaseModel, frozen=True):
    """The envelope parameters of an encrypted extract (everything but the recipient's private key)."""

    algorithm: str = Field(description=f"Always {ALGORITHM}: X25519 ECDH (ephemeral-static), HKDF-SHA256 "
                                       "(info = label || ephemeral key || recipient key || file name), "
                                       "AES-256-GCM over fixed-size chunks, nonce = 11-byte big-endian chunk "
                                       "index || 1-byte last-chunk flag")
    recipient_key_id: str = Field(description="x25519:<first 32 hex of SHA-256 of the recipient's raw public key>")
    chunk_size: int = Field(description="Plaintext bytes per chunk (each ciphertext chunk is 16 bytes longer)")
    files: list[FileEnvelope] = Field(description="One envelope per delivered file")


class DecryptionFailed(CheckFailed):
    """The ciphertext does not open with this key (wrong key, or the file was altered)."""


def key_id(public: X25519PublicKey) -> str:
    """The fingerprint that names a department's extract key."""
    return f"x25519:{sha256_hex(_raw(public))[:32]}"


def public_key_b64(public: X25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key (what the department registry stores)."""
    return base64.b64encode(_raw(public)).decode()


def parse_public_key(value: str) -> X25519PublicKey:
    """An X25519 public key from base64 raw bytes, or ValueError saying what is wrong."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise ValueError("extract public key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"extract public key must be 32 raw X25519 bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def generate_private_key() -> X25519PrivateKey:
    """A new department extract key."""
    return X25519PrivateKey.generate()


def write_private_key(key: X25519PrivateKey, path: Path) -> None:
    """Store the key as unencrypted PKCS#8 PEM, readable by its owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # O_EXCL: never overwrite an existing key (that would make its extracts unreadable).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def load_private_key(path: Path) -> X25519PrivateKey:
    """A department's X25519 private key from a PEM file, or BadFile if it is not one."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BadFile(path, f"cannot read an X25519 private key: {exc}") from None
    if not isinstance(key, X25519PrivateKey):
        raise BadFile(path, f"holds a {type(key).__name__}, not an X25519 extract key")
    return key


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _file_key(shared: bytes, salt: bytes, ephemeral: bytes, recipient: bytes, name: str) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                info=_INFO + b"\0" + ephemeral + recipient + name.encode())
    return AESGCM(hkdf.derive(shared))


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class EncryptingWriter(io.RawIOBase):
    """A write-only file object that seals what is written into `sink`, chunk by chunk.

    pyarrow's ParquetWriter writes straight into it, so the plaintext extract never touches the disk.
    Call :meth:`envelope` after :meth:`close` for the parameters and digests to put in the manifest.
    """

    def __init__(self, sink: BinaryIO, recipient: X25519PublicKey, name: str, plaintext_name: str,
                 chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__()
        ephemeral = X25519PrivateKey.generate()
        self._salt = os.urandom(SALT_SIZE)
        self._ephemeral = _raw(ephemeral.public_key())
        self._aead = _file_key(ephemeral.exchange(recipient), self._salt, self._ephemeral, _raw(recipient), name)
        self._sink = sink
        self._name, self._plaintext_name, self._chunk = name, plaintext_name, chunk_size
        self._buffer = bytearray()
        self._index = 0
        self._plain = hashlib.sha256()
        self._size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        self._plain.update(view)
        self._size += len(view)
        self._buffer += view
        # Keep at least one byte back: the last chunk must be sealed with the last flag, and only close()
        # knows which chunk is last.
        while len(self._buffer) > self._chunk:
            self._seal(bytes(self._buffer[:self._chunk]), last=False)
            del self._buffer[:self._chunk]
        return len(view)

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._sink.flush()
        super().close()

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        self._sink.write(self._aead.encrypt(_nonce(self._index, last), chunk, None))
        self._index += 1

    def envelope(self) -> FileEnvelope:
        """The file's envelope (only meaningful once closed)."""
        if not self.closed:
            raise RuntimeError("close the writer before reading its envelope")
        return FileEnvelope(name=self._name, plaintext_name=self._plaintext_name,
                            plaintext_sha256=self._plain.hexdigest(), plaintext_size=self._size,
                            ephemeral_public_key=base64.b64encode(self._ephemeral).decode(),
                            salt=base64.b64encode(self._salt).decode())


def decrypt_file(source: Path, target: Path, key: X25519PrivateKey, envelope: FileEnvelope,
                 chunk_size: int) -> None:
    """Open `source` into `target`, checking every chunk's tag and then the plaintext SHA-256 and size.

    The plaintext is written to a temporary name and only renamed to `target` once all of it checked
    out, so a failed decryption never leaves a partial file that looks like a delivered one.
    """
    ephemeral = base64.b64decode(envelope.ephemeral_public_key)
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    except ValueError:
        raise DecryptionFailed(f"{source.name}: invalid ephemeral key in the envelope") from None
    aead = _file_key(shared, base64.b64decode(envelope.salt), ephemeral, _raw(key.public_key()), envelope.name)
    partial = target.with_name(f".{target.name}.partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with source.open("rb") as src, partial.open("wb") as out:
            sealed = chunk_size + TAG_SIZE
            current = src.read(sealed)
            index = 0
            while True:
                following = src.read(sealed)
                last = not following
                try:
                    plain = aead.decrypt(_nonce(index, last), current, None)
                except InvalidTag:
                    raise DecryptionFailed(f"{source.name}: chunk {index} does not authenticate (wrong key, or "
                                           "the file was altered or truncated)") from None
                digest.update(plain)
                size += len(plain)
                out.write(plain)
                if last:
                    break
                current, index = following, index + 1
        if size != envelope.plaintext_size or digest.hexdigest() != envelope.plaintext_sha256:
            raise VerificationError(str(target), "decrypted content differs from the extract manifest "
                                    "(plaintext SHA-256 mismatch)")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
