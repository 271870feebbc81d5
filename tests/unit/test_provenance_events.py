"""The event vocabulary: the log records only its kinds, by the roles allowed, with details that fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.provenance.events import (
    HUB,
    VOCABULARY,
    Checkpoint,
    Event,
    Kind,
    Pull,
    Role,
    RoleRefused,
    UnrecordableEvent,
    admit,
    event_from,
    role_of,
    spec,
)
from exchange.provenance.log import LEGACY_VERSION, VERSION, ProvenanceEntry, ProvenanceLog, verify_chain
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.keyring import Keyring
from exchange.signing.trust import TrustBundle
from tests.unit.sample_events import SAMPLES, Sample, pull

FIXTURE = Path(__file__).parent / "fixtures" / "provenance_v1"
ACTORS = {Role.HUB: "hub", Role.PROVINCE_OFFICE: "anhui.data_office", Role.DEPARTMENT: "sh.market_regulation",
          Role.AUDITOR: "auditor", Role.OPERATOR: "operator:li", Role.AUTHORITY: "authority:yrd"}


def test_every_kind_has_one_event_class_and_one_sample() -> None:
    assert list(VOCABULARY) == list(Kind)
    assert [s.event.kind for s in SAMPLES] == list(Kind)
    for kind, cls in VOCABULARY.items():
        assert cls.kind == kind and spec(kind.value) is cls
        assert cls.meaning() and cls.roles, f"{kind}: no meaning or no role"


def test_a_second_class_for_a_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="already"):
        class AnotherPull(Event):  # noqa: F841
            kind = Kind.PULL


@pytest.mark.parametrize(("actor", "role"), [
    ("hub", Role.HUB), ("adapter:jiangsu", Role.HUB), ("jiangsu.data_office", Role.PROVINCE_OFFICE),
    ("auditor", Role.AUDITOR), ("auditor:wang", Role.AUDITOR), ("operator", Role.OPERATOR),
    ("authority", Role.AUTHORITY), ("authority:yrd", Role.AUTHORITY),
    ("js.public_security", Role.DEPARTMENT), ("a.b", Role.DEPARTMENT), ("nobody", Role.DEPARTMENT),
])
def test_role_of_an_actor(actor: str, role: Role) -> None:
    assert role_of(actor) == role


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.event.kind.value)
def test_each_kind_is_recorded_by_exactly_its_roles(sample: Sample, tmp_path: Path) -> None:
    log = ProvenanceLog(tmp_path / "provenance")
    signer = Keyring(tmp_path / "keys").signer()
    for role, actor in ACTORS.items():
        if role in sample.event.roles:
            entry = log.append(signer, sample.event, actor=actor, subject=sample.subject, digests=sample.digests)
            assert entry.action == sample.event.kind and entry.version == VERSION
            assert spec(entry.action) is type(sample.event)
            assert type(sample.event).model_validate(entry.details) == sample.event
        else:
            with pytest.raises(UnrecordableEvent, match="may not record"):
                log.append(signer, sample.event, actor=actor, subject=sample.subject, digests=sample.digests)
    assert verify_chain(log, Keyring(tmp_path / "keys").trust_bundle()) == len(sample.event.roles)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.event.digests], ids=lambda s: s.event.kind.value)
def test_a_required_digest_missing_is_refused(sample: Sample) -> None:
    for key in sample.event.digests:
        with pytest.raises(UnrecordableEvent, match="missing"):
            admit(sample.event, sample.actor, {k: v for k, v in sample.digests.items() if k != key})


@pytest.mark.parametrize("sample", [s for s in SAMPLES if not s.event.more_digests],
                         ids=lambda s: s.event.kind.value)
def test_a_digest_the_kind_does_not_name_is_refused(sample: Sample) -> None:
    with pytest.raises(UnrecordableEvent, match="unexpected"):
        admit(sample.event, sample.actor, {**sample.digests, "stray.bin": "00" * 32})


@given(st.text(min_size=1, max_size=20))
def test_an_unknown_kind_name_is_refused(name: str) -> None:
    if spec(name) is None:
        with pytest.raises(UnrecordableEvent, match="unknown event kind"):
            event_from(name, {})


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.event.kind.value)
def test_details_that_do_not_fit_the_kind_are_refused(sample: Sample) -> None:
    details = sample.event.details()
    assert event_from(sample.event.kind, details) == sample.event  # round trip through the kind's name
    with pytest.raises(UnrecordableEvent, match="do not fit"):
        event_from(sample.event.kind, {**details, "unexpected": 1})
    for key in [info.alias or f for f, info in type(sample.event).model_fields.items() if info.is_required()]:
        with pytest.raises(UnrecordableEvent, match="do not fit"):
            event_from(sample.event.kind, {k: v for k, v in details.items() if k != key})


def test_a_constructed_event_is_checked_again_and_a_foreign_class_refused(tmp_path: Path) -> None:
    log = ProvenanceLog(tmp_path / "provenance")
    signer = Keyring(tmp_path / "keys").signer()
    bogus = Pull.model_construct(pulled="many", deleted=0, since=None, window_end="x", source_signatures=[],
                                 drift=[])
    with pytest.raises(UnrecordableEvent, match="do not fit"):
        log.append(signer, bogus, actor=HUB, subject="b")

    class Stray(Checkpoint):  # inherits Checkpoint's kind but is not the vocabulary's class for it
        pass

    with pytest.raises(UnrecordableEvent, match="not an event kind"):
        log.append(signer, Stray.model_construct(lake_snapshot=None, manifests=0), actor=HUB, subject="p")
    assert not log.path.exists() or log.read() == [], "nothing is written when an event is refused"


def test_an_optional_fact_left_out_stays_out() -> None:
    from exchange.provenance.events import AccessDenied

    denied = AccessDenied(attempt=Kind.QUERY, reason="no grant", token_id="t1")
    assert denied.details() == {"attempt": "query", "reason": "no grant", "token_id": "t1"}


def _bundle(path: Path) -> TrustBundle:
    return TrustBundle.model_validate_json((path / "trust-bundle.json").read_text())


def test_entries_written_before_the_vocabulary_still_verify(tmp_path: Path) -> None:
    """The fixture log was written by the code before this change; one entry's kind was never in the vocabulary."""
    shutil.copytree(FIXTURE, tmp_path / "provenance")
    log = ProvenanceLog(tmp_path / "provenance")
    entries = log.read()
    assert verify_chain(log, _bundle(FIXTURE)) == len(entries) == 5
    assert all(e.version == LEGACY_VERSION for e in entries)
    assert all("version" not in json.loads(line) for _, line in log.entries())
    assert [spec(e.action) is None for e in entries] == [False, False, False, True, False]
    for e in entries:  # re-serialising an old entry does not add the new field: its hash stays its own
        assert "version" not in e.body() and json.loads(e.model_dump_json()).keys() == json.loads(
            next(line for _, line in log.entries() if json.loads(line)["seq"] == e.seq)).keys()


def test_the_version_is_hashed_so_it_cannot_be_dropped_or_faked(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    entry = log.append(keyring.signer(), pull(), actor=HUB, subject="b1")
    assert entry.body()["version"] == VERSION
    assert sha256_hex(canonical_bytes(entry.body())) == entry.entry_hash
    line: dict[str, Any] = json.loads(log.path.read_text())
    del line["version"]
    log.path.write_text(json.dumps(line) + "\n")
    from exchange.errors import VerificationError

    with pytest.raises(VerificationError, match="altered"):
        verify_chain(log, keyring.trust_bundle())


def test_a_new_entry_chains_onto_an_old_log(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "provenance")
    log = ProvenanceLog(tmp_path / "provenance")
    signer = Keyring(tmp_path / "keys").signer()
    bundle = _bundle(FIXTURE).model_copy(update={"keys": [*_bundle(FIXTURE).keys,
                                                           *Keyring(tmp_path / "keys").trust_bundle().keys]})
    entry = log.append(signer, Checkpoint(lake_snapshot=None, manifests=0), actor=HUB, subject="provenance")
    assert entry.seq == 6 and verify_chain(log, bundle) == 6
    assert ProvenanceEntry.model_validate_json(log.path.read_text().splitlines()[-1]).version == VERSION


@pytest.mark.parametrize(("error", "exit_code", "status"), [
    (UnrecordableEvent("pull details do not fit Pull"), 1, 500),  # a bug in the hub: nothing was written
    (RoleRefused("'hub' (hub) may not record grant_revoke"), 1, 403),  # a user named the wrong actor
])
def test_refusals_survive_pickling_and_map_to_their_outcome(error: Exception, exit_code: int, status: int) -> None:
    import pickle

    from exchange.errors import outcome

    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert (outcome(error).exit_code, outcome(error).http_status, outcome(error).retry) == (exit_code, status, False)


@given(st.text(max_size=40), st.sampled_from(SAMPLES))
def test_any_actor_has_one_role_and_may_record_a_kind_exactly_when_the_role_may(actor: str, sample: Sample) -> None:
    role = role_of(actor)
    assert role in Role
    if role in sample.event.roles:
        assert admit(sample.event, actor, sample.digests) == (sample.event.kind, sample.event.details())
    else:
        with pytest.raises(UnrecordableEvent, match="may not record"):
            admit(sample.event, actor, sample.digests)
