"""verify's part 0 (exchange/provenance/trustcheck.py): the trust bundle against the pinned anchor, and every
recorded grant and grant revocation signed by a key allowed to sign it (issue 21).

What an auditor relies on: a configured anchor that cannot be used is a problem (not "unpinned"), an unpinned
hub names the root key ids to pin, a pinned hub names what it was checked against, and a grant or revocation
edited or signed by the wrong key is named with the grant's id and the file it sits in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.access.registry import Registry
from exchange.demo import SAMPLE_DEPARTMENTS, sample_grant
from exchange.provenance.trustcheck import check_grants, check_trust
from exchange.provenance.verify_result import VerifyReport
from exchange.signing.anchor import SETTING, root_ids
from exchange.signing.keyring import Keyring

GRANT = "grant-js-public-security-e-license"


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    keys = Keyring(tmp_path / "home" / "keys")
    keys.signer()
    return keys


def test_a_pinned_anchor_is_named_as_what_the_bundle_was_checked_against(keyring: Keyring) -> None:
    bundle = keyring.trust_bundle()
    report = VerifyReport()
    check_trust(report, bundle, "trust bundle", setting=",".join(root_ids(bundle)))
    assert report.problems == [] and report.unpinned == []
    assert report.anchor == f"{', '.join(root_ids(bundle))} ({SETTING})"
    assert report.ok


def test_anchors_given_on_the_command_line_take_precedence_over_the_setting(keyring: Keyring) -> None:
    bundle = keyring.trust_bundle()
    report = VerifyReport()
    check_trust(report, bundle, "trust bundle", setting="ed25519:" + "0" * 32, anchors=root_ids(bundle))
    assert report.problems == [] and report.anchor == f"{', '.join(root_ids(bundle))} (--anchor)"


def test_without_a_configured_anchor_the_policy_for_an_unpinned_hub_sees_the_bundle(keyring: Keyring) -> None:
    # The suite's policy (conftest: a test hub's root is pinned as an operator pins it at set-up) is handed
    # the bundle under check, as the product's policy is.
    bundle = keyring.trust_bundle()
    report = VerifyReport()
    check_trust(report, bundle, "trust bundle", setting=None)
    assert report.problems == [] and report.unpinned == []
    assert report.anchor == f"{', '.join(root_ids(bundle))} (test fixture: the test hub's root)"


@pytest.mark.usefixtures("unpinned")
def test_an_unpinned_hub_names_its_root_keys_to_pin_and_is_not_intact(keyring: Keyring) -> None:
    bundle = keyring.trust_bundle()
    report = VerifyReport()
    check_trust(report, bundle, "trust bundle", setting=None)
    assert report.problems == [] and report.anchor is None
    assert report.unpinned == root_ids(bundle) != []
    assert report.verdict == "UNANCHORED"


@pytest.mark.usefixtures("unpinned")
def test_an_unpinned_bundle_without_a_hub_key_says_so(keyring: Keyring) -> None:
    bundle = keyring.trust_bundle()
    keyless = bundle.model_copy(update={"keys": []})
    report = VerifyReport()
    check_trust(report, keyless, "the bundle", setting=None)
    assert report.unpinned == ["(the bundle has no hub key)"]
    assert [(p.item, p.problem) for p in report.problems] == [
        ("the bundle", f"signed by {bundle.signature.key_id}, which is not a hub key in the bundle"),  # type: ignore[union-attr]
    ]


def test_an_anchor_that_is_configured_but_unusable_is_a_problem_not_unpinned(keyring: Keyring) -> None:
    inside = keyring.dir / "anchor.txt"  # inside the home: whoever writes the home could rewrite it
    inside.write_text("\n".join(root_ids(keyring.trust_bundle())) + "\n", encoding="utf-8")
    report = VerifyReport()
    check_trust(report, keyring.trust_bundle(), "trust bundle", setting=str(inside), home=keyring.dir.parent)
    assert [p.item for p in report.problems] == [f"trust anchor {SETTING} ({inside})"]
    assert "is inside EXCHANGE_HOME" in report.problems[0].problem
    assert report.unpinned == [] and report.anchor is None


def test_a_bundle_that_does_not_chain_to_the_anchor_is_named_by_the_item_given(keyring: Keyring) -> None:
    report = VerifyReport()
    check_trust(report, keyring.trust_bundle(), "trust bundle keys/trust-bundle.json",
                setting="ed25519:" + "0" * 32)
    assert [p.item for p in report.problems] == ["trust bundle keys/trust-bundle.json"]
    assert report.anchor == f"ed25519:{'0' * 32} ({SETTING})"


# -- grants and revocations ------------------------------------------------------------------------------------


def _registry(keyring: Keyring) -> Registry:
    registry = Registry(keyring.dir.parent / "access")
    registry.add_department(next(d for d in SAMPLE_DEPARTMENTS if d.id == "js.public_security"))
    return registry


def _checked(keyring: Keyring) -> list[tuple[str, str]]:
    report = VerifyReport()
    check_grants(report, keyring.dir.parent / "access", keyring.trust_bundle())
    return [(p.item, p.problem) for p in report.problems]


def test_grants_and_revocations_the_hub_signed_verify(keyring: Keyring) -> None:
    registry = _registry(keyring)
    registry.add_grant(sample_grant(datetime.now(UTC).date()), keyring.signer())
    registry.revoke_grant(GRANT, "jiangsu.data_office", "purpose ended", keyring.signer())
    assert _checked(keyring) == []


def test_a_grant_signed_by_a_province_key_is_named_with_its_id_and_file(keyring: Keyring) -> None:
    registry = _registry(keyring)
    registry.add_grant(sample_grant(datetime.now(UTC).date()), keyring.signer("jiangsu"))
    keyring.trust_bundle()
    [(item, problem)] = _checked(keyring)
    assert item == f"grant {GRANT} (grants.json)"
    assert problem.startswith("signed by a key that is not the hub's") and "a grant" in problem


def test_a_grant_edited_after_signing_is_named(keyring: Keyring) -> None:
    registry = _registry(keyring)
    registry.add_grant(sample_grant(datetime.now(UTC).date()), keyring.signer())
    text = registry.grants_path.read_text(encoding="utf-8")
    registry.grants_path.write_text(text.replace('"status"', '"holder_phone"', 1), encoding="utf-8")
    [(item, problem)] = _checked(keyring)
    assert item == f"grant {GRANT} (grants.json)" and "does not match the content" in problem


def test_a_revocation_signed_by_a_province_key_is_named_with_its_grant_and_file(keyring: Keyring) -> None:
    registry = _registry(keyring)
    registry.add_grant(sample_grant(datetime.now(UTC).date()), keyring.signer())
    registry.revoke_grant(GRANT, "jiangsu.data_office", "purpose ended", keyring.signer("jiangsu"))
    [(item, problem)] = _checked(keyring)
    assert item == f"revocation of grant {GRANT} (revocations.json)"
    assert problem.startswith("signed by a key that is not the hub's") and "revocation" in problem


def test_a_revocation_edited_after_signing_is_named(keyring: Keyring) -> None:
    registry = _registry(keyring)
    registry.add_grant(sample_grant(datetime.now(UTC).date()), keyring.signer())
    registry.revoke_grant(GRANT, "jiangsu.data_office", "purpose ended", keyring.signer())
    text = registry.revocations_path.read_text(encoding="utf-8")
    registry.revocations_path.write_text(text.replace("purpose ended", "never granted"), encoding="utf-8")
    [(item, problem)] = _checked(keyring)
    assert item == f"revocation of grant {GRANT} (revocations.json)" and "does not match the content" in problem
