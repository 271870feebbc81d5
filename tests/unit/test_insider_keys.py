"""The insider tamper matrix for keys: someone holding one key (a province office's, a revoked one) or write
access to the hub's disk tries to rewrite history. Each case works on a copy of a small demo-like home and is
detected and named by verify in plain, ``--json`` and ``--offline`` modes, with the anchor pinned outside the
home. Then the role check over every vocabulary kind and every signed thing, and verify without an anchor.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest
from exchange.access.models import SignedGrant
from exchange.access.registry import Registry
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.errors import VerificationError
from exchange.provenance.events import VOCABULARY, AccessDenied, Checkpoint, Kind, Role, role_of
from exchange.provenance.log import ChainVerifier, ProvenanceEntry, ProvenanceLog
from exchange.provenance.manifest import SignedManifest, sign_manifest
from exchange.provenance.verify import verify_home
from exchange.signing.anchor import SETTING, root_ids, write_anchor
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.keyring import Keyring
from exchange.signing.roles import SIGNERS, Signed, check_signer, signer_roles
from exchange.signing.rotation import revoke, rotate
from exchange.signing.signers import ED25519, KeySigner, Signature, generate
from exchange.signing.trust import TrustBundle, TrustedKey, record_of, signed, verify_bundle
from tests.hubs import extract_home
from tests.unit.sample_events import SAMPLES, Sample

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 4, tzinfo=UTC)
DEPARTMENT = "js.public_security"
OFFICE = "jiangsu.data_office"
# One key per role: the owners a key in the bundle can have.
OWNERS = {Role.HUB: "hub", Role.PROVINCE_OFFICE: OFFICE, Role.DEPARTMENT: DEPARTMENT, Role.AUDITOR: "auditor",
          Role.OPERATOR: "operator"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-like home: one Jiangsu batch (signed by the province's office key), a grant, an extract."""
    home = tmp_path_factory.mktemp("insider") / "home"
    extract_home(home, 200, 11, START, END, DEPARTMENT)
    assert Keyring(home / "keys").trust_bundle().current(OFFICE) is not None, "the office key is in the bundle"
    return home


@dataclass
class Copy:
    """A copy of the built home and the anchor its operator pinned outside it."""

    home: Path
    anchor: Path

    @property
    def keyring(self) -> Keyring:
        return Keyring(self.home / "keys")

    @property
    def log(self) -> Path:
        return self.home / "provenance" / "log.jsonl"

    def signer(self, owner: str) -> KeySigner:
        """The private key a holder of `owner`'s key has (the embedded sandboxes keep theirs in the hub's folder)."""
        signer = self.keyring.current(owner)
        assert signer is not None, owner
        return signer


@pytest.fixture
def copy(built: Path, tmp_path: Path) -> Copy:
    home = tmp_path / "home"
    shutil.copytree(built, home, symlinks=True)
    anchor = write_anchor(tmp_path / "operator" / "trust-anchor", Keyring(home / "keys").trust_bundle())
    assert anchor.key_ids
    return Copy(home, tmp_path / "operator" / "trust-anchor")


def _named(home: Path, anchor: Path, item: str, problem: str) -> None:
    """Verify names `item` with `problem` in plain, --json and --offline (the auditor's copy with --anchor)."""
    runner = CliRunner()
    env = {"EXCHANGE_HOME": str(home), SETTING: str(anchor), "COLUMNS": "1000"}
    plain = runner.invoke(app, ["verify"], env=env)
    assert plain.exit_code == 1, plain.output
    assert "BROKEN" in plain.output and item in plain.output and problem in plain.output, plain.output
    as_json = runner.invoke(app, ["verify", "--json"], env=env)
    assert as_json.exit_code == 1
    _in_problems(json.loads(as_json.output), item, problem)
    ids = [line for line in anchor.read_text().splitlines() if line and not line.startswith("#")]
    offline = runner.invoke(app, [
        "verify", "--offline", "--json", "--provenance", str(home / "provenance"),
        "--trust-bundle", str(home / "keys" / "trust-bundle.json"), "--lake", str(home / "lake"),
        "--manifests", str(home / "manifests"), "--extracts", str(home / "extracts"),
        *[a for i in ids for a in ("--anchor", i)],
    ], env={"COLUMNS": "1000", SETTING: ""})
    assert offline.exit_code == 1, offline.output
    _in_problems(json.loads(offline.output), item, problem)


def _in_problems(result: dict[str, object], item: str, problem: str) -> None:
    problems = result["problems"]
    assert isinstance(problems, list) and result["verdict"] == "BROKEN"
    hits = [p for p in problems if item in p["item"] and problem in p["problem"]]
    assert hits, f"expected {item!r} with {problem!r}; got {problems}"


def _resign(lines: list[str], start: int, signer: KeySigner, edit: Callable[[ProvenanceEntry], ProvenanceEntry]
            = lambda e: e) -> list[str]:
    """Re-chain lines[start:] onto lines[start - 1] and sign each with `signer`: what a key holder can do."""
    prev = ProvenanceEntry.model_validate_json(lines[start - 1]) if start else None
    out = lines[:start]
    for line in lines[start:]:
        entry = edit(ProvenanceEntry.model_validate_json(line)).model_copy(update={
            "seq": prev.seq + 1 if prev else 1, "prev_hash": prev.entry_hash if prev else "0" * 64})
        digest = sha256_hex(canonical_bytes(entry.body()))
        entry = entry.model_copy(update={"entry_hash": digest, "signature": signer.sign(digest.encode())})
        out.append(entry.model_dump_json())
        prev = entry
    return out


def test_the_untouched_copy_verifies_against_the_pinned_anchor(copy: Copy) -> None:
    settings = ExchangeSettings(home=copy.home, trust_anchor=str(copy.anchor))
    report = verify_home(settings, record=False)
    assert report.ok and report.verdict == "intact", report.problems
    assert report.anchor is not None and str(copy.anchor) in report.anchor


# -- (a) a province key rewrites hub history ------------------------------------------------------------------


def test_a_dropped_entry_re_chained_and_re_signed_with_a_province_key(copy: Copy) -> None:
    lines = copy.log.read_text().splitlines()
    dropped = 2  # drop the entry on line 2 (seq 2); every later entry is re-chained and re-signed
    rewritten = _resign(lines[:dropped - 1] + lines[dropped:], dropped - 1, copy.signer(OFFICE))
    copy.log.write_text("\n".join(rewritten) + "\n")
    # The chain itself is whole again: only the signer's role gives it away, at the first re-signed entry.
    _named(copy.home, copy.anchor, f"log.jsonl:{dropped} (seq {dropped},", "role province_office")
    _named(copy.home, copy.anchor, f"log.jsonl:{dropped} (seq {dropped},", copy.signer(OFFICE).key_id)


# -- (b) forged entries signed by a province key --------------------------------------------------------------


@pytest.mark.parametrize(("event", "actor"), [
    (AccessDenied(attempt="query", reason="no grant"), DEPARTMENT),
    (Checkpoint(lake_snapshot=None, manifests=1), "hub"),
], ids=["access_denied", "checkpoint"])
def test_a_forged_entry_signed_by_a_province_key(copy: Copy, event: AccessDenied | Checkpoint, actor: str) -> None:
    entry = ProvenanceLog(copy.home / "provenance").append(copy.signer(OFFICE), event, actor=actor,
                                                           subject="provenance")
    line = len(copy.log.read_text().splitlines())
    _named(copy.home, copy.anchor, f"log.jsonl:{line} (seq {entry.seq}, {event.kind.value}",
           f"key {copy.signer(OFFICE).key_id} of {OFFICE} has role province_office")


# -- (c) the whole trust bundle replaced, everything re-signed ------------------------------------------------


def _replace_bundle(copy: Copy) -> KeySigner:
    """Replace trust-bundle.json by one self-signed with a new 'hub' key, and re-sign everything with it."""
    evil = generate(ED25519, "hub")
    old = copy.keyring.trust_bundle()
    since = min(k.not_before for k in old.keys) - timedelta(days=1)
    keys = [k for k in old.keys if k.owner != "hub"] + [record_of(evil, since)]
    copy.keyring.trust_bundle_path.write_text(
        signed(TrustBundle(issued_at=datetime.now(UTC), keys=keys), evil).model_dump_json(indent=2))
    lines = copy.log.read_text().splitlines()
    copy.log.write_text("\n".join(_resign(lines, 0, evil)) + "\n")
    for path in (copy.home / "manifests").rglob("*.json"):
        path.write_text(sign_manifest(SignedManifest.model_validate_json(path.read_text()).manifest, evil)
                        .model_dump_json(indent=2))
    for path in (copy.home / "extracts").rglob(EXTRACT_MANIFEST):
        m = SignedExtractManifest.model_validate_json(path.read_text()).manifest
        path.write_text(SignedExtractManifest(manifest=m, signature=evil.sign(canonical_bytes(
            m.model_dump(mode="json")))).model_dump_json(indent=2))
    grants = Registry(copy.home / "access").grants_path
    grants.write_text(json.dumps([SignedGrant(grant=g.grant, signature=evil.sign(canonical_bytes(
        g.grant.model_dump(mode="json")))).model_dump(mode="json") for g in Registry(copy.home / "access").grants()]))
    return evil


def test_a_trust_bundle_replaced_and_everything_re_signed(copy: Copy, tmp_path: Path) -> None:
    evil = _replace_bundle(copy)
    # The forgery is otherwise perfect: pinned to the forger's own key, everything verifies.
    forged_pin = write_anchor(tmp_path / "forged-anchor", copy.keyring.trust_bundle())
    assert forged_pin.key_ids == {evil.key_id}
    assert verify_home(ExchangeSettings(home=copy.home, trust_anchor=str(tmp_path / "forged-anchor")),
                       record=False).ok
    # At the hub (not only offline) the operator's anchor refuses it.
    _named(copy.home, copy.anchor, "trust bundle", "does not chain to the trust anchor")
    bundle = copy.home / "keys" / "trust-bundle.json"
    extract = next((copy.home / "extracts").rglob(EXTRACT_MANIFEST)).parent
    refused = CliRunner().invoke(app, ["verify-extract", str(extract), "--trust-bundle", str(bundle)],
                                 env={SETTING: str(copy.anchor), "COLUMNS": "1000"})
    assert refused.exit_code != 0 and "does not chain to the trust anchor" in refused.output, refused.output


def test_a_pinned_key_id_with_other_key_bytes_is_refused(copy: Copy) -> None:
    evil = generate(ED25519, "hub")
    bundle = copy.keyring.trust_bundle()
    root = next(k for k in bundle.keys if k.owner == "hub")
    forged = record_of(evil, root.not_before).model_copy(update={"key_id": root.key_id})
    keys = [forged if k.key_id == root.key_id else k for k in bundle.keys]
    copy.keyring.trust_bundle_path.write_text(signed(TrustBundle(issued_at=datetime.now(UTC), keys=keys), evil)
                                              .model_dump_json(indent=2))
    _named(copy.home, copy.anchor, "trust bundle", "is not the fingerprint of its public key")


# -- (d) a rotated hub key without its predecessor's endorsement ----------------------------------------------


def test_a_rotated_hub_key_missing_its_predecessors_endorsement(copy: Copy) -> None:
    new = rotate(copy.keyring, "hub")
    # A rotation proper keeps verifying against the anchor pinned before it: no new pin is needed.
    assert verify_home(ExchangeSettings(home=copy.home, trust_anchor=str(copy.anchor)), record=False).ok
    with copy.keyring.locked():
        bundle = copy.keyring.trust_bundle()
        bundle.keys = [k.model_copy(update={"endorsement": None}) if k.key_id == new.key_id else k
                       for k in bundle.keys]
        copy.keyring.save_locked(bundle, hub=copy.signer("hub"))
    _named(copy.home, copy.anchor, f"hub key {new.key_id}", "neither a pinned hub key nor endorsed by its "
                                                            "predecessor")


# -- (e) a key revoked in the past signs a new entry ----------------------------------------------------------


def test_a_key_revoked_in_the_past_signs_a_new_entry(copy: Copy) -> None:
    stolen = copy.signer("hub")
    revoked_at = datetime.now(UTC)
    revoke(copy.keyring, stolen.key_id, at=revoked_at, reason="laptop stolen")
    # The hub's next key is deliberately not endorsed by the revoked one: it must be pinned too, and until it
    # is, verify refuses it.
    successor = copy.signer("hub")
    _named(copy.home, copy.anchor, f"hub key {successor.key_id}", "neither a pinned hub key")
    write_anchor(copy.anchor, copy.keyring.trust_bundle())  # the operator re-pins: the old root and the new
    assert set(root_ids(copy.keyring.trust_bundle())) == {stolen.key_id, successor.key_id}
    assert verify_home(ExchangeSettings(home=copy.home, trust_anchor=str(copy.anchor)), record=False).ok
    # Whoever kept the revoked key signs a new entry with it.
    entry = ProvenanceLog(copy.home / "provenance").append(
        stolen, Checkpoint(lake_snapshot=None, manifests=1), actor="hub", subject="provenance",
        at=revoked_at + timedelta(seconds=1))
    _named(copy.home, copy.anchor, f"(seq {entry.seq}, checkpoint", "which was revoked at")


# -- (f) signed documents re-signed by a province key ---------------------------------------------------------


def _resign_manifest(copy: Copy, signer: KeySigner) -> str:
    path = sorted((copy.home / "manifests").rglob("*.json"))[0]
    path.write_text(sign_manifest(SignedManifest.model_validate_json(path.read_text()).manifest, signer)
                    .model_dump_json(indent=2))
    return path.name


def _resign_extract(copy: Copy, signer: KeySigner) -> str:
    path = next((copy.home / "extracts").rglob(EXTRACT_MANIFEST))
    m = SignedExtractManifest.model_validate_json(path.read_text()).manifest
    path.write_text(SignedExtractManifest(manifest=m, signature=signer.sign(canonical_bytes(
        m.model_dump(mode="json")))).model_dump_json(indent=2))
    return EXTRACT_MANIFEST


def _resign_grant(copy: Copy, signer: KeySigner) -> str:
    registry = Registry(copy.home / "access")
    grants = [SignedGrant(grant=g.grant, signature=signer.sign(canonical_bytes(g.grant.model_dump(mode="json"))))
              for g in registry.grants()]
    registry.grants_path.write_text(json.dumps([g.model_dump(mode="json") for g in grants]))
    return f"grant {grants[0].grant.id}"


@pytest.mark.parametrize("resign", [_resign_manifest, _resign_extract, _resign_grant],
                         ids=["batch manifest", "extract manifest", "grant"])
def test_a_signed_document_re_signed_by_a_province_key(copy: Copy, resign: Callable[[Copy, KeySigner], str]) -> None:
    item = resign(copy, copy.signer(OFFICE))
    if resign is _resign_grant:  # grants live in the hub's home only: the offline copy has none
        report = verify_home(ExchangeSettings(home=copy.home, trust_anchor=str(copy.anchor)), record=False)
        assert any(item in p.item and "role province_office" in p.problem for p in report.problems), report.problems
        return
    _named(copy.home, copy.anchor, item, "role province_office")


# -- the role check over every kind and every signed thing ----------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keyring, dict[Role, KeySigner]]:
    keyring = Keyring(tmp_path_factory.mktemp("roles") / "keys")
    return keyring, {role: keyring.signer(owner) for role, owner in OWNERS.items()}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.event.kind.value)
@pytest.mark.parametrize("role", list(OWNERS), ids=lambda r: r.value)
def test_every_kind_is_signed_only_by_its_signer_roles(sample: Sample, role: Role, tmp_path: Path,
                                                       keys: tuple[Keyring, dict[Role, KeySigner]]) -> None:
    keyring, signers = keys
    signer = signers[role]
    assert role_of(signer.owner) == role
    log = ProvenanceLog(tmp_path / "provenance")
    log.append(signer, sample.event, actor=sample.actor, subject=sample.subject, digests=sample.digests)
    chain = ChainVerifier(keyring.trust_bundle())
    line = next(log.entries())[1]
    if role in VOCABULARY[sample.event.kind].signers:
        chain.feed("entry", line)
        return
    with pytest.raises(VerificationError) as refused:
        chain.feed("provenance entry log.jsonl:1", line)
    assert f"log.jsonl:1 (seq 1, {sample.event.kind.value}" in refused.value.item
    assert f"role {role.value}" in refused.value.problem and signer.key_id in refused.value.problem


def test_the_hub_alone_signs_the_log_and_offices_only_what_a_province_vouches_for() -> None:
    assert all(cls.signers == {Role.HUB} for cls in VOCABULARY.values())
    assert signer_roles("a-retired-kind") == {Role.HUB}
    office_may_sign = {thing for thing, roles in SIGNERS.items() if Role.PROVINCE_OFFICE in roles}
    # What an office answers for: its exports, the log heads it witnesses, its catalogue items and its reviews.
    assert office_may_sign == {Signed.PROVINCE_EXPORT, Signed.HEAD_COUNTERSIGNATURE, Signed.CATALOGUE_ITEM,
                               Signed.REVIEW_DECISION}
    assert set(SIGNERS) == set(Signed), "every signed thing has its roles"
    assert {Kind(k) for k in VOCABULARY} == set(Kind)


@pytest.mark.parametrize("thing", list(Signed), ids=lambda t: t.value)
@pytest.mark.parametrize("role", list(OWNERS), ids=lambda r: r.value)
def test_every_signed_thing_is_signed_only_by_its_roles(thing: Signed, role: Role,
                                                        keys: tuple[Keyring, dict[Role, KeySigner]]) -> None:
    keyring, signers = keys
    signature = signers[role].sign(b"anything")
    if role in SIGNERS[thing]:
        assert check_signer(keyring.trust_bundle(), signature, thing, "doc").key_id == signers[role].key_id
    else:
        with pytest.raises(VerificationError, match=f"role {role.value}.*{thing.value}"):
            check_signer(keyring.trust_bundle(), signature, thing, "doc")


@given(owner=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,30}", fullmatch=True) | st.sampled_from(list(OWNERS.values())),
       thing=st.sampled_from([*Signed, *Kind]))
def test_any_owner_may_sign_a_thing_exactly_when_its_role_may(owner: str, thing: Signed | Kind) -> None:
    key = TrustedKey(key_id="ed25519:" + "1" * 32, owner=owner, algorithm=ED25519, public_key="",
                     not_before=START, not_after=END)
    bundle = TrustBundle(issued_at=START, keys=[key])
    signature = Signature(key_id=key.key_id, algorithm=ED25519, value="")
    name = thing if isinstance(thing, Signed) else thing.value
    if role_of(owner) in signer_roles(name):
        assert check_signer(bundle, signature, name, "doc") == key
    else:
        with pytest.raises(VerificationError, match=f"{owner} has role {role_of(owner).value}"):
            check_signer(bundle, signature, name, "doc")


# -- no anchor, and anchors that cannot be used ---------------------------------------------------------------


@pytest.mark.usefixtures("unpinned")
def test_without_an_anchor_verify_names_the_root_key_and_is_not_intact(copy: Copy) -> None:
    root = root_ids(copy.keyring.trust_bundle())
    report = verify_home(ExchangeSettings(home=copy.home), record=False)
    assert not report.ok and not report.problems and report.verdict == "UNANCHORED"
    assert report.unpinned == root
    runner = CliRunner()
    plain = runner.invoke(app, ["verify"], env={"EXCHANGE_HOME": str(copy.home), "COLUMNS": "1000"})
    assert plain.exit_code == 3, plain.output
    assert "UNANCHORED" in plain.output and f"export {SETTING}={root[0]}" in plain.output
    as_json = runner.invoke(app, ["verify", "--json"], env={"EXCHANGE_HOME": str(copy.home)})
    assert as_json.exit_code == 3
    assert json.loads(as_json.output)["verdict"] == "UNANCHORED"
    assert json.loads(as_json.output)["unpinned_root_keys"] == root
    # `exchange keys anchor` prints what to pin; pinned, the same home is intact.
    printed = runner.invoke(app, ["keys", "anchor", "--out", str(copy.anchor)], env={"EXCHANGE_HOME": str(copy.home)})
    assert printed.exit_code == 0 and root[0] in printed.output
    pinned = runner.invoke(app, ["verify"], env={"EXCHANGE_HOME": str(copy.home), SETTING: str(copy.anchor)})
    assert pinned.exit_code == 0, pinned.output


@pytest.mark.usefixtures("unpinned")
def test_the_auditor_report_names_the_root_key_to_pin(copy: Copy, tmp_path: Path) -> None:
    out = tmp_path / "audit.html"
    done = CliRunner().invoke(app, ["report", "--out", str(out)], env={"EXCHANGE_HOME": str(copy.home)})
    assert done.exit_code == 0 and "UNANCHORED" in done.output, done.output
    page = out.read_text()
    assert "No trust anchor pinned" in page and root_ids(copy.keyring.trust_bundle())[0] in page


def test_an_anchor_file_inside_the_home_is_refused(copy: Copy) -> None:
    inside = copy.home / "trust-anchor"
    shutil.copy(copy.anchor, inside)
    report = verify_home(ExchangeSettings(home=copy.home, trust_anchor=str(inside)), record=False)
    assert report.verdict == "BROKEN"
    assert any("inside EXCHANGE_HOME" in p.problem for p in report.problems), report.problems


def test_an_anchor_given_as_key_ids_works_like_the_file(copy: Copy) -> None:
    ids = ",".join(root_ids(copy.keyring.trust_bundle()))
    assert verify_home(ExchangeSettings(home=copy.home, trust_anchor=ids), record=False).ok
    wrong = verify_home(ExchangeSettings(home=copy.home, trust_anchor="ed25519:" + "0" * 32), record=False)
    assert any("does not chain to the trust anchor" in p.problem for p in wrong.problems)


def test_a_bundle_not_chaining_to_the_anchor_is_refused_by_pulls_too(copy: Copy) -> None:
    from adapters.authenticity import SourceTrust

    _replace_bundle(copy)
    with pytest.raises(VerificationError, match="does not chain to the trust anchor"):
        SourceTrust(copy.home / "keys", str(copy.anchor)).verifier("jiangsu")
    verify_bundle(copy.keyring.trust_bundle())  # self-consistent: only the anchor tells
