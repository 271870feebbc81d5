"""The writer of the hub's pre-age extract format (X25519-HKDF-SHA256-AES-256-GCM-STREAM), kept for tests only.

The hub now writes age files; this makes extracts in the old format so the reader that still opens
already-published ones stays tested.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from typing import TYPE_CHECKING, BinaryIO

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from exchange.access.envelope import FileEnvelope
from exchange.access.legacy_envelope import file_key, nonce, raw_public

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class LegacyWriter(io.RawIOBase):
    """Seals what is written into `sink` chunk by chunk, as the hub did before age."""

    def __init__(self, sink: BinaryIO, recipient: X25519PublicKey, name: str, plaintext_name: str,
                 chunk_size: int) -> None:
        super().__init__()
        ephemeral = X25519PrivateKey.generate()
        self._salt = os.urandom(16)
        self._ephemeral = raw_public(ephemeral.public_key())
        self._aead = file_key(ephemeral.exchange(recipient), self._salt, self._ephemeral, raw_public(recipient), name)
        self._sink = sink
        self._name, self._plaintext_name, self._chunk = name, plaintext_name, chunk_size
        self._buffer = bytearray()
        self._index = 0
        self._plain = hashlib.sha256()
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        self._plain.update(view)
        self._size += len(view)
        self._buffer += view
        while len(self._buffer) > self._chunk:
            self._seal(bytes(self._buffer[:self._chunk]), last=False)
            del self._buffer[:self._chunk]
        return len(view)

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), last=True)
            self._sink.flush()
        super().close()

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        self._sink.write(self._aead.encrypt(nonce(self._index, last), chunk, None))
        self._index += 1

    def envelope(self) -> FileEnvelope:
        """The file's envelope, with the legacy fields."""
        return FileEnvelope(name=self._name, plaintext_name=self._plaintext_name,
                            plaintext_sha256=self._plain.hexdigest(), plaintext_size=self._size,
                            ephemeral_public_key=base64.b64encode(self._ephemeral).decode(),
                            salt=base64.b64encode(self._salt).decode())
