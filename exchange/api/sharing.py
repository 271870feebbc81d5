"""The sharing API: catalogue, requests, reviews, disputes and the overdue list (one APIRouter).

Every party authenticates with its own bearer token: a department with the token `exchange departments
token` issued, a province data office or the coordinating authority with one from `exchange requests token`.
Who may take which step is decided by exchange.sharing (the service and its state machine), not here; this
module only maps HTTP onto it. Refusals are logged there, as ``request_refused``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from exchange.api.app import ERRORS, identify, refuse_client
from exchange.api.state import hub_of
from exchange.catalogue.models import CatalogueItem, SignedCatalogueItem
from exchange.errors import AccessDenied, AuthenticationFailed
from exchange.provenance.events import Role, role_of
from exchange.sharing.machine import overdue
from exchange.sharing.models import ItemScope, RequestForm, Resubmission, SharingRequest
from exchange.sharing.service import EvidenceBundle, OverdueRequest, SharingService

router = APIRouter(prefix="/v1", tags=["sharing"], responses=ERRORS)
BEARER = HTTPBearer(auto_error=False, description="<token id>.<secret>")


@dataclass(frozen=True)
class Party:
    """Who is calling: a department, a province data office or the coordinating authority."""

    actor: str
    role: Role
    token_id: str



def party(request: Request,
          credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Party:
    """The calling party, or 401 (counted per client address like any other refused token)."""
    from exchange.sharing.parties import authenticate
    from exchange.sharing.service import sharing_dir
    from exchange.sharing.store import SharingStore

    hub = hub_of(request)
    bearer = credentials.credentials if credentials else None
    try:
        found = authenticate(SharingStore(sharing_dir(hub)), bearer) if bearer else None
        if found is not None:
            return Party(found.party, role_of(found.party), found.id)
        caller = identify(hub, bearer)
    except AuthenticationFailed as failed:
        raise refuse_client(request, failed) from None
    request.state.caller = caller
    return Party(caller.department.id, Role.DEPARTMENT, caller.token.id)


Caller = Annotated[Party, Depends(party)]


def _service(request: Request) -> SharingService:
    # app.state.sharing_clock: tests pin the date (deadlines must not depend on the day the suite runs)
    return SharingService(hub_of(request), clock=getattr(request.app.state, "sharing_clock", None))


class RequestView(BaseModel, frozen=True):
    """A request with its deadlines as of today."""

    request: SharingRequest = Field(description="The request and its whole history")
    review_deadline: date = Field(description="Last day for the office's review")
    reply_deadline: date = Field(description="Last day for the office's reply")
    overdue: Literal["review", "reply"] | None = Field(description="The deadline missed, if any")
    deadlines_provisional: bool = Field(default=False, description="True when the deadlines were counted over a "
                                        "year whose holiday arrangement is not loaded (Monday-Friday): they may "
                                        "still move when it is")


class DecisionBody(BaseModel):
    """An office's decision (the hub signs it with the office's key)."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["approve", "refuse", "return"] = Field(description="approve, refuse or return")
    reason: str = Field(default="", description="Written reason (mandatory for refuse)")
    missing: list[str] = Field(default_factory=list, description="Everything missing (return, once)")
    narrowed: list[ItemScope] | None = Field(default=None, description="Approved narrower scope")
    period_until: date | None = Field(default=None, description="Approved shorter period")


class StatementBody(BaseModel):
    """A statement in a dispute, or a note."""

    model_config = ConfigDict(extra="forbid")

    statement: str = Field(description="The text")


class DisputeDecisionBody(BaseModel):
    """The coordinating authority's decision."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["uphold", "overturn"] = Field(description="uphold or overturn the refusal")
    reasoning: str = Field(description="Why")


def _view(service: SharingService, req: SharingRequest) -> RequestView:
    due = service.deadlines(req)
    return RequestView(request=req, review_deadline=due.review, reply_deadline=due.reply,
                       overdue=overdue(req, service.today()), deadlines_provisional=due.provisional)


def _involved(service: SharingService, who: Party, request_id: str) -> SharingRequest:
    req = service.get(request_id)
    if who.role == Role.AUTHORITY or who.actor in (req.form.department, req.provider_office):
        return req
    with service.refusing(who.actor, "read", request_id):
        raise AccessDenied(f"request {request_id} is neither {who.actor}'s nor addressed to it")


@router.get("/catalogue", response_model=list[CatalogueItem])
def catalogue(request: Request, who: Caller) -> list[CatalogueItem]:
    """The current version of every published catalogue item."""
    return [s.item for s in _service(request).catalogue.current().values()]


@router.get("/catalogue/{code}", response_model=SignedCatalogueItem)
def catalogue_item(code: str, request: Request, who: Caller) -> SignedCatalogueItem:
    """One item's current signed version (verify it against the providing office's key)."""
    service = _service(request)
    service.catalogue.item(code)
    return service.catalogue.current()[code]


@router.get("/catalogue/{code}/versions", response_model=list[SignedCatalogueItem])
def catalogue_versions(code: str, request: Request, who: Caller) -> list[SignedCatalogueItem]:
    """Every signed version of one item, oldest first."""
    return _service(request).catalogue.history(code)


@router.post("/requests", response_model=RequestView, status_code=201)
def file_request(body: RequestForm, request: Request, who: Caller) -> RequestView:
    """File a request (departments only; `department` must be yours)."""
    service = _service(request)
    if who.role != Role.DEPARTMENT or body.department != who.actor:
        with service.refusing(who.actor, "file", "request"):
            raise AccessDenied(f"{who.actor} may not file a request for {body.department}: a department files its "
                               "own requests")
    return _view(service, service.file(body, token_id=who.token_id))


@router.get("/requests", response_model=list[RequestView])
def list_requests(request: Request, who: Caller, state: str | None = None) -> list[RequestView]:
    """Your requests (department), those addressed to you (office), or all (coordinating authority)."""
    service = _service(request)
    if who.role == Role.DEPARTMENT:
        found = service.requests(department=who.actor, state=state)
    elif who.role == Role.PROVINCE_OFFICE:
        found = service.requests(office=who.actor, state=state)
    else:
        found = service.requests(state=state)
    return [_view(service, r) for r in found]


@router.get("/requests/{request_id}", response_model=RequestView)
def get_request(request_id: str, request: Request, who: Caller) -> RequestView:
    """One request you filed, review, or (authority) oversee."""
    service = _service(request)
    return _view(service, _involved(service, who, request_id))


@router.post("/requests/{request_id}/decision", response_model=RequestView)
def decide(request_id: str, body: DecisionBody, request: Request, who: Caller) -> RequestView:
    """The providing office approves (possibly narrowed), refuses with a reason, or returns once."""
    service = _service(request)
    return _view(service, service.decide(request_id, who.actor, body.outcome, reason=body.reason,
                                         missing=body.missing, narrowed=body.narrowed,
                                         period_until=body.period_until))


@router.post("/requests/{request_id}/resubmit", response_model=RequestView)
def resubmit(request_id: str, body: Resubmission, request: Request, who: Caller) -> RequestView:
    """The department sends a returned request back with the missing materials."""
    service = _service(request)
    return _view(service, service.resubmit(request_id, who.actor, body))


@router.post("/requests/{request_id}/withdraw", response_model=RequestView)
def withdraw(request_id: str, body: StatementBody, request: Request, who: Caller) -> RequestView:
    """The department withdraws an undecided request."""
    service = _service(request)
    return _view(service, service.withdraw(request_id, who.actor, body.statement))


@router.post("/requests/{request_id}/dispute", response_model=RequestView)
def dispute(request_id: str, body: StatementBody, request: Request, who: Caller) -> RequestView:
    """The refused department disputes the refusal before the coordinating authority."""
    service = _service(request)
    return _view(service, service.dispute(request_id, who.actor, body.statement))


@router.post("/requests/{request_id}/statement", response_model=RequestView)
def statement(request_id: str, body: StatementBody, request: Request, who: Caller) -> RequestView:
    """The providing office states its side of a dispute."""
    service = _service(request)
    return _view(service, service.office_statement(request_id, who.actor, body.statement))


@router.get("/requests/{request_id}/evidence", response_model=EvidenceBundle)
def evidence(request_id: str, request: Request, who: Caller) -> EvidenceBundle:
    """The evidence bundle (both statements, every decision, the whole history and its log entries)."""
    service = _service(request)
    _involved(service, who, request_id)
    return service.evidence(request_id)


@router.post("/requests/{request_id}/dispute-decision", response_model=RequestView)
def decide_dispute(request_id: str, body: DisputeDecisionBody, request: Request, who: Caller) -> RequestView:
    """The coordinating authority decides the dispute (signed with its key)."""
    service = _service(request)
    return _view(service, service.decide_dispute(request_id, who.actor, body.outcome, body.reasoning))


@router.post("/requests/{request_id}/close", response_model=RequestView)
def close(request_id: str, body: StatementBody, request: Request, who: Caller) -> RequestView:
    """The department declares the purpose met: the request's grants end at once."""
    service = _service(request)
    return _view(service, service.close(request_id, who.actor, "purpose_met", body.statement))


@router.get("/overdue", response_model=list[OverdueRequest])
def overdue_list(request: Request, who: Caller) -> list[OverdueRequest]:
    """Requests past a deadline: all (authority) or those addressed to you (office)."""
    service = _service(request)
    found = service.overdue()
    if who.role == Role.AUTHORITY:
        return found
    if who.role == Role.PROVINCE_OFFICE:
        return [o for o in found if o.provider_office == who.actor]
    return [o for o in found if o.department == who.actor]
