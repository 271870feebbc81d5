"""Sharing documents: a department's request, its history, the offices' signed decisions, disputes, consents."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exchange.access.models import RowCondition
from exchange.catalogue.models import SharingMethod
from exchange.signing.signers import Signature

RequestState = Literal["submitted", "returned", "approved", "refused", "withdrawn", "disputed", "closed"]
Action = Literal["file", "return", "resubmit", "approve", "refuse", "withdraw", "dispute", "office_statement",
                 "decide_dispute", "close", "escalate"]
TERMINAL: frozenset[str] = frozenset({"withdrawn", "closed"})
CloseReason = Literal["purpose_met", "period_ended", "revoked"]

_STRICT = ConfigDict(frozen=True, extra="forbid")


class ItemScope(BaseModel):
    """One catalogue item a request asks for: which columns, which rows (structured conditions, never SQL)."""

    model_config = _STRICT

    item: str = Field(description="Catalogue item code, e.g. YRD-DZZZ-000101-JS")
    columns: list[str] = Field(min_length=1, description="Columns asked for (a subset of the item's)")
    row_scope: list[RowCondition] = Field(default_factory=list,
                                          description="Conditions every row must meet (their conjunction)")

    @field_validator("row_scope", mode="before")
    @classmethod
    def _structured(cls, value: Any) -> Any:
        # RowCondition ignores unknown keys; here a smuggled "sql" (or a bare string) must be an error, not dropped.
        for cond in value if isinstance(value, list) else [value]:
            if isinstance(cond, str) or (isinstance(cond, dict) and set(cond) - {"column", "op", "values"}):
                raise ValueError("row scope must be structured conditions {column, op: in|prefix_in|between, "
                                 "values}; free SQL is never accepted")
        return value


class RequestForm(BaseModel):
    """What a department files (CLI: a JSON file; API: the POST body)."""

    model_config = _STRICT

    department: str = Field(description="Requesting department id, e.g. js.public_security")
    items: list[ItemScope] = Field(min_length=1, description="Items asked for, all from one providing office")
    purpose: str = Field(description="What the data will be used for (use is bound to it)")
    legal_basis: str = Field(description="Law or regulation under which the department may have the data")
    period_until: date = Field(description="Last day the department needs the data")
    sharing_method: SharingMethod = Field(description="How it is to be shared: system_interface (系统对接), "
                                                      "online_query (联机查询), online_browse (在线浏览), "
                                                      "download (下载)")
    contact: str = Field(description="Who to contact at the department (name and phone or e-mail)")
    materials: list[str] = Field(default_factory=list, description="Supporting materials supplied (titles)")

    @field_validator("purpose", "legal_basis", "contact", mode="after")
    @classmethod
    def _stripped(cls, value: str) -> str:
        return " ".join(value.split())


class Resubmission(BaseModel):
    """A returned request sent back with the missing materials (and, if asked, a corrected purpose or basis)."""

    model_config = _STRICT

    materials: list[str] = Field(min_length=1, description="Materials now supplied")
    purpose: str | None = Field(default=None, description="Corrected purpose, if the notice asked for one")
    legal_basis: str | None = Field(default=None, description="Corrected legal basis, if asked")
    note: str = Field(default="", description="What was changed")


class Decision(BaseModel):
    """A providing office's decision on one request, as the office signs it.

    `seq` is the request history position it decides at, so a decision can be applied once only: a replay of
    it (or one made on a state that has moved on) no longer matches and is refused.
    """

    model_config = _STRICT

    request_id: str = Field(description="The request decided on")
    seq: int = Field(ge=1, description="Number of history entries the request had when decided (replay guard)")
    office: str = Field(description="Deciding office, e.g. jiangsu.data_office")
    outcome: Literal["approve", "refuse", "return"] = Field(description="approve, refuse or return for materials")
    reason: str = Field(default="", description="Written reason (mandatory for refuse)")
    missing: list[str] = Field(default_factory=list, description="Everything missing (return: the complete list, "
                                                                 "given once)")
    narrowed: list[ItemScope] | None = Field(default=None, description="Approved scope when narrower than asked")
    period_until: date | None = Field(default=None, description="Approved period when shorter than asked")
    decided_at: datetime = Field(description="When the office decided (UTC)")
    nonce: str = Field(description="Random id of this decision document")


class SignedDecision(BaseModel, frozen=True):
    """A decision with the deciding office's signature (exchange.signing.roles: Signed.REVIEW_DECISION)."""

    decision: Decision = Field(description="The signed content")
    signature: Signature = Field(description="Office signature over canonical_json(decision)")


class DisputeDecision(BaseModel):
    """The coordinating authority's decision on a dispute (uphold the refusal, or overturn it)."""

    model_config = _STRICT

    request_id: str = Field(description="The disputed request")
    seq: int = Field(ge=1, description="History length when decided (replay guard)")
    authority: str = Field(description="Deciding authority actor, e.g. authority:yrd")
    outcome: Literal["uphold", "overturn"] = Field(description="uphold: the refusal stands; overturn: the office "
                                                               "must review again, without refusing on the same "
                                                               "grounds")
    reasoning: str = Field(description="Why (mandatory)")
    evidence_sha256: str = Field(description="SHA-256 of the evidence bundle the decision was made on")
    decided_at: datetime = Field(description="When (UTC)")
    nonce: str = Field(description="Random id of this decision document")


class SignedDisputeDecision(BaseModel, frozen=True):
    """A dispute decision with the authority's signature (Signed.DISPUTE_DECISION)."""

    decision: DisputeDecision = Field(description="The signed content")
    signature: Signature = Field(description="Authority signature over canonical_json(decision)")


class HistoryEntry(BaseModel, frozen=True):
    """One step of a request's life, as the hub recorded it."""

    seq: int = Field(description="1-based position in the history")
    action: Action = Field(description="What happened")
    actor: str = Field(description="Who did it")
    at: datetime = Field(description="When (UTC)")
    note: str = Field(default="", description="Reason, statement or note")
    missing: list[str] = Field(default_factory=list, description="Missing materials (return)")
    document_sha256: str | None = Field(default=None, description="SHA-256 of the signed decision applied")


class Dispute(BaseModel, frozen=True):
    """A refused department's dispute, the office's reply, and the authority's decision."""

    raised_at: datetime = Field(description="When the department raised it")
    department_statement: str = Field(description="The department's statement")
    office_statement: str | None = Field(default=None, description="The providing office's statement")
    decision: SignedDisputeDecision | None = Field(default=None, description="The authority's signed decision")


class SharingRequest(BaseModel, frozen=True):
    """A request as the hub holds it: the form, where it stands, its clock, and its whole history."""

    id: str = Field(description="Request id, e.g. req-20261207-3f2a9c")
    form: RequestForm = Field(description="What was filed (updated by a resubmission's corrections)")
    provider_office: str = Field(description="Office that reviews it (provides the items)")
    state: RequestState = Field(description="submitted, returned, approved, refused, withdrawn, disputed, closed")
    filed_at: datetime = Field(description="When it was filed (UTC)")
    clock_from: date = Field(description="Date (Asia/Shanghai) the review clock counts from: the filing date, or "
                                         "the date a dispute was overturned")
    filed_on_workday: bool = Field(description="False when filed on a holiday or weekend (the clock starts on the "
                                               "next working day)")
    review_days: int = Field(description="Working days the office has to review (complete? return?)")
    reply_days: int = Field(description="Working days the office has to reply (approve or refuse)")
    paused_workdays: int = Field(default=0, description="Working days spent returned (the clock stood still)")
    returned_on: date | None = Field(default=None, description="When it was returned, while it is")
    returned_once: bool = Field(default=False, description="A request is returned at most once")
    missing: list[str] = Field(default_factory=list, description="The one notice's complete list of what is missing")
    refusal_reason: str | None = Field(default=None, description="The written reason of a refusal")
    approved_scope: list[ItemScope] | None = Field(default=None, description="What was approved")
    approved_until: date | None = Field(default=None, description="Last day of the approved period")
    grants: list[str] = Field(default_factory=list, description="Grants created by the approval")
    auto_approved: bool = Field(default=False, description="Approved without review (无条件 items)")
    dispute: Dispute | None = Field(default=None, description="The dispute, if one was raised")
    escalated_at: datetime | None = Field(default=None, description="When it was escalated as overdue")
    closed_reason: CloseReason | None = Field(default=None, description="Why its grants were closed")
    history: list[HistoryEntry] = Field(description="Every step, in order")


class OnwardConsent(BaseModel, frozen=True):
    """A providing office's recorded consent to a department passing a grant's data on to another one."""

    grant_id: str = Field(description="The grant whose data may be passed on")
    to_department: str = Field(description="Who may receive it")
    office: str = Field(description="Consenting providing office")
    purpose: str = Field(description="For what")
    at: datetime = Field(description="When the consent was recorded (UTC)")
    signature: Signature = Field(description="Office signature over the consent without this field")
