"""One valid example of every event kind (with an actor allowed to record it and the digests it needs).

Table-driven tests run over SAMPLES; a test holds it to the whole vocabulary, so a new kind needs a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from exchange.provenance import events
from exchange.provenance.events import (
    AccessDenied,
    Checkpoint,
    Cleanup,
    Commit,
    CommitIntent,
    Countersign,
    DepartmentAdd,
    DepartmentExtractKey,
    Download,
    Event,
    Extract,
    GrantEvent,
    GrantRevoke,
    Hold,
    KeyRevoke,
    KeyRotate,
    KeyTrust,
    Kind,
    LicenseCheck,
    Listing,
    Lockout,
    Pull,
    Quarantine,
    Query,
    QueryFailed,
    Recovered,
    Replay,
    Sharing,
    SharingDownload,
    SubjectTrace,
    TokenIssue,
    TokenRevoke,
    Truncate,
    Validate,
    Witness,
)
from exchange.provenance.log import ProvenanceLog
from exchange.signing.keyring import Keyring

H = "ab" * 32
DEPARTMENT = "js.public_security"
OFFICE = "jiangsu.data_office"
REQUEST = "req-20261207-0a1b2c3d"


@dataclass(frozen=True)
class Sample:
    """An event as a call site records it."""

    event: Event
    actor: str
    subject: str
    digests: dict[str, str]


def pull(pulled: int = 3) -> Pull:
    """A pull of `pulled` records (what most log tests append)."""
    return Pull(pulled=pulled, deleted=0, since=None, window_end="2026-12-01T00:00:00Z", source_signatures=[],
                drift=[])


_VERDICT = {"pulled": 3, "accepted": 2, "quarantined": 1, "gx_success": False, "held": False}
BATCH = "jiangsu.e_license.20261201T000000Z"

SAMPLES: list[Sample] = [
    Sample(pull(), "adapter:jiangsu", BATCH, {"licences.csv": H}),
    Sample(Validate(**_VERDICT), "hub", BATCH, {"contract": H}),
    Sample(Quarantine(quarantined=1), "hub", BATCH, {"quarantined.parquet": H}),
    Sample(Hold(**{**_VERDICT, "held": True}), "hub", BATCH, {}),
    Sample(Commit(snapshot_id=2, accepted=2, quarantined=1, manifest="manifests/x.json"), "hub", BATCH,
           {"manifest": H}),
    Sample(CommitIntent(staged=["accepted.parquet", "pull.json"]), "hub", BATCH,
           {"accepted.parquet": H, "pull.json": H}),
    Sample(Recovered(outcome="committed", snapshot_id=2, missing="manifest and commit entry"), "hub", BATCH,
           {"manifest": H}),
    Sample(Cleanup(removed=[{"path": "staging/x/.a.1.tmp", "size": 3, "why": "temporary file of a writer that died"}]),
           "hub", "recovery", {}),
    Sample(Replay(origin=BATCH, rule=None, replayed=1, accepted=1, quarantined=0, contract_version="1.1.0",
                  origin_contract_version="1.0.0"), "hub", BATCH + ".r1",
           {"origin_manifest": H, "replayed_records": H, "contract": H}),
    Sample(Extract(grant="g1", dataset="e_license", snapshot_id=2, rows=2, columns=["license_id"], token_id=None,
                   out="/tmp/x"), DEPARTMENT, "x1", {"extract_manifest": H, "part-0.parquet": H}),
    Sample(Download(token_id="t1", file="part-0.parquet"), DEPARTMENT, "x1", {"part-0.parquet": H}),
    Sample(Listing(token_id="t1", grants=["g1"]), DEPARTMENT, "me", {}),
    Sample(Query(token_id=None, grants={"e_license": "g1"}, snapshot_id=2, columns=["license_id"], rows=2),
           DEPARTMENT, "e_license", {"sql": H, "result": H}),
    Sample(QueryFailed(error="BadQuery", sql_sha256=H), DEPARTMENT, "query", {"sql": H}),
    Sample(AccessDenied(attempt=Kind.EXTRACT, reason="no grant"), DEPARTMENT, "e_license", {}),
    Sample(Lockout(scope="token", token_id="t1", failures=5, window_seconds=3600.0,
                   locked_until="2026-12-06T12:15:00+00:00"), DEPARTMENT, DEPARTMENT, {}),
    Sample(LicenseCheck(token_id="t1", check_id="c1", snapshot_id=2, answer="valid", holder_checked=False),
           DEPARTMENT, "e_license", {"answer": H}),
    Sample(Sharing(token_id="t1", operation="query", grants=["g1"], snapshot_id=2, rows=2, files=["f.parquet"],
                   urls_expire_at="2026-12-06T12:15:00+00:00"), DEPARTMENT, "js__ps.datasets.e_license", {}),
    Sample(SharingDownload(token_id="t1", dataset="e_license", snapshot_id=2, file="f.parquet", rows=2,
                           method="GET"), DEPARTMENT, "g1", {"file": H}),
    Sample(GrantEvent(department=DEPARTMENT, dataset="e_license"), OFFICE, "g1", {}),
    Sample(GrantRevoke(reason="purpose fulfilled"), OFFICE, "g1", {"revocation": H}),
    Sample(DepartmentAdd(name="Public security"), "hub", DEPARTMENT, {}),
    Sample(DepartmentExtractKey(key_id="x25519:ab"), "hub", DEPARTMENT, {}),
    Sample(TokenIssue(department=DEPARTMENT, expires_at="2027-03-01T00:00:00+00:00"), "hub", "t1", {}),
    Sample(TokenRevoke(department=DEPARTMENT), "operator", "t1", {}),
    Sample(SubjectTrace(disclosures=1), "auditor", "hmac-sha256:" + H, {}),
    Sample(KeyTrust.model_validate({"key": "ed25519:ab", "algorithm": "ed25519", "from": "2026-12-01T00:00:00"}),
           "hub", "jiangsu", {}),
    Sample(KeyRotate(new_key="ed25519:cd", algorithm="ed25519", endorsed_by="ed25519:ab"), "hub", "hub", {}),
    Sample(KeyRevoke(owner="hub", revoked_at="2026-12-01T00:00:00+00:00", reason="compromised"), "hub",
           "ed25519:ab", {}),
    Sample(Checkpoint(lake_snapshot=2, manifests=1), "hub", "provenance", {}),
    Sample(Truncate(archive="provenance-1.tar", segment=1, first_seq=5, removed_entries=4), "hub", "provenance",
           {"archive": H}),
    Sample(Countersign(seq=9, entry_hash=H, time="2026-12-06T00:00:00+00:00"), OFFICE, "provenance", {}),
    Sample(Witness(head_seq=9, head_hash=H, witnesses=[OFFICE, "tsa:local"],
                   countersignatures=[{"witness": OFFICE, "key_id": "ed25519:ab", "value": "c2ln"}]),
           "hub", "provenance", {"receipt": H, "tsa:local": H}),
    Sample(events.CataloguePublish(version=1, dataset="e_license", attribute="conditional"), OFFICE,
           "YRD-DZZZ-000101-JS", {"item": H}),
    Sample(events.RequestFile(items=["YRD-DZZZ-000101-JS"], provider_office=OFFICE, review_deadline="2026-12-10",
                              reply_deadline="2026-12-21", filed_on_workday=True), DEPARTMENT, REQUEST, {"form": H}),
    Sample(events.RequestDecision(outcome="return", reason="", missing=["authorisation letter"]), OFFICE, REQUEST,
           {"decision": H}),
    Sample(events.RequestResubmit(materials=["authorisation letter"], paused_workdays=2,
                                  reply_deadline="2026-12-23"), DEPARTMENT, REQUEST, {}),
    Sample(events.RequestWithdraw(note="no longer needed"), DEPARTMENT, REQUEST, {}),
    Sample(events.RequestEscalate(missed="reply", deadline="2026-12-21", provider_office=OFFICE), "hub", REQUEST,
           {}),
    Sample(events.DisputeRaise(statement="statutory duty"), DEPARTMENT, REQUEST, {}),
    Sample(events.DisputeStatement(statement="purpose unclear"), OFFICE, REQUEST, {}),
    Sample(events.DisputeDecide(outcome="uphold", reasoning="the refusal's reason holds"), "authority", REQUEST,
           {"decision": H, "evidence": H}),
    Sample(events.GrantClose(reason="purpose_met", grants=[f"{REQUEST}.1"]), DEPARTMENT, REQUEST, {}),
    Sample(events.OnwardConsent(to_department="js.housing_fund", purpose="joint case"), OFFICE, f"{REQUEST}.1",
           {"consent": H}),
    Sample(events.RequestRefused(attempt="return", reason="already returned once"), OFFICE, REQUEST, {}),
]


class InFlight:
    """An append another process is in the middle of: the entry's line half written, the rest written once the
    log's lock is next taken (the appender holds that lock until its line is complete)."""

    def __init__(self, log: ProvenanceLog, keyring: Keyring) -> None:
        self.log = log
        log.append(keyring.signer(), pull(), actor="adapter:other", subject="in-flight")
        data = log.path.read_bytes()
        line = data[data.rstrip(b"\n").rfind(b"\n") + 1:]
        cut = len(data) - len(line) // 2
        self.rest = data[cut:]
        with log.path.open("r+b") as handle:
            handle.truncate(cut)

    def finish(self) -> None:
        with self.log.path.open("ab") as handle:
            handle.write(self.rest)
