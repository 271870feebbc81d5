"""The keyring: owners, rotation, revocation, and the hub-signed trust bundle."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.errors import VerificationError
from exchange.signing.keyring import Keyring
from exchange.signing.rotation import revoke, rotate
from exchange.signing.trust import TrustBundle, TrustedKey, record_of, verify_bundle, verify_signature

DATA = b"canonical bytes of some manifest"


def _create(keys_dir: str, owner: str) -> None:
    Keyring(Path(keys_dir)).signer(owner)


def test_every_owner_gets_a_0600_key_and_the_bundle_is_hub_signed(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    province = keyring.signer("jiangsu.data_office")
    department = keyring.signer("js.public_security")
    bundle = keyring.trust_bundle()
    owners = {k.owner for k in bundle.keys}
    assert owners == {"hub", "jiangsu.data_office", "js.public_security"}
    for owner in owners:
        assert (tmp_path / "keys" / f"{owner}.ed25519.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert all(k.status == "active" and k.algorithm == "ed25519" and k.not_after > k.not_before for k in bundle.keys)
    verify_bundle(bundle)
    assert bundle.signature is not None and bundle.key(bundle.signature.key_id).owner == "hub"
    assert keyring.signer("jiangsu.data_office").key_id == province.key_id != department.key_id


def test_owner_names_cannot_escape_the_keys_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid key owner"):
        Keyring(tmp_path / "keys").signer("../../etc/passwd")


def test_rotation_hands_over_and_old_signatures_stay_valid(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    old = keyring.signer()
    before = datetime.now(UTC)
    old_signature = old.sign(DATA)
    new_record = rotate(keyring, "hub")
    new = keyring.signer()
    assert new.key_id == new_record.key_id != old.key_id
    bundle = keyring.trust_bundle()
    assert bundle.key(old.key_id).status == "retired"
    assert bundle.key(old.key_id).not_after == new_record.not_before
    verify_signature(bundle, old_signature, DATA, before, "made before the rotation")
    with pytest.raises(VerificationError, match="outside the validity"):
        verify_signature(bundle, old.sign(DATA), DATA, datetime.now(UTC) + timedelta(seconds=1), "made after")
    verify_signature(bundle, new.sign(DATA), DATA, datetime.now(UTC), "new key")
    # The new key is endorsed by the old one, so a verifier that pinned the old hub key follows the hand-over.
    assert new_record.endorsement is not None and new_record.endorsement.key_id == old.key_id
    exported = keyring.export_trust()
    verify_bundle(exported, anchors={old.key_id})
    with pytest.raises(VerificationError, match="neither a pinned hub key"):
        verify_bundle(exported, anchors={"ed25519:" + "0" * 32})


def test_revocation_invalidates_signatures_claimed_after_it(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    stolen = keyring.signer("anhui.data_office")
    t = datetime.now(UTC)
    revoke(keyring, stolen.key_id, at=t, reason="key compromised")
    bundle = keyring.trust_bundle()
    assert bundle.key(stolen.key_id).status == "revoked"
    verify_signature(bundle, stolen.sign(DATA), DATA, t - timedelta(seconds=1), "signed before revocation")
    with pytest.raises(VerificationError, match="revoked at") as err:
        verify_signature(bundle, stolen.sign(DATA), DATA, t + timedelta(seconds=1), "signed after revocation")
    assert "signed after revocation" in str(err.value)
    # The revoked private key left service: the owner gets a fresh, unendorsed key.
    fresh = keyring.signer("anhui.data_office")
    assert fresh.key_id != stolen.key_id
    assert keyring.trust_bundle().key(fresh.key_id).endorsement is None


def test_revoking_the_hub_key_re_signs_the_bundle_with_its_successor(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    hub = keyring.signer()
    revoke(keyring, hub.key_id)
    bundle = keyring.trust_bundle()
    verify_bundle(bundle)
    assert bundle.signature is not None and bundle.signature.key_id != hub.key_id


def test_a_key_added_to_the_bundle_breaks_its_signature(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    keyring.signer()
    exported = keyring.export_trust()
    forged = record_of(Keyring(tmp_path / "evil").signer(), datetime.now(UTC) - timedelta(days=1))
    tampered = exported.model_copy(update={"keys": [*exported.keys, forged]})
    with pytest.raises(VerificationError, match="signature by .* does not match"):
        verify_bundle(tampered)
    # Re-signing with the added key does not help: it is not a hub key... unless it claims to be one,
    # which a pinned anchor catches.
    as_hub = forged.model_copy(update={"owner": "hub"})
    evil = Keyring(tmp_path / "evil").signer()
    resigned = exported.model_copy(update={"keys": [*exported.keys, as_hub], "signature": None})
    resigned = resigned.model_copy(update={"signature": evil.sign(resigned.signed_bytes())})
    verify_bundle(resigned)  # self-consistent ...
    assert exported.signature is not None
    with pytest.raises(VerificationError, match="neither a pinned hub key"):
        verify_bundle(resigned, anchors={exported.signature.key_id})


def test_an_unsigned_bundle_is_rejected() -> None:
    with pytest.raises(VerificationError, match="not signed"):
        verify_bundle(TrustBundle(issued_at=datetime.now(UTC), keys=[]))


def test_concurrent_first_use_loses_no_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    owners = ["shanghai.data_office", "jiangsu.data_office", "zhejiang.data_office", "anhui.data_office"]
    workers = [ctx.Process(target=_create, args=(str(tmp_path / "keys"), o)) for o in owners]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    bundle = Keyring(tmp_path / "keys").trust_bundle()
    assert sorted(k.owner for k in bundle.keys) == sorted([*owners, "hub"])
    verify_bundle(bundle)


def test_trusted_key_schema_fields_round_trip(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    keyring.signer()
    rotate(keyring, "hub")
    doc = json.loads(keyring.export_trust().model_dump_json())
    again = TrustBundle.model_validate(doc)
    verify_bundle(again)
    assert {TrustedKey.model_validate(k).status for k in doc["keys"]} == {"active", "retired"}
