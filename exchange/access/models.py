"""Published access documents: departments, grants and their structured row filters, revocations, tokens."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from exchange.access.envelope import parse_public_key
from exchange.signing.signers import Signature


class Department(BaseModel, frozen=True):
    """A government department that receives shared data."""

    id: str = Field(description="Province code, dot, short name, e.g. js.public_security")
    name: str = Field(description="Official name")
    province: str = Field(description="Province the department belongs to")
    extract_public_key: str | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="age recipient (age1...; older entries: base64 raw X25519 public key) extracts are "
                    "encrypted to (the department keeps the private key); absent: the department receives only "
                    "unencrypted extracts",
    )

    @field_validator("extract_public_key")
    @classmethod
    def _x25519(cls, value: str | None) -> str | None:
        if value is not None:
            # ValueError (a validation error) unless an age recipient or raw X25519 bytes in base64
            parse_public_key(value)
        return value


class RowCondition(BaseModel, frozen=True):
    """One structured row condition; a grant's filter is their conjunction (never free SQL)."""

    column: str = Field(description="Canonical column the condition tests")
    op: Literal["in", "prefix_in", "between"] = Field(description="in: value in set; prefix_in: starts with one "
                                                       "of the values; between: inclusive range of two values")
    values: list[str] = Field(description="Values (dates as YYYY-MM-DD)")


class Grant(BaseModel, frozen=True):
    """What a department may see of one dataset, why, until when, approved by whom."""

    id: str = Field(description="Grant id")
    department: str = Field(description="Department id")
    dataset: str = Field(description="Canonical dataset")
    columns: list[str] = Field(description="Columns the department may see")
    row_filter: list[RowCondition] = Field(default_factory=list, description="Conditions every row must meet")
    purpose: str = Field(description="Why the department needs the data")
    legal_basis: str = Field(description="Law or regulation that permits the sharing")
    approved_by: str = Field(description="Approving province data office")
    expires_on: date = Field(description="Last day the grant is valid")
    unmasked: list[str] = Field(default_factory=list, description="Sensitive columns explicitly granted unmasked")
    justification: str = Field(default="", description="Why any column is granted unmasked")
    issued_at: datetime = Field(description="When the grant was recorded")
    # Absent (not null) on grants recorded by hand, so their canonical bytes and signatures stay as they were.
    request: str | None = Field(default=None, exclude_if=lambda v: v is None,
                                description="The sharing request whose approval created the grant")
    item: str | None = Field(default=None, exclude_if=lambda v: v is None,
                             description="The catalogue item the grant was approved on")


class SignedGrant(BaseModel, frozen=True):
    """A grant with the approving office's (for now: the hub's) signature."""

    grant: Grant = Field(description="The signed content")
    signature: Signature = Field(description="Signature over canonical_json(grant)")


class GrantRevocation(BaseModel, frozen=True):
    """A grant withdrawn before its expiry: from `revoked_at` on, no query or extract may use it."""

    grant_id: str = Field(description="The revoked grant")
    revoked_at: datetime = Field(description="When the revocation took effect (UTC)")
    revoked_by: str = Field(description="Who revoked it: the approving office or the hub operator")
    reason: str = Field(description="Why the grant was withdrawn")


class SignedGrantRevocation(BaseModel, frozen=True):
    """A grant revocation with the hub's signature, so a department or auditor can check it offline."""

    revocation: GrantRevocation = Field(description="The signed content")
    signature: Signature = Field(description="Signature over canonical_json(revocation)")


class ApiToken(BaseModel, frozen=True):
    """A department's API token as the hub stores it: only the SHA-256 of the secret, never the secret."""

    id: str = Field(description="Public token id, the part before the dot in the bearer token")
    department: str = Field(description="Department the token authenticates")
    secret_sha256: str = Field(description="Hex SHA-256 of the token's secret part")
    created_at: datetime = Field(description="When the token was issued (UTC)")
    expires_at: datetime = Field(description="After this instant the token is refused (UTC)")
    revoked_at: datetime | None = Field(default=None, description="When the token was revoked, if it was")
