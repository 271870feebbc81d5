"""check_signer's verdicts, word for word: whose key signed, its role, and who may sign the thing instead
(mutation testing, `make mutation`, found these messages and a retired entry kind's signers unchecked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.errors import VerificationError
from exchange.provenance.events import Kind, Role, spec
from exchange.provenance.problems import Mismatch
from exchange.signing.keyring import Keyring
from exchange.signing.roles import SIGNERS, Signed, check_signer, describe, signer_roles


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    ring = Keyring(tmp_path / "keys")
    ring.signer()
    ring.signer("jiangsu.data_office")
    return ring


def test_every_kind_and_document_has_its_declared_signers() -> None:
    for kind in Kind:
        cls = spec(kind)
        assert cls is not None and signer_roles(kind.value) == cls.signers
    for thing, roles in SIGNERS.items():
        assert signer_roles(thing) == roles


def test_a_retired_entry_kind_is_still_the_hubs() -> None:
    assert spec("no_longer_a_kind") is None
    assert signer_roles("no_longer_a_kind") == frozenset({Role.HUB})


def test_describe_picks_the_article() -> None:
    assert describe(Signed.BATCH_MANIFEST) == "a batch manifest"
    assert describe(Signed.EXTRACT_MANIFEST) == "an extract manifest"
    assert describe("access_denied") == "an access_denied entry"
    assert describe("pull") == "a pull entry"


def test_a_province_key_on_a_batch_manifest_is_named_with_its_role(keyring: Keyring) -> None:
    province = keyring.signer("jiangsu.data_office")
    signature = province.sign(b"x")
    with pytest.raises(Mismatch) as caught:
        check_signer(keyring.trust_bundle(), signature, Signed.BATCH_MANIFEST, "m.json")
    key = province.key_id
    assert caught.value.item == "m.json"
    assert caught.value.problem == (f"signed by a key that is not the hub's: key {key} of jiangsu.data_office has "
                                    "role province_office, and a batch manifest may be signed only by hub")
    assert caught.value.expected == "a key of role hub"
    assert caught.value.found == f"{key} (jiangsu.data_office, role province_office)"


def test_the_hub_key_on_a_province_export_is_refused_too(keyring: Keyring) -> None:
    signature = keyring.signer().sign(b"x")
    with pytest.raises(Mismatch, match="a province export may be signed only by province_office "):
        check_signer(keyring.trust_bundle(), signature, Signed.PROVINCE_EXPORT, "export")


def test_a_thing_two_roles_may_sign_names_both(keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every thing has one signer role today; the message must still read right when one has two.
    monkeypatch.setitem(SIGNERS, Signed.DISPUTE_DECISION, frozenset({Role.HUB, Role.AUTHORITY}))
    province = keyring.signer("jiangsu.data_office")
    with pytest.raises(Mismatch) as caught:
        check_signer(keyring.trust_bundle(), province.sign(b"x"), Signed.DISPUTE_DECISION, "d.json")
    assert caught.value.problem == (
        f"signed by a key that is not the authority or hub's: key {province.key_id} of jiangsu.data_office has "
        "role province_office, and a dispute decision may be signed only by authority or hub")
    assert caught.value.expected == "a key of role authority or hub"


def test_the_allowed_signer_gets_its_key_back(keyring: Keyring) -> None:
    hub = keyring.signer()
    assert check_signer(keyring.trust_bundle(), hub.sign(b"x"), Signed.BATCH_MANIFEST, "m.json").key_id == hub.key_id


def test_a_key_outside_the_bundle(keyring: Keyring, tmp_path: Path) -> None:
    stranger = Keyring(tmp_path / "elsewhere").signer()
    with pytest.raises(VerificationError) as caught:
        check_signer(keyring.trust_bundle(), stranger.sign(b"x"), "pull", "log.jsonl:3")
    assert caught.value.item == "log.jsonl:3"
    assert caught.value.problem == f"signed by key {stranger.key_id}, which is not in the trust bundle"
