"""The request state machine, pure: each step takes a request and returns the next one, or raises saying why not.

::

    file ──▶ submitted ──return (once)──▶ returned ──resubmit──▶ submitted
                │  │  └──approve──▶ approved ──close──▶ closed
                │  └──refuse (reason)──▶ refused ──dispute──▶ disputed ──uphold──▶ refused
                │                                               └──overturn──▶ submitted (clock restarts)
                └──withdraw (also from returned)──▶ withdrawn

Who may take a step is part of the step: the filing department resubmits, withdraws, disputes and closes
(purpose met); the providing office decides and states its side of a dispute; the coordinating authority
decides disputes; the hub auto-approves unconditional items, closes at the period's end and escalates. No
other step exists, so no sequence of calls reaches a state outside these (tests/unit/test_sharing_machine.py
holds it with Hypothesis). Clock arithmetic is exchange.sharing.workdays'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from exchange.errors import BadInput, Refused
from exchange.provenance.events import HUB, Role, role_of
from exchange.sharing.models import (
    Action,
    CloseReason,
    Decision,
    Dispute,
    DisputeDecision,
    HistoryEntry,
    ItemScope,
    RequestForm,
    Resubmission,
    SharingRequest,
)
from exchange.sharing.workdays import WorkCalendar, active, deadline, is_workday, local_date, workdays_between


class IllegalStep(Refused):
    """A step the request's state or the actor's role does not allow (a decision on a withdrawn request, a
    second return, a review by an office that does not provide the items, ...)."""


def _step(req: SharingRequest, action: Action, actor: str, at: datetime, **changes: Any) -> SharingRequest:
    note = changes.pop("note", "")
    missing = changes.pop("missing_list", [])
    digest = changes.pop("document_sha256", None)
    entry = HistoryEntry(seq=len(req.history) + 1, action=action, actor=actor, at=at, note=note, missing=missing,
                         document_sha256=digest)
    return req.model_copy(update={**changes, "history": [*req.history, entry]})


def _need(req: SharingRequest, action: str, *states: str) -> None:
    if req.state not in states:
        raise IllegalStep(f"request {req.id} is {req.state}: cannot {action} (only when {' or '.join(states)})")


def _department(req: SharingRequest, actor: str, action: str) -> None:
    if actor != req.form.department:
        raise IllegalStep(f"request {req.id}: only the filing department {req.form.department} may {action}, "
                          f"not {actor}")


def new_request(request_id: str, form: RequestForm, provider_office: str, filed_at: datetime, filed_on: date,
                review_days: int, reply_days: int) -> SharingRequest:
    """A freshly filed request (its form already checked against the catalogue by the policy)."""
    req = SharingRequest(id=request_id, form=form, provider_office=provider_office, state="submitted",
                         filed_at=filed_at, clock_from=filed_on, filed_on_workday=is_workday(filed_on),
                         review_days=review_days, reply_days=reply_days, history=[])
    note = "" if req.filed_on_workday else f"filed on a non-working day ({filed_on}): the clock starts on the " \
                                           "next working day"
    return _step(req, "file", form.department, filed_at, note=note)


@dataclass(frozen=True)
class Deadlines:
    """The last day for the office's review (first act: decide or return) and for its reply (approve/refuse)."""

    review: date
    reply: date
    provisional: bool = False  # counted over a year whose holidays are not loaded (Monday-Friday): may move


def deadlines(req: SharingRequest, today: date | None = None) -> Deadlines:
    """The request's deadlines; while it is returned, as if it were resubmitted `today` (the clock stands).
    Always recomputed from the stored dates, so they become final once a provisional year is loaded."""
    cal = active()
    paused = _paused(req, cal)
    if req.state == "returned" and req.returned_on is not None and today is not None:
        paused += workdays_between(req.returned_on, today, cal)
    review = deadline(req.clock_from, req.review_days, paused, cal)
    reply = deadline(req.clock_from, req.reply_days, paused, cal)
    # Stored pauses were counted over the same calendar; the span from filing to the reply deadline covers them.
    return Deadlines(review, reply, cal.provisional(req.clock_from, max(reply, today or reply)))


def _paused(req: SharingRequest, cal: WorkCalendar) -> int:
    """Working days spent returned, recounted from the history's return/resubmit dates over today's calendar
    (paused_workdays stores the count made at resubmission, which a provisional year may have got wrong)."""
    paused, returned = 0, None
    for entry in req.history:
        if entry.action == "return":
            returned = local_date(entry.at)
        elif entry.action == "resubmit" and returned is not None:
            paused += workdays_between(returned, local_date(entry.at), cal)
            returned = None
        elif entry.action == "decide_dispute" and entry.note.startswith("overturn"):
            paused = 0  # an overturned refusal restarts the clock (clock_from, paused_workdays=0)
    return paused


Overdue = Literal["review", "reply"]


def overdue(req: SharingRequest, today: date) -> Overdue | None:
    """Which deadline a request awaiting the office has missed by `today` (None: none, or not awaiting it)."""
    if req.state != "submitted":
        return None
    due = deadlines(req)
    if today > due.reply:
        return "reply"
    if not req.returned_once and today > due.review:
        return "review"
    return None


def _narrowing(req: SharingRequest, scope: list[ItemScope] | None, until: date | None) -> None:
    asked = {s.item: s for s in req.form.items}
    for s in scope or []:
        if s.item not in asked:
            raise BadInput(f"request {req.id}: approval names item {s.item}, which was not asked for")
        extra = [c for c in s.columns if c not in asked[s.item].columns]
        if extra:
            raise BadInput(f"request {req.id}: approval of {s.item} adds columns not asked for: {', '.join(extra)}")
        dropped = [c for c in asked[s.item].row_scope if c not in s.row_scope]
        if dropped:
            raise BadInput(f"request {req.id}: approval of {s.item} drops row conditions asked for; narrowing may "
                           "only add conditions")
    if until is not None and until > req.form.period_until:
        raise BadInput(f"request {req.id}: approved period {until} is longer than asked ({req.form.period_until})")


def apply_decision(req: SharingRequest, decision: Decision, digest: str) -> SharingRequest:
    """Apply an office's (signature-checked) decision: approve, refuse with a reason, or return once."""
    if decision.request_id != req.id:
        raise IllegalStep(f"decision for request {decision.request_id} applied to {req.id}")
    _need(req, f"decide ({decision.outcome})", "submitted")
    if decision.office != req.provider_office:
        raise IllegalStep(f"request {req.id}: {decision.office} does not provide the items asked for; only "
                          f"{req.provider_office} may review it")
    if decision.seq != len(req.history):
        raise IllegalStep(f"request {req.id}: decision made at step {decision.seq}, but the request is at step "
                          f"{len(req.history)} (a replayed or stale decision)")
    at = decision.decided_at
    if decision.outcome == "refuse":
        if not decision.reason.strip():
            raise BadInput(f"request {req.id}: a refusal needs a written reason (--reason)")
        return _step(req, "refuse", decision.office, at, state="refused", refusal_reason=decision.reason.strip(),
                     note=decision.reason.strip(), document_sha256=digest)
    if decision.outcome == "return":
        if req.returned_once:
            raise IllegalStep(f"request {req.id} was already returned once: everything missing must be listed in "
                              "the one notice (一次性告知); approve or refuse it now")
        missing = [m.strip() for m in decision.missing if m.strip()]
        if not missing:
            raise BadInput(f"request {req.id}: a return must list what is missing (--missing, one per item)")
        return _step(req, "return", decision.office, at, state="returned", returned_once=True,
                     returned_on=local_date(at), missing=missing, missing_list=missing, note=decision.reason,
                     document_sha256=digest)
    _narrowing(req, decision.narrowed, decision.period_until)
    scope = decision.narrowed or req.form.items
    narrowed = [s.item for s in decision.narrowed or []] or ([] if decision.period_until is None else ["period"])
    return _step(req, "approve", decision.office, at, state="approved", approved_scope=scope,
                 approved_until=decision.period_until or req.form.period_until,
                 note=decision.reason or (f"narrowed: {', '.join(narrowed)}" if narrowed else ""),
                 document_sha256=digest)


def auto_approve(req: SharingRequest, at: datetime) -> SharingRequest:
    """The hub approves a request for unconditional (无条件) items only, without review (recorded as such)."""
    _need(req, "approve without review", "submitted")
    if len(req.history) != 1:
        raise IllegalStep(f"request {req.id}: only a freshly filed request is approved without review")
    return _step(req, "approve", HUB, at, state="approved", approved_scope=req.form.items,
                 approved_until=req.form.period_until, auto_approved=True,
                 note="无条件共享: approved without review")


def with_grants(req: SharingRequest, grant_ids: list[str]) -> SharingRequest:
    """Record the grants an approval created."""
    _need(req, "record grants", "approved")
    return req.model_copy(update={"grants": grant_ids})


def resubmit(req: SharingRequest, actor: str, resubmission: Resubmission, at: datetime) -> SharingRequest:
    """The department sends a returned request back; the clock resumes with the working days it had left."""
    _need(req, "resubmit", "returned")
    _department(req, actor, "resubmit it")
    assert req.returned_on is not None  # set by every return
    paused = workdays_between(req.returned_on, local_date(at))
    form = req.form.model_copy(update={
        "materials": [*req.form.materials, *resubmission.materials],
        "purpose": resubmission.purpose or req.form.purpose,
        "legal_basis": resubmission.legal_basis or req.form.legal_basis})
    return _step(req, "resubmit", actor, at, state="submitted", form=form, returned_on=None,
                 paused_workdays=req.paused_workdays + paused, note=resubmission.note)


def withdraw(req: SharingRequest, actor: str, at: datetime, note: str = "") -> SharingRequest:
    """The department withdraws a request the office has not decided."""
    _need(req, "withdraw", "submitted", "returned")
    _department(req, actor, "withdraw it")
    return _step(req, "withdraw", actor, at, state="withdrawn", returned_on=None, note=note)


def raise_dispute(req: SharingRequest, actor: str, statement: str, at: datetime) -> SharingRequest:
    """The refused department takes the refusal to the coordinating authority (once)."""
    _need(req, "dispute", "refused")
    _department(req, actor, "dispute the refusal")
    if req.dispute is not None:
        raise IllegalStep(f"request {req.id}: its refusal was already disputed and decided")
    if not statement.strip():
        raise BadInput(f"request {req.id}: a dispute needs the department's statement (--statement)")
    return _step(req, "dispute", actor, at, state="disputed",
                 dispute=Dispute(raised_at=at, department_statement=statement.strip()), note=statement.strip())


def office_statement(req: SharingRequest, actor: str, statement: str, at: datetime) -> SharingRequest:
    """The providing office states its side of a dispute (once)."""
    _need(req, "state the office's side", "disputed")
    if actor != req.provider_office:
        raise IllegalStep(f"request {req.id}: only {req.provider_office} states the office's side, not {actor}")
    assert req.dispute is not None
    if req.dispute.office_statement is not None:
        raise IllegalStep(f"request {req.id}: the office already stated its side")
    if not statement.strip():
        raise BadInput(f"request {req.id}: the office's statement is empty (--statement)")
    return _step(req, "office_statement", actor, at,
                 dispute=req.dispute.model_copy(update={"office_statement": statement.strip()}),
                 note=statement.strip())


def decide_dispute(req: SharingRequest, decision: DisputeDecision, digest: str, signed: Any) -> SharingRequest:
    """The coordinating authority's (signature-checked) decision: the refusal stands, or the office reviews again."""
    _need(req, "decide the dispute", "disputed")
    if role_of(decision.authority) != Role.AUTHORITY:
        raise IllegalStep(f"request {req.id}: only the coordinating authority decides disputes, not "
                          f"{decision.authority}")
    if decision.request_id != req.id or decision.seq != len(req.history):
        raise IllegalStep(f"request {req.id}: dispute decision made at step {decision.seq} of "
                          f"{decision.request_id}, the request is at step {len(req.history)} (replayed or stale)")
    if not decision.reasoning.strip():
        raise BadInput(f"request {req.id}: a dispute decision needs its reasoning (--reasoning)")
    assert req.dispute is not None
    dispute = req.dispute.model_copy(update={"decision": signed})
    at = decision.decided_at
    if decision.outcome == "uphold":
        return _step(req, "decide_dispute", decision.authority, at, state="refused", dispute=dispute,
                     note=f"uphold: {decision.reasoning}", document_sha256=digest)
    return _step(req, "decide_dispute", decision.authority, at, state="submitted", dispute=dispute,
                 refusal_reason=None, clock_from=local_date(at), paused_workdays=0,
                 note=f"overturn: {decision.reasoning}", document_sha256=digest)


def close(req: SharingRequest, actor: str, reason: CloseReason, at: datetime, note: str = "") -> SharingRequest:
    """Close an approved request's use: purpose met (the department), period ended (the hub), revoked (office)."""
    _need(req, "close", "approved")
    allowed = {"purpose_met": req.form.department, "period_ended": HUB, "revoked": req.provider_office}
    if actor != allowed[reason]:
        raise IllegalStep(f"request {req.id}: {reason} is declared by {allowed[reason]}, not {actor}")
    return _step(req, "close", actor, at, state="closed", closed_reason=reason, note=note or reason)


def escalate(req: SharingRequest, today: date, at: datetime) -> SharingRequest:
    """Flag an overdue request to the coordinating authority (once)."""
    missed = overdue(req, today)
    if missed is None:
        raise IllegalStep(f"request {req.id} is not overdue on {today}")
    if req.escalated_at is not None:
        raise IllegalStep(f"request {req.id} was already escalated on {req.escalated_at:%Y-%m-%d}")
    due = deadlines(req)
    return _step(req, "escalate", HUB, at, escalated_at=at,
                 note=f"{missed} deadline {due.reply if missed == 'reply' else due.review} missed")
