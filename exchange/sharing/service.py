"""The sharing service: the one place the CLI, the API (and the web pages on it) take sharing steps through.

Each step reads the state, asks the pure parts (exchange.access.policy for what a request or grant may
contain, exchange.sharing.machine for whether the step is allowed now, exchange.sharing.workdays for the
clock), writes the new state under the sharing lock, and appends one provenance entry. Decisions are signed
by the deciding party's key (a province office's, the coordinating authority's) and verified as any outside
document would be before they are applied: a forged one fails the signature or role check, a replayed one
the step check. Every refusal, of any step, is logged as ``request_refused`` with the reason given.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from exchange.access.models import Grant, RowCondition
from exchange.access.policy import (
    ItemTerms,
    item_grant_denial,
    item_scope_denial,
    onward_denial,
    require,
    without_review,
)
from exchange.access.registry import Registry
from exchange.catalogue.build import REGION_PREFIXES
from exchange.catalogue.models import CatalogueItem, SignedCatalogueItem
from exchange.catalogue.store import Catalogue
from exchange.errors import AccessDenied, BadInput, Refused, UserError, VerificationError
from exchange.hub import Hub
from exchange.provenance import events
from exchange.provenance.events import HUB, Role, role_of
from exchange.sharing import machine
from exchange.sharing.models import (
    CloseReason,
    Decision,
    DisputeDecision,
    ItemScope,
    OnwardConsent,
    RequestForm,
    Resubmission,
    SharingRequest,
    SignedDecision,
    SignedDisputeDecision,
)
from exchange.sharing.store import SharingStore
from exchange.sharing.workdays import local_date
from exchange.signing.canonical import canonical_bytes, document_digest
from exchange.signing.roles import Signed, check_signer
from exchange.signing.trust import verify_signature

AUTHORITY = "authority"
"""The coordinating authority's default actor (and key owner)."""

DIRECT_METHODS = ("download", "system_interface")  # methods that get a standing extract on approval


def sharing_dir(hub: Hub) -> Path:
    """EXCHANGE_HOME/sharing."""
    return hub.layout.home / "sharing"


def catalogue_dir(hub: Hub) -> Path:
    """EXCHANGE_HOME/catalogue."""
    return hub.layout.home / "catalogue"


def publish_catalogue(hub: Hub) -> list[SignedCatalogueItem]:
    """Build the items from the contracts and metadata, sign each changed one with its providing office's key
    and log its publication (`catalogue_publish`); the new item versions."""
    published = Catalogue(catalogue_dir(hub)).publish(hub.keyring.signer)
    for signed in published:
        item = signed.item
        hub.log.append(hub.signer, events.CataloguePublish(version=item.version, dataset=item.dataset,
                                                           attribute=item.sharing_attribute),
                       actor=item.provider_office, subject=item.code,
                       digests={"item": document_digest(signed.model_dump(mode="json"))})
    return published


def item_terms(item: CatalogueItem) -> ItemTerms:
    """What the policy needs of a catalogue item."""
    return ItemTerms(code=item.code, dataset=item.dataset, attribute=item.sharing_attribute,
                     columns=tuple(item.columns), max_period_days=item.max_period_days,
                     methods=tuple(item.sharing_methods), provider_office=item.provider_office,
                     basis=item.not_shared_basis)


class OverdueRequest(BaseModel, frozen=True):
    """A request awaiting its office past a deadline (what `requests overdue` and the alert list)."""

    request: str = Field(description="Request id")
    department: str = Field(description="Requesting department")
    provider_office: str = Field(description="Office that missed the deadline")
    missed: Literal["review", "reply"] = Field(description="Which deadline was missed")
    deadline: date = Field(description="That deadline")
    escalated_at: datetime | None = Field(description="When it was escalated to the coordinating authority")
    provisional: bool = Field(default=False, description="The deadline was counted Monday-Friday over a year whose "
                                                         "holiday arrangement is not loaded yet")


class EvidenceBundle(BaseModel, frozen=True):
    """What the coordinating authority decides a dispute on: both statements and the request's whole history."""

    request: SharingRequest = Field(description="The request with its history, refusal and dispute")
    decisions: list[SignedDecision] = Field(description="Every signed office decision applied to it")
    log: list[dict[str, Any]] = Field(description="Every provenance entry about the request, in order")


class SharingService:
    """Sharing steps over one hub; `clock` is injectable (tests move time across working days)."""

    def __init__(self, hub: Hub, clock: Callable[[], datetime] | None = None) -> None:
        self.hub = hub
        self.clock = clock or (lambda: datetime.now(UTC))
        self.store = SharingStore(sharing_dir(hub))
        self.catalogue = Catalogue(catalogue_dir(hub))
        self.registry = Registry(hub.layout.access)

    # --- helpers ---------------------------------------------------------------------------------------

    def today(self) -> date:
        """Today in China."""
        return local_date(self.clock())

    @contextmanager
    def refusing(self, actor: str, attempt: str, subject: str) -> Iterator[None]:
        """Log any refusal or bad input of the step as request_refused, then let it through to the caller."""
        try:
            yield
        except UserError as refused:
            self.hub.log.append(self.hub.signer, events.RequestRefused(attempt=attempt, reason=str(refused)),
                                actor=actor, subject=subject)
            raise

    def _log(self, event: events.Event, actor: str, subject: str, digests: dict[str, str] | None = None) -> None:
        self.hub.log.append(self.hub.signer, event, actor=actor, subject=subject, digests=digests)

    def get(self, request_id: str) -> SharingRequest:
        """One request."""
        return self.store.get(request_id)

    def requests(self, *, department: str | None = None, office: str | None = None,
                 state: str | None = None) -> list[SharingRequest]:
        """Requests, optionally of one department, to one office, in one state."""
        return [r for r in self.store.all()
                if (department is None or r.form.department == department)
                and (office is None or r.provider_office == office) and (state is None or r.state == state)]

    def deadlines(self, req: SharingRequest) -> machine.Deadlines:
        """The request's review and reply deadlines as of today."""
        return machine.deadlines(req, self.today())

    # --- filing ----------------------------------------------------------------------------------------

    def file(self, form: RequestForm, token_id: str | None = None) -> SharingRequest:
        """File a request: checked against the catalogue, deadlines set; approved at once if all items are 无条件."""
        with self.refusing(form.department, "file", "request"):
            self.registry.department(form.department)  # a department no longer registered files nothing
            items = [self.catalogue.item(s.item) for s in form.items]
            offices = sorted({i.provider_office for i in items})
            if len(offices) > 1:
                raise BadInput(f"one request goes to one providing office; these items come from "
                               f"{', '.join(offices)}: file one request per office")
            if len({s.item for s in form.items}) != len(form.items):
                raise BadInput("an item is named twice in the request; name each once")
            today = self.today()
            for scope, item in zip(form.items, items, strict=True):
                require(item_scope_denial(item_terms(item), scope.columns, [c.column for c in scope.row_scope],
                                          form.purpose, form.legal_basis, form.period_until, form.sharing_method,
                                          today))
            from exchange.province_config import load_province

            office = offices[0]
            limits = load_province(items[0].province).sharing
            now = self.clock()
            request_id = f"req-{today:%Y%m%d}-{secrets.token_hex(4)}"
            req = machine.new_request(request_id, form, office, now, today, limits.review_days, limits.reply_days)
        due = machine.deadlines(req)
        with self.store.locked():
            self.store.put(req)
        self._log(events.RequestFile(items=[s.item for s in form.items], provider_office=office,
                                     review_deadline=due.review.isoformat(), reply_deadline=due.reply.isoformat(),
                                     filed_on_workday=req.filed_on_workday,
                                     **({"token_id": token_id} if token_id else {})),
                  actor=form.department, subject=req.id,
                  digests={"form": document_digest(form.model_dump(mode="json"))})
        if without_review([item_terms(i) for i in items]):
            req = self._auto_approve(req)
            self._standing_extracts(req)
        return req

    def _auto_approve(self, req: SharingRequest) -> SharingRequest:
        with self.store.locked():
            req = machine.auto_approve(self.store.get(req.id), self.clock())
            req = machine.with_grants(req, self._create_grants(req))
            self.store.put(req)
        self._log(events.RequestDecision(outcome="approve", reason="无条件共享", grants=req.grants,
                                         without_review=True), actor=HUB, subject=req.id)
        return req

    # --- decisions -------------------------------------------------------------------------------------

    def decide(self, request_id: str, office: str, outcome: Literal["approve", "refuse", "return"], *,
               reason: str = "", missing: list[str] | None = None, narrowed: list[ItemScope] | None = None,
               period_until: date | None = None) -> SharingRequest:
        """The office decides: the hub signs the decision with the office's key, then applies it as any other."""
        with self.refusing(office, outcome, request_id):
            if role_of(office) != Role.PROVINCE_OFFICE:
                raise machine.IllegalStep(f"{office} is not a province data office; only the providing office "
                                          "reviews a request")
            req = self.store.get(request_id)
            decision = Decision(request_id=request_id, seq=len(req.history), office=office, outcome=outcome,
                                reason=reason, missing=missing or [], narrowed=narrowed, period_until=period_until,
                                decided_at=self.clock(), nonce=secrets.token_hex(8))
            if req.provider_office != office:  # refused before the office's key is touched (or created)
                machine.apply_decision(req, decision, "")
            try:
                signer = self.hub.keyring.signer(office)
            except ValueError:  # the office holds its own key (imported with trust): the hub never signs as it
                raise Refused(f"{office} signs with its own key: sign the decision document yourself and hand it "
                              "to `exchange requests apply-decision`") from None
            signed = SignedDecision(decision=decision,
                                    signature=signer.sign(canonical_bytes(decision.model_dump(mode="json"))))
        return self.apply_decision(signed)

    def verify_decision(self, signed: SignedDecision) -> None:
        """A decision's signature is valid and made by its office's key (VerificationError otherwise)."""
        d = signed.decision
        item = f"decision {d.nonce} on {d.request_id}"
        bundle = self.hub.keyring.trust_bundle()
        verify_signature(bundle, signed.signature, canonical_bytes(d.model_dump(mode="json")), d.decided_at, item)
        key = check_signer(bundle, signed.signature, Signed.REVIEW_DECISION, item)
        if key.owner != d.office:
            raise VerificationError(item, f"claims to be {d.office}'s but is signed by {key.owner}'s key")

    def apply_decision(self, signed: SignedDecision) -> SharingRequest:
        """Apply a signed office decision (also one signed outside the hub): verified, then one step."""
        d = signed.decision
        with self.refusing(d.office, d.outcome, d.request_id if d.request_id.startswith("req-") else "request"):
            self.verify_decision(signed)
            digest = document_digest(signed.model_dump(mode="json"))
            with self.store.locked():
                req = machine.apply_decision(self.store.get(d.request_id), d, digest)
                if req.state == "approved":
                    req = machine.with_grants(req, self._create_grants(req))
                self._save_decision(signed, digest)
                self.store.put(req)
        details: dict[str, Any] = {"outcome": d.outcome, "reason": d.reason}
        if d.outcome == "return":
            details["missing"] = req.missing
        if d.outcome == "approve":
            details["grants"] = req.grants
        self._log(events.RequestDecision(**details), actor=d.office, subject=d.request_id,
                  digests={"decision": digest})
        if req.state == "approved":
            self._standing_extracts(req)
        return req

    def _save_decision(self, signed: BaseModel, digest: str) -> None:
        folder = self.store.dir / "decisions"
        folder.mkdir(parents=True, exist_ok=True)
        from exchange.atomic import write_text

        write_text(folder / f"{digest}.json", signed.model_dump_json(indent=1))

    def decisions(self, req: SharingRequest) -> list[SignedDecision]:
        """The signed office decisions applied to a request, in order."""
        folder = self.store.dir / "decisions"
        found = []
        for entry in req.history:
            path = folder / f"{entry.document_sha256}.json"
            if entry.document_sha256 and entry.action in ("approve", "refuse", "return") and path.exists():
                found.append(SignedDecision.model_validate_json(path.read_text(encoding="utf-8")))
        return found

    def _create_grants(self, req: SharingRequest) -> list[str]:
        """Record one grant per approved item (held to the contract and to the item by the policy)."""
        assert req.approved_scope is not None and req.approved_until is not None
        ids = []
        for n, scope in enumerate(req.approved_scope, start=1):
            item = self.catalogue.item(scope.item)
            # An item is its province's rows: the grant says so with the region prefix of GB/T 2260.
            rows = [*scope.row_scope, RowCondition(column="region_code", op="prefix_in",
                                                   values=[REGION_PREFIXES[item.province]])]
            grant = Grant(id=f"{req.id}.{n}", department=req.form.department, dataset=item.dataset,
                          columns=scope.columns, row_filter=rows, purpose=req.form.purpose,
                          legal_basis=req.form.legal_basis, approved_by=item.provider_office,
                          expires_on=req.approved_until, issued_at=self.clock(), request=req.id, item=item.code)
            require(item_grant_denial(grant, item_terms(item), req.form.sharing_method))
            self.registry.add_grant(grant, self.hub.signer)
            self._log(events.GrantEvent(department=grant.department, dataset=grant.dataset),
                      actor=item.provider_office, subject=grant.id)
            ids.append(grant.id)
        return ids

    def _standing_extracts(self, req: SharingRequest) -> None:
        """下载 / 系统对接: cut the first standing extract now, where a lake exists (publish refreshes them)."""
        if req.form.sharing_method not in DIRECT_METHODS or not self.hub.layout.lake_catalog_file.exists():
            return
        from exchange.access.service import extract_for_department, latest_snapshot

        snapshot = latest_snapshot(self.hub)
        for grant_id in req.grants:
            grant = self.registry.grant(grant_id).grant
            out = self.hub.layout.extracts / grant.department / "standing" / f"{grant.dataset}-s{snapshot}"
            if not out.exists():
                extract_for_department(self.hub, grant.department, grant.dataset, out, snapshot)

    # --- the department's steps -------------------------------------------------------------------------

    def resubmit(self, request_id: str, actor: str, resubmission: Resubmission) -> SharingRequest:
        """Send a returned request back with what was missing."""
        with self.refusing(actor, "resubmit", request_id), self.store.locked():
            req = machine.resubmit(self.store.get(request_id), actor, resubmission, self.clock())
            self.store.put(req)
        self._log(events.RequestResubmit(materials=resubmission.materials, paused_workdays=req.paused_workdays,
                                         reply_deadline=machine.deadlines(req).reply.isoformat()),
                  actor=actor, subject=request_id)
        return req

    def withdraw(self, request_id: str, actor: str, note: str = "") -> SharingRequest:
        """Withdraw an undecided request."""
        with self.refusing(actor, "withdraw", request_id), self.store.locked():
            req = machine.withdraw(self.store.get(request_id), actor, self.clock(), note)
            self.store.put(req)
        self._log(events.RequestWithdraw(note=note), actor=actor, subject=request_id)
        return req

    def dispute(self, request_id: str, actor: str, statement: str) -> SharingRequest:
        """Take a refusal to the coordinating authority."""
        with self.refusing(actor, "dispute", request_id), self.store.locked():
            req = machine.raise_dispute(self.store.get(request_id), actor, statement, self.clock())
            self.store.put(req)
        self._log(events.DisputeRaise(statement=statement.strip()), actor=actor, subject=request_id)
        return req

    def office_statement(self, request_id: str, actor: str, statement: str) -> SharingRequest:
        """The providing office's side of a dispute."""
        with self.refusing(actor, "office_statement", request_id), self.store.locked():
            req = machine.office_statement(self.store.get(request_id), actor, statement, self.clock())
            self.store.put(req)
        self._log(events.DisputeStatement(statement=statement.strip()), actor=actor, subject=request_id)
        return req

    # --- disputes -------------------------------------------------------------------------------------

    def evidence(self, request_id: str) -> EvidenceBundle:
        """Both statements and the request's whole history: what a dispute is decided on."""
        from exchange.provenance.archive import history_lines
        from exchange.provenance.log import ProvenanceEntry

        req = self.store.get(request_id)
        log = []
        # The whole history: entries a truncation moved into the archives are evidence too.
        for line in history_lines(self.hub.log):
            entry = ProvenanceEntry.model_validate_json(line)
            if entry.subject == request_id or entry.subject.startswith(f"{request_id}."):
                log.append(entry.model_dump(mode="json"))
        return EvidenceBundle(request=req, decisions=self.decisions(req), log=log)

    def decide_dispute(self, request_id: str, authority: str, outcome: Literal["uphold", "overturn"],
                       reasoning: str) -> SharingRequest:
        """The coordinating authority decides, signing with its key."""
        with self.refusing(authority, "decide_dispute", request_id):
            if role_of(authority) != Role.AUTHORITY:
                raise machine.IllegalStep(f"{authority} is not the coordinating authority (authority or "
                                          "authority:<name>); only it decides disputes")
            req = self.store.get(request_id)
            evidence = document_digest(self.evidence(request_id).model_dump(mode="json"))
            decision = DisputeDecision(request_id=request_id, seq=len(req.history), authority=authority,
                                       outcome=outcome, reasoning=reasoning, evidence_sha256=evidence,
                                       decided_at=self.clock(), nonce=secrets.token_hex(8))
            signer = self.hub.keyring.signer(authority)
            signed = SignedDisputeDecision(decision=decision, signature=signer.sign(
                canonical_bytes(decision.model_dump(mode="json"))))
        return self.apply_dispute_decision(signed)

    def apply_dispute_decision(self, signed: SignedDisputeDecision) -> SharingRequest:
        """Apply a signed dispute decision (verified: signature, authority role, step)."""
        d = signed.decision
        with self.refusing(d.authority, "decide_dispute", d.request_id):
            item = f"dispute decision {d.nonce} on {d.request_id}"
            bundle = self.hub.keyring.trust_bundle()
            verify_signature(bundle, signed.signature, canonical_bytes(d.model_dump(mode="json")), d.decided_at,
                             item)
            key = check_signer(bundle, signed.signature, Signed.DISPUTE_DECISION, item)
            if key.owner != d.authority:
                raise VerificationError(item, f"claims to be {d.authority}'s but is signed by {key.owner}'s key")
            digest = document_digest(signed.model_dump(mode="json"))
            with self.store.locked():
                req = machine.decide_dispute(self.store.get(d.request_id), d, digest, signed)
                self._save_decision(signed, digest)
                self.store.put(req)
        self._log(events.DisputeDecide(outcome=d.outcome, reasoning=d.reasoning), actor=d.authority,
                  subject=d.request_id, digests={"decision": digest, "evidence": d.evidence_sha256})
        return req

    # --- deadlines --------------------------------------------------------------------------------------

    def overdue(self, today: date | None = None) -> list[OverdueRequest]:
        """Requests awaiting their office past a deadline."""
        today = today or self.today()
        found = []
        for req in self.requests(state="submitted"):
            missed = machine.overdue(req, today)
            if missed is not None:
                due = machine.deadlines(req)
                found.append(OverdueRequest(request=req.id, department=req.form.department,
                                            provider_office=req.provider_office, missed=missed,
                                            deadline=due.reply if missed == "reply" else due.review,
                                            escalated_at=req.escalated_at, provisional=due.provisional))
        return found

    def escalate_overdue(self, today: date | None = None) -> list[OverdueRequest]:
        """Escalate every overdue request not escalated yet to the coordinating authority; the full list after."""
        today = today or self.today()
        for late in self.overdue(today):
            if late.escalated_at is not None:
                continue
            with self.store.locked():
                req = machine.escalate(self.store.get(late.request), today, self.clock())
                self.store.put(req)
            self._log(events.RequestEscalate(missed=late.missed, deadline=late.deadline.isoformat(),
                                             provider_office=late.provider_office), actor=HUB, subject=late.request)
        return self.overdue(today)

    def write_alert(self, today: date | None = None) -> Path:
        """Escalate, then write reports/alerts/sharing-overdue-<date>.json (the daily alert file)."""
        import json

        from exchange.atomic import write_text

        today = today or self.today()
        late = self.escalate_overdue(today)
        path = self.hub.layout.home / "reports" / "alerts" / f"sharing-overdue-{today.isoformat()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps({"date": today.isoformat(), "overdue": [o.model_dump(mode="json") for o in late]},
                                    ensure_ascii=False, indent=1))
        return path

    # --- use bound to purpose -----------------------------------------------------------------------------

    def close(self, request_id: str, actor: str, reason: CloseReason, note: str = "") -> SharingRequest:
        """End an approved request's use: every grant it created is revoked at once (queries, extracts,
        standing extracts and token access under them stop)."""
        with self.refusing(actor, "close", request_id), self.store.locked():
            req = machine.close(self.store.get(request_id), actor, reason, self.clock(), note)
            revoked_by = req.provider_office if reason != "purpose_met" else actor
            for grant_id in req.grants:
                if grant_id not in self.registry.revoked_grants():
                    self.registry.revoke_grant(grant_id, revoked_by, f"{reason}: {note or reason}", self.hub.signer,
                                               at=self.clock())
            self.store.put(req)
        self._log(events.GrantClose(reason=reason, grants=req.grants), actor=actor, subject=request_id)
        return req

    def close_expired(self, today: date | None = None) -> list[SharingRequest]:
        """Close every approved request whose period has ended (the hub declares it)."""
        today = today or self.today()
        return [self.close(r.id, HUB, "period_ended", f"period ended {r.approved_until}")
                for r in self.requests(state="approved") if r.approved_until is not None and r.approved_until < today]

    def consent(self, grant_id: str, office: str, to_department: str, purpose: str) -> OnwardConsent:
        """The providing office consents to the grant's data going on to another department (signed, recorded)."""
        with self.refusing(office, "consent", grant_id):
            grant = self.registry.grant(grant_id).grant
            if office != grant.approved_by:
                raise machine.IllegalStep(f"only {grant.approved_by}, which provides grant {grant_id}'s data, may "
                                          f"consent to passing it on, not {office}")
            if not purpose.strip():
                raise BadInput("a consent states the purpose it is given for (--purpose)")
            self.registry.department(to_department)
            body = {"grant_id": grant_id, "to_department": to_department, "office": office,
                    "purpose": purpose.strip(), "at": self.clock().isoformat()}
            signature = self.hub.keyring.signer(office).sign(canonical_bytes(body))
            consent = OnwardConsent.model_validate({**body, "signature": signature.model_dump()})
            with self.store.locked():
                self.store.add_consent(consent)
        self._log(events.OnwardConsent(to_department=to_department, purpose=consent.purpose), actor=office,
                  subject=grant_id, digests={"consent": document_digest(consent.model_dump(mode="json"))})
        return consent

    def check_onward(self, grant_id: str, holder: str, to_department: str) -> OnwardConsent:
        """May `holder` pass data received under `grant_id` on to `to_department`? The consent, or AccessDenied."""
        with self.refusing(holder, "onward", grant_id):
            grant = self.registry.grant(grant_id).grant
            if grant.department != holder:
                raise AccessDenied(f"grant {grant_id} is not {holder}'s")
            pairs = {(c.grant_id, c.to_department): c for c in self.store.consents()}
            require(onward_denial(grant, to_department, pairs))
            return pairs[(grant_id, to_department)]
