"""The sharing process end to end on a real hub home: catalogue signing, filing, reviews, deadlines, disputes,
closure and onward sharing; every bad input and abuse of issue 19 gets its error and a log entry."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from exchange.access.models import Department
from exchange.access.registry import Registry
from exchange.catalogue.build import build_all
from exchange.catalogue.store import Catalogue, verify_item
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.errors import AccessDenied, BadFile, BadInput, NotFound, Refused, VerificationError
from exchange.hub import Hub
from exchange.provenance.log import verify_chain
from exchange.sharing.machine import IllegalStep
from exchange.sharing.models import ItemScope, RequestForm, Resubmission, SignedDecision
from exchange.sharing.service import SharingService, catalogue_dir
from exchange.signing.canonical import canonical_bytes

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DEPARTMENT = Department(id="js.public_security", name="江苏省公安厅", province="jiangsu")
SH_LICENCES = "YRD-DZZZ-000101-SH"  # conditional, Shanghai's office
JS_COMPANIES = "YRD-SCZT-000201-JS"  # unconditional, Jiangsu's office
AH_TRANSFERS = "YRD-GJJ-000401-AH"  # 不予共享 (Anhui publishes it stricter than the contract)
SH = "shanghai.data_office"


class Clock:
    """A settable clock (Monday 2 November 2026, 10:00 in China)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 2, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def days(self, n: int) -> None:
        self.now += timedelta(days=n)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(home: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    # The tests' clock stands in November 2026, possibly before the keys are made: trust them from well before.
    monkeypatch.setattr("exchange.signing.keyring._SKEW", timedelta(days=365))
    hub = Hub(ExchangeSettings(home=home))
    Registry(hub.layout.access).add_department(DEPARTMENT)
    Catalogue(catalogue_dir(hub)).publish(hub.keyring.signer)
    return hub


@pytest.fixture
def service(hub: Hub, clock: Clock) -> SharingService:
    return SharingService(hub, clock=clock)


def form(item: str = SH_LICENCES, **changes: object) -> RequestForm:
    base = RequestForm(department=DEPARTMENT.id, items=[ItemScope(item=item, columns=["license_id", "status"])],
                       purpose="跨省通办核验电子证照", legal_basis="《政务数据共享条例》第十四条",
                       period_until=date(2027, 3, 31), sharing_method="online_query", contact="张三 025-1234567")
    return base.model_copy(update=changes)


def refusals(hub: Hub) -> list[dict[str, object]]:
    return [e.details | {"actor": e.actor, "subject": e.subject} for e in hub.log.read()
            if e.action == "request_refused"]


def actions(hub: Hub, subject: str) -> list[str]:
    return [e.action for e in hub.log.read() if e.subject == subject]


# --- the catalogue ---------------------------------------------------------------------------------------


def test_items_are_signed_by_their_providing_office_and_versioned(hub: Hub, clock: Clock) -> None:
    catalogue = Catalogue(catalogue_dir(hub))
    current = catalogue.current()
    assert len(current) == 16  # four datasets, four provinces
    bundle = hub.keyring.trust_bundle()
    for signed in current.values():
        verify_item(signed, bundle)
        assert bundle.key(signed.signature.key_id).owner == signed.item.provider_office
    item = current[AH_TRANSFERS].item
    assert item.sharing_attribute == "not_shared" and "第三十二条" in (item.not_shared_basis or "")
    assert current[JS_COMPANIES].item.sharing_attribute == "unconditional"
    # Unchanged: no new version; changed: version 2, the old one kept.
    assert catalogue.publish(hub.keyring.signer) == []
    changed = [i.model_copy(update={"max_period_days": 90}) if i.code == SH_LICENCES else i
               for i in build_all(clock())]
    published = catalogue.publish(hub.keyring.signer, changed)
    assert [(s.item.code, s.item.version) for s in published] == [(SH_LICENCES, 2)]
    assert [s.item.version for s in catalogue.history(SH_LICENCES)] == [1, 2]


def test_a_tampered_or_wrongly_signed_item_fails_verification(hub: Hub) -> None:
    signed = Catalogue(catalogue_dir(hub)).current()[SH_LICENCES]
    bundle = hub.keyring.trust_bundle()
    loosened = signed.model_copy(update={"item": signed.item.model_copy(update={"sharing_attribute": "unconditional"})})
    with pytest.raises(VerificationError):
        verify_item(loosened, bundle)
    other = hub.keyring.signer("anhui.data_office")
    forged = signed.model_copy(update={"signature": other.sign(canonical_bytes(signed.item.model_dump(mode="json")))})
    with pytest.raises(VerificationError, match="not by its providing office"):
        verify_item(forged, hub.keyring.trust_bundle())


def test_metadata_cannot_publish_an_item_looser_than_its_contract(tmp_path: Path) -> None:
    from exchange.catalogue.build import METADATA_PATH

    loose = tmp_path / "metadata.yaml"
    loose.write_text(METADATA_PATH.read_text(encoding="utf-8").replace("sharing_attribute: not_shared",
                                                                       "sharing_attribute: unconditional"))
    with pytest.raises(BadFile, match="looser than the contract"):
        build_all(datetime.now(UTC), loose)


def test_the_export_is_documented_by_its_schema(hub: Hub, tmp_path: Path) -> None:
    out = tmp_path / "catalogue.json"
    result = CliRunner().invoke(app, ["catalogue", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    jsonschema.validate(json.loads(out.read_text()), json.loads((SCHEMAS / "catalogue-export.schema.json").read_text()))
    bundle = tmp_path / "bundle.json"
    bundle.write_text(hub.keyring.export_trust().model_dump_json())
    verified = CliRunner().invoke(app, ["catalogue", "verify", str(out), "--trust-bundle", str(bundle)])
    assert verified.exit_code == 0 and "16 items" in verified.output


# --- requests and reviews ---------------------------------------------------------------------------------


def test_returned_once_resubmitted_then_approved_narrowed_becomes_a_linked_grant(service: SharingService,
                                                                                  hub: Hub, clock: Clock) -> None:
    req = service.file(form())
    assert req.state == "submitted" and req.provider_office == SH
    assert service.deadlines(req).review == date(2026, 11, 5) and service.deadlines(req).reply == date(2026, 11, 16)
    clock.days(1)
    req = service.decide(req.id, SH, "return", missing=["单位授权书", "法律依据条文"])
    assert req.state == "returned" and req.missing == ["单位授权书", "法律依据条文"]
    clock.days(7)  # Tuesday 3 -> Tuesday 10 November: five working days returned
    req = service.resubmit(req.id, DEPARTMENT.id, Resubmission(materials=["单位授权书", "法律依据条文"]))
    assert req.paused_workdays == 5 and service.deadlines(req).reply == date(2026, 11, 23)
    narrowed = [ItemScope(item=SH_LICENCES, columns=["status"])]
    req = service.decide(req.id, SH, "approve", narrowed=narrowed, period_until=date(2027, 1, 31))
    assert req.state == "approved" and req.grants == [f"{req.id}.1"]
    grant = Registry(hub.layout.access).grant(req.grants[0]).grant
    assert grant.request == req.id and grant.item == SH_LICENCES and grant.approved_by == SH
    assert grant.columns == ["status"] and grant.expires_on == date(2027, 1, 31)
    assert [(c.column, c.op, c.values) for c in grant.row_filter] == [("region_code", "prefix_in", ["31"])]
    assert actions(hub, req.id) == ["request_file", "request_decision", "request_resubmit", "request_decision"]
    decisions = [e for e in hub.log.read() if e.action == "request_decision"]
    assert all("decision" in e.digests for e in decisions)
    assert [d.decision.outcome for d in service.decisions(req)] == ["return", "approve"]
    assert verify_chain(hub.log, hub.keyring.trust_bundle()) == len(hub.log.read())


def test_an_unconditional_request_is_approved_without_review_and_recorded(service: SharingService, hub: Hub) -> None:
    req = service.file(form(JS_COMPANIES, items=[ItemScope(item=JS_COMPANIES, columns=["uscc", "enterprise_name"])]))
    assert req.state == "approved" and req.auto_approved and req.history[-1].actor == "hub"
    decision = [e for e in hub.log.read() if e.action == "request_decision"][-1]
    assert decision.actor == "hub" and decision.details["without_review"] is True
    assert Registry(hub.layout.access).active_grant(DEPARTMENT.id, "enterprise_registration").grant.request == req.id


@pytest.mark.parametrize(("change", "error", "reason"), [
    ({"items": [ItemScope(item=AH_TRANSFERS, columns=["region_code"])]}, AccessDenied, "不予共享"),
    ({"items": [ItemScope(item=SH_LICENCES, columns=["license_id", "secret_column"])]}, AccessDenied,
     "no column"),
    ({"purpose": ""}, AccessDenied, "purpose and a legal basis"),
    ({"legal_basis": " "}, AccessDenied, "purpose and a legal basis"),
    ({"period_until": date(2028, 12, 31)}, AccessDenied, "365 days at most"),
    ({"sharing_method": "download", "items": [ItemScope(item="YRD-GJJ-000401-SH", columns=["region_code"])]},
     AccessDenied, "not shared by download"),
    ({"department": "js.unregistered"}, NotFound, "unknown department"),
    ({"items": [ItemScope(item="YRD-NOPE-1", columns=["x"])]}, NotFound, "unknown catalogue item"),
])
def test_bad_requests_are_refused_with_a_reason_and_logged(service: SharingService, hub: Hub,
                                                           change: dict[str, object], error: type[Exception],
                                                           reason: str) -> None:
    with pytest.raises(error, match=reason):
        service.file(form(**change))
    logged = refusals(hub)
    assert len(logged) == 1 and logged[0]["attempt"] == "file" and reason in str(logged[0]["reason"])


def test_a_free_sql_row_filter_is_refused_and_logged(hub: Hub, tmp_path: Path) -> None:
    body = json.loads(form().model_dump_json())
    body["items"][0]["row_scope"] = [{"column": "region_code", "op": "in", "values": ["32"], "sql": "1=1 OR TRUE"}]
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body, ensure_ascii=False))
    result = CliRunner().invoke(app, ["requests", "file", str(path)])
    assert result.exit_code == 2 and "free SQL is never accepted" in result.output
    assert refusals(hub)[0]["actor"] == DEPARTMENT.id
    body["items"][0]["row_scope"] = ["region_code LIKE '32%'"]
    path.write_text(json.dumps(body))
    assert CliRunner().invoke(app, ["requests", "file", str(path)]).exit_code == 2
    assert len(refusals(hub)) == 2


def test_review_abuses_are_refused_and_logged(service: SharingService, hub: Hub) -> None:
    req = service.file(form())
    with pytest.raises(IllegalStep, match="does not provide"):
        service.decide(req.id, "anhui.data_office", "approve")
    with pytest.raises(BadInput, match="written reason"):
        service.decide(req.id, SH, "refuse", reason="  ")
    with pytest.raises(BadInput, match="list what is missing"):
        service.decide(req.id, SH, "return", missing=[])
    service.decide(req.id, SH, "return", missing=["授权书"])
    service.resubmit(req.id, DEPARTMENT.id, Resubmission(materials=["授权书"]))
    with pytest.raises(IllegalStep, match="already returned once"):
        service.decide(req.id, SH, "return", missing=["另一份材料"])
    service.withdraw(req.id, DEPARTMENT.id, "no longer needed")
    with pytest.raises(IllegalStep, match="withdrawn"):
        service.decide(req.id, SH, "approve")
    attempts = [r["attempt"] for r in refusals(hub)]
    assert attempts == ["approve", "refuse", "return", "return", "approve"]


def test_forged_and_replayed_decisions_are_refused_and_logged(service: SharingService, hub: Hub) -> None:
    req = service.file(form())
    service.decide(req.id, SH, "return", missing=["授权书"])
    stored = service.decisions(service.get(req.id))[0]
    service.resubmit(req.id, DEPARTMENT.id, Resubmission(materials=["授权书"]))
    with pytest.raises(IllegalStep, match="replayed or stale"):
        service.apply_decision(stored)  # the same signed notice again
    approval = stored.decision.model_copy(update={"outcome": "approve", "seq": 3, "missing": []})
    tampered = SignedDecision(decision=approval, signature=stored.signature)  # the old signature
    with pytest.raises(VerificationError):
        service.apply_decision(tampered)
    impostor = hub.keyring.signer("jiangsu.data_office")  # an office key, but not Shanghai's
    body = canonical_bytes(approval.model_dump(mode="json"))
    forged = SignedDecision(decision=approval, signature=impostor.sign(body))
    with pytest.raises(VerificationError, match="signed by jiangsu.data_office"):
        service.apply_decision(forged)
    by_hub = SignedDecision(decision=approval, signature=hub.keyring.signer("hub").sign(body))
    with pytest.raises(VerificationError, match="province_office"):
        service.apply_decision(by_hub)
    assert service.get(req.id).state == "submitted"
    assert len(refusals(hub)) == 4


def test_filed_on_a_public_holiday_the_clock_starts_on_the_next_working_day(service: SharingService, hub: Hub,
                                                                              clock: Clock) -> None:
    clock.now = datetime(2026, 10, 1, 2, tzinfo=UTC)  # National Day
    req = service.file(form())
    assert not req.filed_on_workday and "next working day" in req.history[0].note
    assert service.deadlines(req).review == date(2026, 10, 10)  # 8, 9 and the working Saturday 10 October
    filed = next(e for e in hub.log.read() if e.action == "request_file")
    assert filed.details["filed_on_workday"] is False and filed.details["review_deadline"] == "2026-10-10"


# --- deadlines, escalation, disputes ------------------------------------------------------------------------


def test_overdue_requests_are_listed_escalated_once_and_alerted(service: SharingService, hub: Hub,
                                                                clock: Clock) -> None:
    late = service.file(form())
    on_time = service.file(form())
    service.decide(on_time.id, SH, "refuse", reason="用途与所需数据不符")
    clock.days(4)  # Friday 6 November: the review deadline (5 November) has passed
    assert [(o.request, o.missed) for o in service.overdue()] == [(late.id, "review")]
    clock.days(14)  # the reply deadline (16 November) too
    path = service.write_alert()
    alert = json.loads(path.read_text())
    assert [o["request"] for o in alert["overdue"]] == [late.id] and alert["overdue"][0]["missed"] == "reply"
    assert alert["overdue"][0]["escalated_at"] is not None
    service.escalate_overdue()
    assert actions(hub, late.id).count("request_escalate") == 1
    result = CliRunner().invoke(app, ["requests", "overdue"], env={"COLUMNS": "250"})
    assert late.id in result.output


def test_a_dispute_is_decided_on_both_statements_and_the_whole_history(service: SharingService, hub: Hub) -> None:
    req = service.file(form())
    service.decide(req.id, SH, "refuse", reason="申请用途与证照核验无关")
    with pytest.raises(BadInput, match="statement"):
        service.dispute(req.id, DEPARTMENT.id, "")
    with pytest.raises(IllegalStep, match="only the filing department"):
        service.dispute(req.id, "zj.other", "x")
    service.dispute(req.id, DEPARTMENT.id, "本部门依法负有核验职责")
    service.office_statement(req.id, SH, "申请未说明核验场景")
    bundle = service.evidence(req.id)
    assert bundle.request.dispute is not None
    assert bundle.request.dispute.department_statement == "本部门依法负有核验职责"
    assert bundle.request.dispute.office_statement == "申请未说明核验场景"
    assert bundle.request.refusal_reason == "申请用途与证照核验无关"
    # The refused attempts are part of the history too.
    assert [e["action"] for e in bundle.log] == ["request_file", "request_decision", "request_refused",
                                                 "request_refused", "dispute_raise", "dispute_statement"]
    with pytest.raises(IllegalStep, match="coordinating authority"):
        service.decide_dispute(req.id, SH, "overturn", "x")
    req = service.decide_dispute(req.id, "authority", "overturn", "职责依据充分，请重新审核")
    assert req.state == "submitted" and req.refusal_reason is None
    decided = [e for e in hub.log.read() if e.action == "dispute_decide"][0]
    assert decided.actor == "authority" and set(decided.digests) == {"decision", "evidence"}
    assert req.dispute is not None and req.dispute.decision is not None
    assert hub.keyring.trust_bundle().key(req.dispute.decision.signature.key_id).owner == "authority"
    service.decide(req.id, SH, "approve")
    assert service.get(req.id).state == "approved"


# --- use bound to purpose ----------------------------------------------------------------------------------


def test_closing_for_purpose_met_ends_the_grants_at_once(service: SharingService, hub: Hub) -> None:
    req = service.file(form(JS_COMPANIES, items=[ItemScope(item=JS_COMPANIES, columns=["uscc"])]))
    registry = Registry(hub.layout.access)
    registry.active_grant(DEPARTMENT.id, "enterprise_registration")
    with pytest.raises(IllegalStep, match="declared by js.public_security"):
        service.close(req.id, SH, "purpose_met")
    service.close(req.id, DEPARTMENT.id, "purpose_met", "案件办结")
    with pytest.raises(AccessDenied, match="revoked"):
        registry.active_grant(DEPARTMENT.id, "enterprise_registration")
    assert service.get(req.id).state == "closed"
    assert actions(hub, req.id)[-1] == "grant_close"


def test_a_request_whose_period_ended_is_closed_by_the_hub(service: SharingService, clock: Clock) -> None:
    req = service.file(form(JS_COMPANIES, items=[ItemScope(item=JS_COMPANIES, columns=["uscc"])],
                            period_until=date(2026, 11, 20)))
    assert service.close_expired() == []
    clock.days(30)
    assert [r.id for r in service.close_expired()] == [req.id]
    assert service.get(req.id).closed_reason == "period_ended"


def test_onward_sharing_needs_the_providers_recorded_consent(service: SharingService, hub: Hub) -> None:
    Registry(hub.layout.access).add_department(Department(id="js.housing_fund", name="江苏省公积金中心",
                                                          province="jiangsu"))
    req = service.file(form(JS_COMPANIES, items=[ItemScope(item=JS_COMPANIES, columns=["uscc"])]))
    grant = req.grants[0]
    with pytest.raises(AccessDenied, match="needs the consent of jiangsu.data_office"):
        service.check_onward(grant, DEPARTMENT.id, "js.housing_fund")
    with pytest.raises(IllegalStep, match="only jiangsu.data_office"):
        service.consent(grant, SH, "js.housing_fund", "联合办案")
    service.consent(grant, "jiangsu.data_office", "js.housing_fund", "联合办案")
    assert service.check_onward(grant, DEPARTMENT.id, "js.housing_fund").office == "jiangsu.data_office"
    assert [r["attempt"] for r in refusals(hub)] == ["onward", "consent"]


def test_the_auditor_report_lists_requests_decisions_and_overdue_items(service: SharingService, hub: Hub,
                                                                        clock: Clock) -> None:
    from exchange.provenance.verify_result import VerifyReport
    from exchange.report.auditor import collect, render

    late = service.file(form())
    refused = service.file(form())
    service.decide(refused.id, SH, "refuse", reason="用途与所需数据不符")
    clock.days(20)
    service.escalate_overdue()
    page = render(collect(hub.layout, VerifyReport(), hub.keyring.trust_bundle()), str(hub.layout.home))
    requests = page.split('class="sharing-requests"')[1].split("</table>")[0]
    assert late.id in requests and refused.id in requests and "refused" in requests
    decisions = page.split('class="sharing-decisions"')[1].split("</table>")[0]
    assert "用途与所需数据不符" in decisions and "request_escalate" in decisions
    overdue = page.split('class="sharing-overdue"')[1].split("</table>")[0]
    assert late.id in overdue and refused.id not in overdue


def test_a_grant_never_exceeds_its_catalogue_item(service: SharingService, hub: Hub, clock: Clock) -> None:
    from exchange.access.models import Grant
    from exchange.access.policy import item_grant_denial
    from exchange.sharing.service import item_terms

    item = item_terms(Catalogue(catalogue_dir(hub)).item(SH_LICENCES))
    grant = Grant(id="g1", department=DEPARTMENT.id, dataset="e_license", columns=["status"], purpose="核验",
                  legal_basis="条例", approved_by=SH, expires_on=date(2027, 1, 31), issued_at=clock(), item=SH_LICENCES)
    assert item_grant_denial(grant, item, "online_query") is None
    too_long = grant.model_copy(update={"expires_on": date(2028, 1, 31)})
    assert item_grant_denial(too_long, item, "online_query").reason == "beyond_item"  # type: ignore[union-attr]
    wrong_office = grant.model_copy(update={"approved_by": "anhui.data_office"})
    assert "only shanghai.data_office" in item_grant_denial(wrong_office, item).message  # type: ignore[union-attr]
    not_shared = item_terms(Catalogue(catalogue_dir(hub)).item(AH_TRANSFERS))
    assert item_grant_denial(grant.model_copy(update={"dataset": "provident_fund_transfer",
                                                      "approved_by": "anhui.data_office"}),
                             not_shared).reason == "item_not_shared"  # type: ignore[union-attr]
    path = hub.layout.home.parent / "grant.json"
    path.write_text(too_long.model_dump_json())
    result = CliRunner().invoke(app, ["grants", "add", str(path)])
    assert result.exit_code == 1 and "365 days at most" in result.output


def test_an_office_holding_its_own_key_signs_outside_and_the_hub_applies_it(service: SharingService, hub: Hub,
                                                                            clock: Clock, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from exchange.sharing.models import Decision
    from exchange.signing.rotation import trust
    from exchange.signing.signers import generate

    office = generate("ed25519", SH)  # the office's own key, never on the hub
    private = serialization.load_pem_private_key(office.private_pem(), password=None)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    trust(hub.keyring, SH, pem, at=clock() - timedelta(days=1))
    req = service.file(form())
    with pytest.raises(Refused, match="signs with its own key"):
        service.decide(req.id, SH, "approve")
    decision = Decision(request_id=req.id, seq=len(service.get(req.id).history), office=SH, outcome="approve",
                        decided_at=clock(), nonce="offline-1")
    signed = SignedDecision(decision=decision, signature=office.sign(canonical_bytes(decision.model_dump(mode="json"))))
    path = tmp_path / "decision.json"
    path.write_text(signed.model_dump_json())
    assert service.apply_decision(signed).state == "approved"
    replay = CliRunner().invoke(app, ["requests", "apply-decision", str(path)])
    assert replay.exit_code == 1 and "is approved" in replay.output
