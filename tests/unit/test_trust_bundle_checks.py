"""The trust bundle's checks (exchange/signing/trust.py) as an offline verifier meets them: each refusal names
the item and says why in exact words, validity and revocation bounds are where the bundle says, what a key's
predecessor endorses is the documented identity, and a rotated key's record is what the bundle carries.
Written against the mutants `make mutation` found unchecked."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import rfc8785

from exchange.errors import VerificationError
from exchange.provenance.problems import Mismatch
from exchange.signing.signers import ED25519, SM2_SM3, KeySigner, Signature, generate, public_key_from_pem
from exchange.signing.trust import (
    DEFAULT_YEARS,
    TrustBundle,
    TrustedKey,
    check_history,
    public_pem,
    public_record,
    record_of,
    retired,
    roots,
    signed,
    verify_bundle,
    verify_signature,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DATA = b'{"manifest":"jiangsu"}'
ITEM = "manifests/jiangsu/e_license/b.json"


def _bundle(*signers: KeySigner, at: datetime = T0) -> tuple[TrustBundle, list[TrustedKey]]:
    keys = [record_of(s, at) for s in signers]
    return TrustBundle(issued_at=at, keys=keys), keys


def _refusal(bundle: TrustBundle, signature: Signature, at: datetime, data: bytes = DATA) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verify_signature(bundle, signature, data, at, ITEM)
    assert caught.value.item == ITEM
    return caught.value


def test_a_record_names_its_key_by_fingerprint_and_is_valid_for_five_years_of_365_days() -> None:
    hub = generate(ED25519, "hub")
    key = record_of(hub, T0)
    assert key == public_record("hub", ED25519, hub.public_bytes(), T0)
    assert (key.key_id, key.owner, key.algorithm) == (hub.key_id, "hub", ED25519)
    assert base64.b64decode(key.public_key) == hub.public_bytes()
    assert key.not_before == T0 and key.not_after == T0 + timedelta(days=365 * DEFAULT_YEARS)
    assert public_record("hub", ED25519, hub.public_bytes(), T0, years=2).not_after == T0 + timedelta(days=730)
    assert key.status == "active" and key.revoked_at is None and key.endorsement is None


def test_a_retired_key_ends_at_its_hand_over_but_never_later_than_it_was_valid() -> None:
    key = record_of(generate(ED25519, "hub"), T0)
    early = retired(key, T0 + timedelta(days=10))
    assert early.status == "retired" and early.not_after == T0 + timedelta(days=10)
    late = retired(key, key.not_after + timedelta(days=10))
    assert late.status == "retired" and late.not_after == key.not_after
    assert (early.key_id, early.public_key, early.not_before) == (key.key_id, key.public_key, key.not_before)


def test_what_a_predecessor_endorses_is_the_documented_identity_of_the_key() -> None:
    key = record_of(generate(ED25519, "hub"), T0)
    assert key.identity() == rfc8785.dumps({
        "key_id": key.key_id, "owner": "hub", "algorithm": ED25519, "public_key": key.public_key,
        "not_before": "2026-01-01T00:00:00Z",
    })


def test_the_current_key_is_the_owners_newest_active_one() -> None:
    old, new, other = generate(ED25519, "hub"), generate(ED25519, "hub"), generate(ED25519, "jiangsu.data_office")
    keys = [record_of(old, T0), record_of(new, T0 + timedelta(days=30)), record_of(other, T0 + timedelta(days=60))]
    bundle = TrustBundle(issued_at=T0, keys=keys)
    assert bundle.current("hub") == keys[1]
    assert bundle.current("jiangsu.data_office") == keys[2]
    assert bundle.current("anhui.data_office") is None
    bundle.keys[1] = retired(keys[1], T0 + timedelta(days=40))
    assert bundle.current("hub") == keys[0]  # a retired key is not current, however new


def test_a_key_not_in_the_bundle_is_named() -> None:
    bundle, _ = _bundle(generate(ED25519, "hub"))
    with pytest.raises(VerificationError) as caught:
        bundle.key("ed25519:0000")
    assert str(caught.value) == "key ed25519:0000: not in the trust bundle"
    stranger = generate(ED25519, "hub")
    refusal = _refusal(bundle, stranger.sign(DATA), T0)
    assert refusal.problem == f"signed by key {stranger.key_id}, which is not in the trust bundle"


def test_a_signature_claiming_another_algorithm_than_its_key_is_refused_by_name() -> None:
    hub = generate(ED25519, "hub")
    bundle, _ = _bundle(hub)
    claims = hub.sign(DATA).model_copy(update={"algorithm": SM2_SM3})
    assert _refusal(bundle, claims, T0).problem == (
        f"signature claims algorithm {SM2_SM3}, but key {hub.key_id} is {ED25519}")


def test_a_key_of_an_unsupported_algorithm_is_refused_by_name() -> None:
    hub = generate(ED25519, "hub")
    bundle, keys = _bundle(hub)
    bundle.keys[0] = keys[0].model_copy(update={"algorithm": "rsa"})
    signature = hub.sign(DATA).model_copy(update={"algorithm": "rsa"})
    assert _refusal(bundle, signature, T0).problem == f"key {hub.key_id} has unsupported algorithm rsa"
    with pytest.raises(VerificationError) as caught:
        public_pem(bundle.keys[0])
    assert str(caught.value) == f"key {hub.key_id}: unsupported algorithm rsa"


def test_revocation_invalidates_signatures_claimed_after_it_not_at_it() -> None:
    hub = generate(ED25519, "hub")
    bundle, keys = _bundle(hub)
    revoked_at = T0 + timedelta(days=3)
    bundle.keys[0] = keys[0].model_copy(update={"status": "revoked", "revoked_at": revoked_at})
    signature = hub.sign(DATA)
    verify_signature(bundle, signature, DATA, revoked_at, ITEM)  # at the instant: still valid
    after = revoked_at + timedelta(seconds=1)
    assert _refusal(bundle, signature, after).problem == (
        f"signed at 2026-01-04T00:00:01Z with key {hub.key_id} (hub), which was revoked at 2026-01-04T00:00:00Z")


def test_the_validity_period_includes_both_ends_and_nothing_outside() -> None:
    hub = generate(ED25519, "hub")
    bundle, keys = _bundle(hub)
    signature = hub.sign(DATA)
    verify_signature(bundle, signature, DATA, keys[0].not_before, ITEM)
    verify_signature(bundle, signature, DATA, keys[0].not_after, ITEM)
    before = _refusal(bundle, signature, T0 - timedelta(seconds=1))
    end = keys[0].not_after
    assert before.problem == (f"signed at 2025-12-31T23:59:59Z, outside the validity of key {hub.key_id} (hub: "
                              f"2026-01-01T00:00:00Z .. {end.strftime('%Y-%m-%dT%H:%M:%SZ')}, active)")
    assert "outside the validity" in _refusal(bundle, signature, end + timedelta(seconds=1)).problem


@pytest.mark.parametrize("algorithm", [ED25519, SM2_SM3])
def test_a_signature_over_other_bytes_or_a_malformed_key_does_not_match_the_content(algorithm: str) -> None:
    hub = generate(algorithm, "hub")
    bundle, keys = _bundle(hub)
    signature = hub.sign(DATA)
    verify_signature(bundle, signature, DATA, T0, ITEM)
    wrong = _refusal(bundle, signature, T0, DATA + b" ")
    assert wrong.problem == f"signature by {hub.key_id} does not match the content"
    bundle.keys[0] = keys[0].model_copy(update={"public_key": base64.b64encode(b"\x04" * 7).decode()})
    assert _refusal(bundle, signature, T0).problem == f"signature by {hub.key_id} does not match the content"


def test_a_signature_value_that_is_not_base64_does_not_match_the_content() -> None:
    hub = generate(ED25519, "hub")
    bundle, _ = _bundle(hub)
    broken = hub.sign(DATA).model_copy(update={"value": "abc"})
    assert _refusal(bundle, broken, T0).problem == f"signature by {hub.key_id} does not match the content"


def test_an_unsigned_bundle_and_one_signed_by_a_stranger_are_refused_by_name() -> None:
    hub = generate(ED25519, "hub")
    bundle, _ = _bundle(hub)
    with pytest.raises(VerificationError) as caught:
        verify_bundle(bundle, item="keys/trust-bundle.json")
    assert str(caught.value) == "keys/trust-bundle.json: not signed by the hub"
    stranger = generate(ED25519, "hub")
    with pytest.raises(VerificationError) as caught:
        verify_bundle(signed(bundle, stranger), item="keys/trust-bundle.json")
    assert str(caught.value) == (f"keys/trust-bundle.json: signed by {stranger.key_id}, which is not a hub key in "
                                 "the bundle")


def test_a_bundle_edited_after_signing_names_the_signature_over_the_bundle() -> None:
    hub, office = generate(ED25519, "hub"), generate(ED25519, "jiangsu.data_office")
    bundle, _ = _bundle(hub, office)
    good = signed(bundle, hub)
    verify_bundle(good, [hub.key_id])
    assert good.signature is not None and good.signature.key_id == hub.key_id
    edited = good.model_copy(update={"keys": good.keys[:1]})
    with pytest.raises(VerificationError) as caught:
        verify_bundle(edited, item="bundle")
    assert caught.value.item == "bundle (signature over the bundle: a key added, removed or edited?)"
    assert caught.value.problem == f"signature by {hub.key_id} does not match the content"


def test_a_bundle_signed_by_an_office_key_is_refused_for_its_role() -> None:
    hub, office = generate(ED25519, "hub"), generate(ED25519, "jiangsu.data_office")
    bundle, _ = _bundle(hub, office)
    with pytest.raises(Mismatch) as caught:
        verify_bundle(signed(bundle, office), item="bundle")
    assert caught.value.item == "bundle"
    assert caught.value.problem == (f"signed by a key that is not the hub's: key {office.key_id} of "
                                    "jiangsu.data_office has role province_office, and a trust bundle may be signed "
                                    "only by hub")


def test_refusals_name_the_trust_bundle_when_no_item_is_given() -> None:
    hub, pinned = generate(ED25519, "hub"), generate(ED25519, "hub")
    bundle, _ = _bundle(hub)
    with pytest.raises(VerificationError) as caught:
        verify_bundle(bundle)
    assert str(caught.value) == "trust bundle: not signed by the hub"
    with pytest.raises(Mismatch) as history:
        check_history(signed(bundle, hub), [pinned.key_id])
    assert str(history.value).startswith("trust bundle: does not chain to the trust anchor")


def test_a_refusal_to_chain_lists_every_pinned_and_every_found_hub_key() -> None:
    first, second = generate(ED25519, "hub"), generate(ED25519, "hub")
    pins = sorted(["ed25519:" + "a" * 32, "ed25519:" + "b" * 32])
    bundle = TrustBundle(issued_at=T0, keys=[record_of(first, T0), record_of(second, T0 + timedelta(days=1))])
    with pytest.raises(Mismatch) as caught:
        check_history(bundle, pins)
    assert (caught.value.expected, caught.value.found) == (
        f"hub key {pins[0]}, {pins[1]}", f"{first.key_id}, {second.key_id}")


def test_a_public_key_with_characters_outside_base64_is_malformed_not_read_around() -> None:
    hub = generate(ED25519, "hub")
    key = record_of(hub, T0)
    padded = key.model_copy(update={"public_key": key.public_key[:8] + "*" + key.public_key[8:]})
    with pytest.raises(VerificationError) as caught:
        verify_bundle(signed(TrustBundle(issued_at=T0, keys=[padded]), hub), item="bundle")
    assert str(caught.value) == f"bundle: key {hub.key_id} has a malformed public key"


@pytest.mark.parametrize("algorithm", [ED25519, SM2_SM3])
def test_a_trusted_key_exports_as_the_pem_of_its_own_bytes(algorithm: str) -> None:
    signer = generate(algorithm, "hub")
    assert public_key_from_pem(public_pem(record_of(signer, T0)).encode("ascii")) == (algorithm, signer.public_bytes())


def test_a_record_of_a_signer_keeps_the_years_asked_for() -> None:
    assert record_of(generate(ED25519, "hub"), T0, years=1).not_after == T0 + timedelta(days=365)


def test_a_signed_bundle_verifies_after_a_round_trip_through_its_json_file() -> None:
    hub, office = generate(ED25519, "hub"), generate(SM2_SM3, "jiangsu.data_office")
    bundle = signed(signed(_bundle(hub, office)[0], hub), hub)  # re-signing replaces the signature
    again = TrustBundle.model_validate_json(bundle.model_dump_json())
    verify_bundle(again, [hub.key_id])


def _rotated(old: KeySigner, new: KeySigner, endorser: KeySigner, at: datetime) -> TrustedKey:
    record = record_of(new, at)
    return record.model_copy(update={"endorsement": endorser.sign(record.identity())})


def test_a_rotation_endorsed_by_the_owners_previous_key_verifies_and_chains_to_the_anchor() -> None:
    old, new = generate(ED25519, "hub"), generate(SM2_SM3, "hub")
    later = T0 + timedelta(days=100)
    keys = [retired(record_of(old, T0), later), _rotated(old, new, old, later)]
    bundle = signed(TrustBundle(issued_at=later, keys=keys), new)
    verify_bundle(bundle, [old.key_id])
    assert [k.key_id for k in roots(bundle)] == [old.key_id]


def test_an_endorsement_made_before_the_endorsers_validity_is_refused_naming_the_key() -> None:
    old, new = generate(ED25519, "hub"), generate(ED25519, "hub")
    early = T0 - timedelta(days=1)  # the new key claims to start before its endorser was valid
    keys = [record_of(old, T0), _rotated(old, new, old, early)]
    bundle = signed(TrustBundle(issued_at=T0, keys=keys), old)
    with pytest.raises(VerificationError) as caught:
        verify_bundle(bundle, item="bundle")
    assert caught.value.item == f"bundle: endorsement of {new.key_id}"
    assert "outside the validity" in caught.value.problem


def test_an_endorsement_by_another_owners_key_is_refused_naming_both() -> None:
    hub, office, office_new = generate(ED25519, "hub"), generate(ED25519, "anhui.data_office"), generate(
        ED25519, "anhui.data_office")
    keys = [record_of(hub, T0), record_of(office, T0), _rotated(office, office_new, hub, T0 + timedelta(days=1))]
    bundle = signed(TrustBundle(issued_at=T0, keys=keys), hub)
    with pytest.raises(Mismatch) as caught:
        verify_bundle(bundle, [hub.key_id], item="bundle")
    assert str(caught.value) == (
        f"bundle: endorsement of {office_new.key_id}: endorsed by a key of hub: only the owner's previous key hands "
        f"over (expected a previous key of anhui.data_office, found {hub.key_id} (hub))")


def test_a_bundle_whose_hub_keys_do_not_chain_to_the_anchor_is_refused_naming_them() -> None:
    hub, pinned = generate(ED25519, "hub"), generate(ED25519, "hub")
    bundle = signed(_bundle(hub)[0], hub)
    with pytest.raises(Mismatch) as caught:
        verify_bundle(bundle, [pinned.key_id], item="bundle")
    assert str(caught.value) == (
        "bundle: does not chain to the trust anchor: its hub keys are neither a pinned hub key nor handed over "
        f"from one (bundle replaced?) (expected hub key {pinned.key_id}, found {hub.key_id})")
    with pytest.raises(Mismatch) as caught:
        check_history(TrustBundle(issued_at=T0, keys=[]), [], item="bundle")
    assert str(caught.value).endswith("(expected hub key none, found no hub key)")


def test_a_hub_key_slipped_in_after_the_pinned_one_is_refused_naming_it() -> None:
    first, slipped = generate(ED25519, "hub"), generate(ED25519, "hub")
    later = T0 + timedelta(days=5)
    bundle = TrustBundle(issued_at=T0, keys=[record_of(first, T0), record_of(slipped, later)])
    with pytest.raises(Mismatch) as caught:
        check_history(bundle, [first.key_id], item="bundle")
    assert str(caught.value) == (
        f"bundle: hub key {slipped.key_id} (from 2026-01-06T00:00:00Z): neither a pinned hub key nor endorsed by its "
        "predecessor (a rotated key missing its predecessor's signature, or a key slipped in) (expected pinned "
        f"({first.key_id}) or endorsed by an earlier hub key, found no endorsement)")


def test_a_hub_key_endorsed_by_a_key_outside_the_chain_is_refused_naming_the_endorser() -> None:
    first, outsider, new = generate(ED25519, "hub"), generate(ED25519, "hub"), generate(ED25519, "hub")
    later = T0 + timedelta(days=5)
    bundle = TrustBundle(issued_at=T0, keys=[record_of(first, T0), _rotated(outsider, new, outsider, later)])
    with pytest.raises(Mismatch) as caught:
        check_history(bundle, [first.key_id], item="bundle")
    assert str(caught.value) == (
        f"bundle: hub key {new.key_id} (from 2026-01-06T00:00:00Z): endorsed by {outsider.key_id}, which is neither a "
        f"pinned hub key nor handed over from one (expected a chain from {first.key_id}, found {outsider.key_id})")


def test_a_chain_of_two_rotations_from_the_anchor_is_accepted() -> None:
    a, b, c = generate(ED25519, "hub"), generate(ED25519, "hub"), generate(ED25519, "hub")
    t1, t2 = T0 + timedelta(days=5), T0 + timedelta(days=9)
    keys = [retired(record_of(a, T0), t1), retired(_rotated(a, b, a, t1), t2), _rotated(b, c, b, t2)]
    bundle = signed(TrustBundle(issued_at=t2, keys=keys), c)
    verify_bundle(bundle, [a.key_id])
    check_history(bundle, [a.key_id])


def test_a_record_whose_key_bytes_are_not_its_fingerprint_or_not_base64_is_refused() -> None:
    hub, other = generate(ED25519, "hub"), generate(ED25519, "hub")
    key = record_of(hub, T0)
    forged = key.model_copy(update={"public_key": base64.b64encode(other.public_bytes()).decode()})
    bundle = signed(TrustBundle(issued_at=T0, keys=[forged]), hub)
    with pytest.raises(Mismatch) as caught:
        verify_bundle(bundle, item="bundle")
    assert str(caught.value) == (f"bundle: key {hub.key_id} (hub) is not the fingerprint of its public key "
                                 f"(expected {hub.key_id}, found {other.key_id})")
    garbled = signed(TrustBundle(issued_at=T0, keys=[key.model_copy(update={"public_key": "not base64!"})]), hub)
    with pytest.raises(VerificationError) as malformed:
        verify_bundle(garbled, item="bundle")
    assert str(malformed.value) == f"bundle: key {hub.key_id} has a malformed public key"
