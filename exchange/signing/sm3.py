"""SM3 (GB/T 32905-2016, GM/T 0004-2012): the 256-bit hash of the SM2-SM3 signature suite.

From `cryptography` (``hashes.SM3``, in the OpenSSL it bundles), so it does not depend on how the
system's OpenSSL was built; checked against the standard's vectors in the tests.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

DIGEST_SIZE = 32


def sm3(data: bytes) -> bytes:
    """SM3 digest of `data`."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()
