"""Minimal-disclosure e-licence check: "is licence X valid (for holder Y)?" answered, signed, logged.

E-licence mutual recognition across the Delta: a Jiangsu traffic officer checks a Shanghai driving
licence, a hotel checks an ID. The caller needs no grant on e_license and learns only the answer, the
issuing authority and validity dates, never the holder's name or ID. When a holder ID is given and does
not match, the answer is `holder_mismatch` with no details at all: a mismatched pair discloses nothing
about the licence. The comparison happens inside DuckDB; the stored holder ID never reaches Python.

The access log records the department, token, snapshot, the answer and the SHA-256 of the signed answer
document, but not the licence number or holder ID (the department can prove what it asked by showing
the signed answer, whose digest the log holds).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import duckdb
from pydantic import BaseModel, Field

from exchange.access.policy import licence_check, require
from exchange.access.terms import sharing_terms
from exchange.errors import VerificationError
from exchange.lake.connect import LAKE
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.signers import Signature, Signer
from exchange.signing.trust import HUB_OWNER, TrustBundle, verify_signature

DATASET = "e_license"
LICENSE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
HOLDER_ID_PATTERN = r"^[0-9]{17}[0-9Xx]$"
# Licences expire on the issuing province's calendar day, not UTC's.
LOCAL = ZoneInfo("Asia/Shanghai")

Answer = Literal["valid", "expired", "revoked", "unknown", "holder_mismatch"]


class LicenceCheck(BaseModel, frozen=True):
    """The hub's answer to one e-licence check: no personal data, bound to the question and the snapshot."""

    check_id: str = Field(description="Unique id of this answer")
    department: str = Field(description="Department that asked")
    dataset: str = Field(default=DATASET, description="Dataset the answer was read from")
    license_id: str = Field(description="Licence number asked about (as the caller sent it)")
    holder_checked: bool = Field(description="Whether a holder ID was given and compared")
    holder_binding: str | None = Field(
        default=None,
        description="SHA-256 of check_id, a NUL byte and the holder ID asked about: lets whoever holds that ID "
                    "confirm which holder was checked; the random check_id keeps it from being a lookup key",
    )
    answer: Answer = Field(description="valid; expired (status or validity date past); revoked; unknown (no "
                                       "such licence); holder_mismatch (licence exists, the holder ID does not "
                                       "match; no details are given)")
    valid: bool = Field(description="True only when answer is 'valid'")
    issuing_authority: str | None = Field(default=None, description="Issuing authority (absent for unknown or "
                                                                    "holder_mismatch)")
    issued_on: date | None = Field(default=None, description="Date of issue (absent for unknown or holder_mismatch)")
    valid_until: date | None = Field(default=None, description="Last valid day (absent for unknown or "
                                                               "holder_mismatch, or when the licence has none)")
    snapshot_id: int = Field(description="Lake snapshot the answer was read from")
    answered_at: datetime = Field(description="When the hub answered (UTC)")


class SignedLicenceCheck(BaseModel, frozen=True):
    """An e-licence check answer with the hub's signature, verifiable offline with the trust bundle."""

    check: LicenceCheck = Field(description="The signed content")
    signature: Signature = Field(description="Hub signature over canonical_json(check)")


def holder_binding(check_id: str, holder_id: str) -> str:
    """The salted digest that ties an answer to the holder ID asked about."""
    return sha256_hex(check_id.encode() + b"\0" + holder_id.upper().encode())


def check_licence(con: duckdb.DuckDBPyConnection, snapshot_id: int, department: str, license_id: str,
                  holder_id: str | None, signer: Signer, now: datetime | None = None) -> SignedLicenceCheck:
    """Answer and sign one check against the lake at `snapshot_id` (the newest version of the licence wins)."""
    require(licence_check(sharing_terms(DATASET)))
    now = now or datetime.now(UTC)
    check_id = uuid.uuid4().hex
    try:
        row = con.execute(
            f'SELECT status, issuing_authority, issued_on, valid_until, upper(holder_id) = ? AS holder_match '
            f'FROM {LAKE}."{DATASET}" AT (VERSION => {int(snapshot_id)}) WHERE license_id = ? '
            'ORDER BY updated_at DESC, batch_id DESC LIMIT 1',
            [holder_id.upper() if holder_id else None, license_id],
        ).fetchone()
    except duckdb.CatalogException:
        row = None  # no e-licence has reached the lake yet at that snapshot
    answer: Answer = "unknown"
    authority: str | None = None
    issued_on: date | None = None
    valid_until: date | None = None
    if row is not None and holder_id is not None and row[4] is not True:
        answer = "holder_mismatch"
    elif row is not None and row[0] in ("valid", "expired", "revoked"):
        status, authority, issued_on, valid_until = row[0], row[1], row[2], row[3]
        if status == "revoked":
            answer = "revoked"
        elif status == "expired" or (valid_until is not None and valid_until < now.astimezone(LOCAL).date()):
            answer = "expired"
        else:
            answer = "valid"
    check = LicenceCheck(
        check_id=check_id, department=department, license_id=license_id, holder_checked=holder_id is not None,
        holder_binding=holder_binding(check_id, holder_id) if holder_id else None, answer=answer,
        valid=answer == "valid", issuing_authority=authority, issued_on=issued_on, valid_until=valid_until,
        snapshot_id=snapshot_id, answered_at=now,
    )
    return SignedLicenceCheck(check=check, signature=signer.sign(canonical_bytes(check.model_dump(mode="json"))))


def verify_licence_check(signed: SignedLicenceCheck, bundle: TrustBundle) -> LicenceCheck:
    """Check an answer offline: the hub's signature over its canonical JSON, by a key the bundle trusts."""
    c = signed.check
    item = f"licence check {c.check_id}"
    verify_signature(bundle, signed.signature, canonical_bytes(c.model_dump(mode="json")), c.answered_at, item)
    if bundle.key(signed.signature.key_id).owner != HUB_OWNER:
        raise VerificationError(item, "signed by a key that is not the hub's")
    return c
