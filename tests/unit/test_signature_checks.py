"""Signers and the check of one signature (exchange/signing/signers.py), as a verifier relies on them: which
algorithm a name means, what a key id is, keys that load as what they are and nothing else, and signatures that
hold only over their own bytes, key and (SM2) user ID. Written against the mutants `make mutation` found
unchecked; hashlib and the key objects are the independent side."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.errors import VerificationError
from exchange.signing.signers import (
    ED25519,
    SM2_SM3,
    Ed25519Signer,
    Signature,
    SM2Signer,
    algorithm_name,
    generate,
    key_id,
    key_id_for,
    load_signer,
    signature_valid,
)
from exchange.signing.sm2 import DEFAULT_USER_ID, SM2PrivateKey

DATA = b'{"batch_id":"jiangsu.e_license.20261101T000000Z-20261104T000000Z"}'


@pytest.mark.parametrize(("spelled", "meant"), [
    ("ed25519", ED25519), ("Ed25519", ED25519), (" ED25519\n", ED25519),
    ("sm2", SM2_SM3), ("SM2", SM2_SM3), ("SM2-SM3", SM2_SM3), ("  sm2-sm3 ", SM2_SM3),
])
def test_an_algorithm_is_named_in_any_case_and_spacing(spelled: str, meant: str) -> None:
    assert algorithm_name(spelled) == meant


def test_an_unknown_algorithm_is_refused_naming_it_and_the_choices() -> None:
    with pytest.raises(ValueError) as caught:
        algorithm_name("rsa")
    assert str(caught.value) == "unknown signature algorithm 'rsa': use ed25519 or sm2"


@pytest.mark.parametrize("algorithm", [ED25519, SM2_SM3])
def test_a_key_id_is_the_lowercase_algorithm_and_32_hex_of_the_keys_sha256(algorithm: str) -> None:
    signer = generate(algorithm, "hub")
    raw = signer.public_bytes()
    expected = f"{algorithm.lower()}:{hashlib.sha256(raw).hexdigest()[:32]}"
    assert key_id(algorithm, raw) == signer.key_id == expected
    assert signer.sign(DATA).key_id == expected


def test_an_ed25519_key_id_names_its_raw_32_byte_public_key() -> None:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(raw) == 32
    assert key_id_for(private.public_key()) == f"ed25519:{hashlib.sha256(raw).hexdigest()[:32]}"


@pytest.mark.parametrize(("asked", "kind", "algorithm"), [
    ("ed25519", Ed25519Signer, ED25519), ("sm2", SM2Signer, SM2_SM3), ("SM2-SM3", SM2Signer, SM2_SM3),
])
def test_a_generated_key_is_of_the_algorithm_asked_for_and_its_owners(asked: str, kind: type, algorithm: str) -> None:
    first, second = generate(asked, "jiangsu.data_office"), generate(asked, "jiangsu.data_office")
    assert isinstance(first, kind)
    assert first.algorithm == algorithm and first.owner == "jiangsu.data_office"
    assert first.key_id != second.key_id  # fresh keys, not a fixed one
    assert signature_valid(algorithm, first.public_bytes(), first.sign(DATA), DATA)


@pytest.mark.parametrize("algorithm", [ED25519, SM2_SM3])
def test_a_stored_private_key_loads_as_the_same_signer(tmp_path: Path, algorithm: str) -> None:
    signer = generate(algorithm, "anhui.data_office")
    path = tmp_path / "key.pem"
    path.write_bytes(signer.private_pem())
    loaded = load_signer(path, algorithm, "anhui.data_office")
    assert type(loaded) is type(signer)
    assert (loaded.key_id, loaded.owner, loaded.algorithm) == (signer.key_id, "anhui.data_office", algorithm)
    assert signature_valid(algorithm, signer.public_bytes(), loaded.sign(DATA), DATA)


def _ec_p256_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.mark.parametrize(("stored", "claimed", "problem"), [
    (SM2_SM3, ED25519, "not an Ed25519 private key"),  # a curve cryptography cannot even read
    ("P-256", ED25519, "not an Ed25519 private key"),  # a key cryptography reads, of another kind
    (ED25519, SM2_SM3, "not an SM2 private key: "),
])
def test_a_private_key_of_another_algorithm_is_refused_naming_its_file(
    tmp_path: Path, stored: str, claimed: str, problem: str
) -> None:
    path = tmp_path / "keys" / "hub.pem"
    path.parent.mkdir()
    path.write_bytes(_ec_p256_pem() if stored == "P-256" else generate(stored, "hub").private_pem())
    with pytest.raises(VerificationError) as caught:
        load_signer(path, claimed, "hub")
    assert caught.value.item == str(path)
    assert caught.value.problem == problem if problem.endswith("key") else caught.value.problem.startswith(problem)


def test_an_ed25519_signature_carries_no_user_id_and_an_sm2_one_carries_its_signers() -> None:
    ed = generate(ED25519, "hub").sign(DATA)
    assert ed.algorithm == ED25519 and ed.user_id is None and "user_id" not in ed.model_dump()
    assert len(base64.b64decode(ed.value)) == 64
    sm2 = generate(SM2_SM3, "hub").sign(DATA)
    assert sm2.algorithm == SM2_SM3 and sm2.user_id == DEFAULT_USER_ID.decode()
    custom = SM2Signer(SM2PrivateKey.generate(), "zhejiang.data_office", user_id="ZJ-OFFICE")
    signed = custom.sign(DATA)
    assert signed.user_id == "ZJ-OFFICE" and signature_valid(SM2_SM3, custom.public_bytes(), signed, DATA)


@pytest.mark.parametrize("algorithm", [ED25519, SM2_SM3])
def test_a_signature_holds_only_over_its_bytes_and_under_its_key(algorithm: str) -> None:
    signer, other = generate(algorithm, "hub"), generate(algorithm, "hub")
    signature = signer.sign(DATA)
    assert signature_valid(algorithm, signer.public_bytes(), signature, DATA) is True
    assert signature_valid(algorithm, signer.public_bytes(), signature, DATA + b" ") is False
    assert signature_valid(algorithm, other.public_bytes(), signature, DATA) is False


def test_a_user_id_added_to_an_ed25519_signature_or_dropped_from_an_sm2_one_fails() -> None:
    ed = generate(ED25519, "hub")
    added = ed.sign(DATA).model_copy(update={"user_id": DEFAULT_USER_ID.decode()})
    assert signature_valid(ED25519, ed.public_bytes(), added, DATA) is False
    sm2 = generate(SM2_SM3, "hub")
    signed = sm2.sign(DATA)
    assert signature_valid(SM2_SM3, sm2.public_bytes(), signed.model_copy(update={"user_id": None}), DATA) is False
    other_id = signed.model_copy(update={"user_id": "someone-else"})
    assert signature_valid(SM2_SM3, sm2.public_bytes(), other_id, DATA) is False


def test_verification_dispatches_on_the_algorithm_given_not_the_signatures_word() -> None:
    ed = generate(ED25519, "hub")
    lying = Signature(key_id=ed.key_id, algorithm=SM2_SM3, value=ed.sign(DATA).value)
    assert signature_valid(ED25519, ed.public_bytes(), lying, DATA) is True
    assert signature_valid(SM2_SM3, ed.public_bytes(), ed.sign(DATA), DATA) is False


def test_an_unsupported_algorithm_is_an_error_naming_it_not_a_verdict() -> None:
    ed = generate(ED25519, "hub")
    with pytest.raises(ValueError) as caught:
        signature_valid("rsa-pss", ed.public_bytes(), ed.sign(DATA), DATA)
    assert str(caught.value) == "unsupported algorithm rsa-pss"
