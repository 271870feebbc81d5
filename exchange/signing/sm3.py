"""SM3 (GB/T 32905-2016, GM/T 0004-2012): the 256-bit hash of the SM2-SM3 signature suite.

OpenSSL 3's default provider has SM3 and hashlib exposes it on most builds; some builds leave it out, so a
pure-Python implementation stands behind it. Both are checked against the standard's vectors in the tests.
"""

from __future__ import annotations

import hashlib
import struct
from functools import cache

DIGEST_SIZE = 32

_IV = (0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600, 0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E)
_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _MASK


# T_j rotated left by j, precomputed once: the compression function needs it every round.
_T = tuple(_rotl(0x79CC4519 if j < 16 else 0x7A879D8A, j) for j in range(64))


def _p0(x: int) -> int:
    return x ^ _rotl(x, 9) ^ _rotl(x, 17)


def _p1(x: int) -> int:
    return x ^ _rotl(x, 15) ^ _rotl(x, 23)


def _compress(v: list[int], block: bytes) -> list[int]:
    w = list(struct.unpack(">16I", block))
    for j in range(16, 68):
        w.append(_p1(w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)) ^ _rotl(w[j - 13], 7) ^ w[j - 6])
    a, b, c, d, e, f, g, h = v
    for j in range(64):
        a12 = _rotl(a, 12)
        ss1 = _rotl((a12 + e + _T[j]) & _MASK, 7)
        ss2 = ss1 ^ a12
        if j < 16:
            ff, gg = a ^ b ^ c, e ^ f ^ g
        else:
            ff, gg = (a & b) | (a & c) | (b & c), (e & f) | (~e & _MASK & g)
        tt1 = (ff + d + ss2 + (w[j] ^ w[j + 4])) & _MASK
        tt2 = (gg + h + ss1 + w[j]) & _MASK
        a, b, c, d = tt1, a, _rotl(b, 9), c
        e, f, g, h = _p0(tt2), e, _rotl(f, 19), g
    return [x ^ y for x, y in zip(v, (a, b, c, d, e, f, g, h), strict=True)]


def sm3_pure(data: bytes) -> bytes:
    """SM3 digest of `data`, in Python (the fallback when OpenSSL lacks SM3)."""
    bits = len(data) * 8
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack(">Q", bits)
    v = list(_IV)
    for i in range(0, len(padded), 64):
        v = _compress(v, padded[i:i + 64])
    return struct.pack(">8I", *v)


@cache
def _openssl_has_sm3() -> bool:
    try:
        return hashlib.new("sm3", b"abc").hexdigest() == (
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        )
    except ValueError:  # not built in, or disabled (e.g. a FIPS-only provider)
        return False


def sm3(data: bytes) -> bytes:
    """SM3 digest of `data` (OpenSSL's when available, else the pure-Python one)."""
    if _openssl_has_sm3():
        return hashlib.new("sm3", data).digest()
    return sm3_pure(data)
