"""Reader for extracts published before the age format: X25519-HKDF-SHA256-AES-256-GCM-STREAM.

The hub no longer writes this format (it writes age, see exchange.access.envelope), but extracts already
delivered in it must still open. Each file had a fresh ephemeral X25519 key; HKDF-SHA256 (info = label ||
ephemeral key || recipient key || file name) gave the AES-256-GCM key; the plaintext was sealed in
fixed-size chunks with nonce = 11-byte big-endian chunk index || 1-byte last-chunk flag (the STREAM
construction), so reordered, dropped, repeated or truncated chunks fail authentication.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exchange.errors import CheckFailed

ALGORITHM = "X25519-HKDF-SHA256-AES-256-GCM-STREAM"
TAG_SIZE = 16
INFO = b"yrd-exchange extract file v1"


class DecryptionFailed(CheckFailed):
    """The ciphertext does not open with this key (wrong key, or the file was altered)."""


def raw_public(public: X25519PublicKey) -> bytes:
    """The raw 32 bytes of an X25519 public key."""
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def file_key(shared: bytes, salt: bytes, ephemeral: bytes, recipient: bytes, name: str) -> AESGCM:
    """The AES-256-GCM key of one file (the HKDF info binds both keys and the ciphertext file name)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                info=INFO + b"\0" + ephemeral + recipient + name.encode())
    return AESGCM(hkdf.derive(shared))


def nonce(index: int, last: bool) -> bytes:
    """The STREAM nonce of chunk `index`."""
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def decrypt_stream(source: Path, out: Path, key: X25519PrivateKey, ephemeral_b64: str, salt_b64: str,
                   name: str, chunk_size: int) -> None:
    """Open the legacy ciphertext `source` into `out`, checking every chunk's tag (DecryptionFailed if one fails)."""
    ephemeral = base64.b64decode(ephemeral_b64)
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    except ValueError:
        raise DecryptionFailed(f"{source.name}: invalid ephemeral key in the envelope") from None
    aead = file_key(shared, base64.b64decode(salt_b64), ephemeral, raw_public(key.public_key()), name)
    with source.open("rb") as src, out.open("wb") as sink:
        sealed = chunk_size + TAG_SIZE
        current = src.read(sealed)
        index = 0
        while True:
            following = src.read(sealed)
            last = not following
            try:
                sink.write(aead.decrypt(nonce(index, last), current, None))
            except InvalidTag:
                raise DecryptionFailed(f"{source.name}: chunk {index} does not authenticate (wrong key, or "
                                       "the file was altered or truncated)") from None
            if last:
                return
            current, index = following, index + 1
