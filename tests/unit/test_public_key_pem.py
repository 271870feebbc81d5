"""Public keys in and out of PEM (signers.public_key_from_pem / public_key_pem), which decide which keys a
province or department may register: Ed25519 and SM2 only, byte for byte (found unchecked by `make mutation`)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.signing.signers import ED25519, SM2_SM3, public_key_from_pem, public_key_pem
from exchange.signing.sm2 import SM2PrivateKey


def _ed25519_raw(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@settings(max_examples=25, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_an_ed25519_key_round_trips_through_pem(seed: bytes) -> None:
    raw = _ed25519_raw(seed)
    pem = public_key_pem(ED25519, raw)
    assert pem is not None and pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert public_key_from_pem(pem.encode("ascii")) == (ED25519, raw)


def test_an_sm2_key_round_trips_through_pem() -> None:
    raw = SM2PrivateKey.generate().public_key().to_bytes()
    pem = public_key_pem(SM2_SM3, raw)
    assert pem is not None and pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert public_key_from_pem(pem.encode("ascii")) == (SM2_SM3, raw)


def test_an_unknown_algorithm_has_no_pem() -> None:
    assert public_key_pem("rsa-pss", b"\0" * 32) is None


def test_another_kind_of_key_is_refused_by_name() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError) as caught:
        public_key_from_pem(pem)
    assert str(caught.value) == "an ECPublicKey key: the hub trusts Ed25519 and SM2 keys only"


def test_not_a_pem_at_all() -> None:
    with pytest.raises(ValueError, match=r"^not a PEM public key \(.+\)$"):
        public_key_from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
