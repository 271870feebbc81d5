"""SM2 digital signatures (GB/T 32918.2-2016 / GM/T 0003.2-2012) with SM3, over Python integers.

OpenSSL 3 can do SM2 but the `cryptography` package does not expose it, and the pure-Python `gmssl`
package draws its nonces from `random`; the arithmetic is small enough to do here, where every nonce
comes from `secrets`. Interoperable formats (GM/T 0009 / 0010, as OpenSSL writes them):

- signature: DER ``SEQUENCE { r INTEGER, s INTEGER }``;
- private key: PKCS#8 PEM, algorithm id-ecPublicKey with parameters OID sm2 (1.2.156.10197.1.301);
- public key: the uncompressed point ``04 || x || y`` (65 bytes), or SubjectPublicKeyInfo PEM.

Python integers are not constant-time: fine for a hub on its own machine, not a side-channel-hardened
module; a deployment that needs GM/T 0028 certification keeps SM2 keys in a certified device instead.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from exchange.signing.sm3 import sm3

# GM/T 0009-2012: the distinguishing identifier used when the parties agreed on none.
DEFAULT_USER_ID = b"1234567812345678"


@dataclass(frozen=True)
class Curve:
    """A prime-field Weierstrass curve y^2 = x^3 + ax + b (mod p) with base point G of prime order n."""

    name: str
    p: int
    a: int
    b: int
    n: int
    gx: int
    gy: int

    @property
    def size(self) -> int:
        """Bytes per field element (coordinates are written with this fixed length)."""
        return (self.p.bit_length() + 7) // 8

    def contains(self, x: int, y: int) -> bool:
        """Whether (x, y) is an affine point of the curve."""
        return 0 <= x < self.p and 0 <= y < self.p and (y * y - x * x * x - self.a * x - self.b) % self.p == 0


# GB/T 32918.5-2017: the recommended 256-bit curve ("sm2p256v1"), the only one the hub issues keys on.
SM2P256 = Curve(
    name="sm2p256v1",
    p=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFF,
    a=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFC,
    b=0x28E9FA9E_9D9F5E34_4D5A9E4B_CF6509A7_F39789F5_15AB8F92_DDBCBD41_4D940E93,
    n=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_7203DF6B_21C6052B_53BBF409_39D54123,
    gx=0x32C4AE2C_1F198119_5F990446_6A39C994_8FE30BBF_F2660BE1_715A4589_334C74C7,
    gy=0xBC3736A2_F4F6779C_59BDCEE3_6B692153_D0A9877C_C62A4740_02DF32E5_2139F0A0,
)

# -- point arithmetic in Jacobian coordinates (X, Y, Z) ~ (X/Z^2, Y/Z^3); Z == 0 is the point at infinity --

_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (1, 1, 0)


def _double(c: Curve, pt: _Jacobian) -> _Jacobian:
    x, y, z = pt
    if z == 0 or y == 0:
        return _INFINITY
    p = c.p
    yy = y * y % p
    s = 4 * x * yy % p
    m = (3 * x * x + c.a * pow(z, 4, p)) % p
    x3 = (m * m - 2 * s) % p
    return x3, (m * (s - x3) - 8 * yy * yy) % p, 2 * y * z % p


def _add(c: Curve, p1: _Jacobian, p2: _Jacobian) -> _Jacobian:
    if p1[2] == 0:
        return p2
    if p2[2] == 0:
        return p1
    p = c.p
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    z1z1, z2z2 = z1 * z1 % p, z2 * z2 % p
    u1, u2 = x1 * z2z2 % p, x2 * z1z1 % p
    s1, s2 = y1 * z2 * z2z2 % p, y2 * z1 * z1z1 % p
    if u1 == u2:
        return _double(c, p1) if s1 == s2 else _INFINITY
    h, r = (u2 - u1) % p, (s2 - s1) % p
    hh = h * h % p
    hhh, v = h * hh % p, u1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    return x3, (r * (v - x3) - s1 * hhh) % p, h * z1 * z2 % p


def _affine(c: Curve, pt: _Jacobian) -> tuple[int, int] | None:
    x, y, z = pt
    if z == 0:
        return None
    zi = pow(z, -1, c.p)
    zi2 = zi * zi % c.p
    return x * zi2 % c.p, y * zi2 * zi % c.p


def _multiply(c: Curve, k: int, x: int, y: int) -> tuple[int, int] | None:
    """k * (x, y) by a Montgomery ladder: the same add/double sequence for every k of the curve's size."""
    r0, r1 = _INFINITY, (x, y, 1)
    for i in reversed(range(c.n.bit_length())):
        if (k >> i) & 1:
            r0, r1 = _add(c, r0, r1), _double(c, r1)
        else:
            r1, r0 = _add(c, r0, r1), _double(c, r0)
    return _affine(c, r0)


def _multiply_two(c: Curve, u: int, v: int, qx: int, qy: int) -> tuple[int, int] | None:
    """u*G + v*Q in one pass (Shamir's trick); only ever used on public values, in verification."""
    g, q = (c.gx, c.gy, 1), (qx, qy, 1)
    gq = _add(c, g, q)
    acc = _INFINITY
    for i in reversed(range(max(u.bit_length(), v.bit_length()))):
        acc = _double(c, acc)
        pick = ((u >> i) & 1, (v >> i) & 1)
        if pick == (1, 1):
            acc = _add(c, acc, gq)
        elif pick == (1, 0):
            acc = _add(c, acc, g)
        elif pick == (0, 1):
            acc = _add(c, acc, q)
    return _affine(c, acc)


# -- keys, Z_A, sign, verify ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SM2PublicKey:
    """A public key: a point of the curve other than infinity."""

    x: int
    y: int
    curve: Curve = SM2P256

    def __post_init__(self) -> None:
        # The curves used here have cofactor 1, so a point on the curve is in the group of order n.
        if not self.curve.contains(self.x, self.y):
            raise ValueError("not a point of the curve: not an SM2 public key")

    @classmethod
    def from_bytes(cls, raw: bytes, curve: Curve = SM2P256) -> SM2PublicKey:
        """Decode the uncompressed point 04 || x || y."""
        size = curve.size
        if len(raw) != 1 + 2 * size or raw[0] != 4:
            raise ValueError(f"an SM2 public key is 04 || x || y ({1 + 2 * size} bytes)")
        return cls(int.from_bytes(raw[1:1 + size]), int.from_bytes(raw[1 + size:]), curve)

    def to_bytes(self) -> bytes:
        """The uncompressed point 04 || x || y."""
        size = self.curve.size
        return b"\x04" + self.x.to_bytes(size) + self.y.to_bytes(size)

    def z(self, user_id: bytes) -> bytes:
        """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA): binds the signer's identity to the digest."""
        bits = len(user_id) * 8
        if bits > 0xFFFF:
            raise ValueError("an SM2 user ID is at most 8191 bytes (ENTL is 16 bits)")
        c, size = self.curve, self.curve.size
        parts = (c.a, c.b, c.gx, c.gy, self.x, self.y)
        return sm3(bits.to_bytes(2) + user_id + b"".join(v.to_bytes(size) for v in parts))

    def verify(self, message: bytes, r: int, s: int, user_id: bytes = DEFAULT_USER_ID) -> bool:
        """GB/T 32918.2 section 7: whether (r, s) is this key's signature of `message` under `user_id`."""
        n = self.curve.n
        if not (1 <= r < n and 1 <= s < n):  # B1, B2
            return False
        e = int.from_bytes(sm3(self.z(user_id) + message))  # B3, B4
        t = (r + s) % n  # B5
        if t == 0:
            return False
        point = _multiply_two(self.curve, s, t, self.x, self.y)  # B6
        return point is not None and (e + point[0]) % n == r  # B7

    def verify_der(self, message: bytes, signature: bytes, user_id: bytes = DEFAULT_USER_ID) -> bool:
        """Like verify(), for a DER-encoded signature; a malformed encoding is simply not a signature."""
        try:
            r, s = decode_signature(signature)
        except ValueError:
            return False
        return self.verify(message, r, s, user_id)

    def to_pem(self) -> str:
        """SubjectPublicKeyInfo PEM, as `openssl pkey -pubout` writes it (for offline checks with openssl)."""
        bits = _tlv(0x03, b"\x00" + self.to_bytes())
        return _pem("PUBLIC KEY", _tlv(0x30, _ALGORITHM_ID + bits))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SM2PublicKey:
        """Read SubjectPublicKeyInfo PEM of an SM2 key (ours or `openssl pkey -pubout`'s)."""
        info = _children(_expect(_unpem(pem, "PUBLIC KEY"), 0x30))
        if len(info) != 2 or info[0] != (0x30, _ALGORITHM_ID[2:]) or info[1][0] != 0x03 or info[1][1][:1] != b"\x00":
            raise ValueError("not an SM2 public key (algorithm must be id-ecPublicKey with curve sm2)")
        return cls.from_bytes(info[1][1][1:])


def _random_nonce(n: int) -> int:
    return secrets.randbelow(n - 1) + 1  # uniform in [1, n-1], from the OS CSPRNG


@dataclass(frozen=True)
class SM2PrivateKey:
    """A private key d in [1, n-2] (1 + d must be invertible mod n)."""

    d: int = field(repr=False)
    curve: Curve = SM2P256

    def __post_init__(self) -> None:
        if not 1 <= self.d <= self.curve.n - 2:
            raise ValueError("an SM2 private key is an integer in [1, n-2]")

    @classmethod
    def generate(cls, curve: Curve = SM2P256) -> SM2PrivateKey:
        """A fresh key from the OS CSPRNG."""
        return cls(secrets.randbelow(curve.n - 2) + 1, curve)

    @cached_property
    def _public(self) -> SM2PublicKey:
        point = _multiply(self.curve, self.d, self.curve.gx, self.curve.gy)
        assert point is not None  # d < n, so dG is never infinity
        return SM2PublicKey(point[0], point[1], self.curve)

    def public_key(self) -> SM2PublicKey:
        """The matching public key dG (computed once per key)."""
        return self._public

        point = _multiply(self.curve, self.d, self.curve.gx, self.curve.gy)
        assert point is not None  # d < n, so dG is never infinity
        return SM2PublicKey(point[0], point[1], self.curve)

    def sign(self, message: bytes, user_id: bytes = DEFAULT_USER_ID,
             nonce: Callable[[int], int] | None = None) -> tuple[int, int]:
        """GB/T 32918.2 section 6: sign `message` as `user_id`; returns (r, s).

        Each k comes from `secrets`. `nonce` exists only to replay the standard's worked example: an injected
        k that the standard would reject (r = 0, r + k = n, s = 0) raises instead of being retried.
        """
        c, d = self.curve, self.d
        e = int.from_bytes(sm3(self.public_key().z(user_id) + message))  # A1, A2
        while True:
            k = nonce(c.n) if nonce is not None else _random_nonce(c.n)  # A3
            if not 1 <= k < c.n:
                raise ValueError("nonce k must be in [1, n-1]")
            point = _multiply(c, k, c.gx, c.gy)  # A4
            assert point is not None
            r = (e + point[0]) % c.n  # A5
            s = pow(1 + d, -1, c.n) * (k - r * d) % c.n if r != 0 and r + k != c.n else 0  # A6
            if s != 0:
                return r, s
            if nonce is not None:
                raise ValueError("the injected nonce gives r = 0, r + k = n or s = 0: the standard rejects it")

    def sign_der(self, message: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
        """sign(), DER-encoded as GM/T 0009's SM2Signature."""
        return encode_signature(*self.sign(message, user_id))

    def to_pem(self) -> str:
        """Unencrypted PKCS#8 PEM, as `openssl genpkey -algorithm SM2` writes it (the caller stores it 0600)."""
        if self.curve is not SM2P256:
            raise ValueError("only keys on the recommended curve have a PKCS#8 form")
        size = self.curve.size
        public = _tlv(0xA1, _tlv(0x03, b"\x00" + self.public_key().to_bytes()))
        ec_private = _tlv(0x30, _tlv(0x02, b"\x01") + _tlv(0x04, self.d.to_bytes(size)) + public)
        return _pem("PRIVATE KEY", _tlv(0x30, _tlv(0x02, b"\x00") + _ALGORITHM_ID + _tlv(0x04, ec_private)))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SM2PrivateKey:
        """Read an unencrypted PKCS#8 SM2 key (ours or OpenSSL's); checks the embedded public key if present."""
        der = _unpem(pem, "PRIVATE KEY")
        info = _children(_expect(der, 0x30))
        if len(info) < 3 or info[0] != (0x02, b"\x00") or info[1] != (0x30, _ALGORITHM_ID[2:]):
            raise ValueError("not a PKCS#8 SM2 private key (algorithm must be id-ecPublicKey with curve sm2)")
        fields = _children(_expect(_expect_tag(info[2], 0x04), 0x30))
        if len(fields) < 2 or fields[0] != (0x02, b"\x01") or fields[1][0] != 0x04:
            raise ValueError("not an ECPrivateKey (RFC 5915)")
        key = cls(int.from_bytes(fields[1][1]))
        for tag, value in fields[2:]:
            if tag == 0xA0 and _children(value) != [(0x06, _SM2_OID)]:
                raise ValueError("ECPrivateKey parameters name a curve other than sm2")
            if tag == 0xA1:
                bits = _expect(value, 0x03)
                if bits[:1] != b"\x00" or SM2PublicKey.from_bytes(bits[1:]) != key.public_key():
                    raise ValueError("the PKCS#8 key's public key does not match its private key")
        return key


# -- DER and PEM, just the shapes SM2 keys and signatures need -----------------------------------------------

_EC_PUBLIC_KEY_OID = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
_SM2_OID = bytes.fromhex("2a811ccf5501822d")  # 1.2.156.10197.1.301
_ALGORITHM_ID = bytes.fromhex("3013") + b"\x06\x07" + _EC_PUBLIC_KEY_OID + b"\x06\x08" + _SM2_OID


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8)
    return bytes([tag]) + length + value


def _read(der: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, value, next offset) of the element at `at`; only minimal DER lengths are accepted."""
    if at + 2 > len(der):
        raise ValueError("truncated DER")
    tag, first = der[at], der[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or at + count > len(der) or der[at] == 0:
            raise ValueError("bad DER length")
        length = int.from_bytes(der[at:at + count])
        if length < 0x80:
            raise ValueError("non-minimal DER length")
        at += count
    if at + length > len(der):
        raise ValueError("truncated DER")
    return tag, der[at:at + length], at + length


def _children(der: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(der):
        tag, value, at = _read(der, at)
        out.append((tag, value))
    return out


def _expect(der: bytes, tag: int) -> bytes:
    got, value, end = _read(der, 0)
    if got != tag or end != len(der):
        raise ValueError(f"expected one DER element with tag {tag:#x}")
    return value


def _expect_tag(element: tuple[int, bytes], tag: int) -> bytes:
    if element[0] != tag:
        raise ValueError(f"expected DER tag {tag:#x}, found {element[0]:#x}")
    return element[1]


def _der_uint(value: bytes) -> int:
    if not value or value[0] & 0x80 or (len(value) > 1 and value[0] == 0 and not value[1] & 0x80):
        raise ValueError("not a minimal non-negative DER INTEGER")
    return int.from_bytes(value)


def encode_signature(r: int, s: int) -> bytes:
    """DER SEQUENCE { r INTEGER, s INTEGER } (GM/T 0009 SM2Signature)."""
    def integer(v: int) -> bytes:
        return _tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1))  # the extra byte keeps the sign bit clear
    return _tlv(0x30, integer(r) + integer(s))


def decode_signature(der: bytes) -> tuple[int, int]:
    """(r, s) from a strict DER SM2Signature; anything else raises ValueError."""
    items = _children(_expect(der, 0x30))
    if len(items) != 2:
        raise ValueError("an SM2 signature is a SEQUENCE of two INTEGERs")
    return _der_uint(_expect_tag(items[0], 0x02)), _der_uint(_expect_tag(items[1], 0x02))


def _pem(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _unpem(pem: str | bytes, label: str) -> bytes:
    text = pem.decode("ascii") if isinstance(pem, bytes) else pem
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if begin not in text or end not in text:
        raise ValueError(f"not a PEM {label}")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    return base64.b64decode("".join(body.split()), validate=True)
