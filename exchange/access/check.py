"""Minimal-disclosure e-licence check: "is licence X valid for holder Y?" answered, signed, logged.

E-licence mutual recognition across the Delta: a Jiangsu traffic officer checks a Shanghai driving
licence, a hotel checks an ID. The caller needs no grant on e_license and learns only whether the exact
pair it asked about (licence number and holder ID) is a licence valid today: ``valid`` or ``not_valid``,
never why not. A wrong holder, an unknown licence, an expired or revoked one all read ``not_valid``, so the
check is no oracle: a department that sees a masked ID cannot try candidates until one "matches".

Details (status, issuing authority, dates) come only when the pair matches AND the caller holds a usable
grant on e_license that delivers those columns in clear and whose row filter keeps the licence
(:func:`exchange.access.policy.check_disclosure`): never more than its grant lets it read anyway. The
comparison happens inside DuckDB; the stored holder ID never reaches Python.

A check whose pair does not match is a failed holder check: the access log records it as a denial, and
the API counts it against the token and the department (exchange/api/ratelimit.py: too many lock the
caller out and alert the operator). The log holds the department, token, snapshot, the answer and the
SHA-256 of the signed answer document, never the licence number or holder ID.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import duckdb
from pydantic import BaseModel, Field

from exchange.access.policy import NO_DISCLOSURE, CheckDisclosure, licence_check, require
from exchange.access.terms import sharing_terms
from exchange.lake.connect import LAKE
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.roles import Signed, check_signer
from exchange.signing.signers import Signature, Signer
from exchange.signing.trust import TrustBundle, verify_signature

DATASET = "e_license"
LICENSE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
HOLDER_ID_PATTERN = r"^[0-9]{17}[0-9Xx]$"
# Licences expire on the issuing province's calendar day, not UTC's.
LOCAL = ZoneInfo("Asia/Shanghai")

Answer = Literal["valid", "not_valid"]
Status = Literal["valid", "expired", "revoked"]


class LicenceCheck(BaseModel, frozen=True):
    """The hub's answer to one e-licence check: no personal data, bound to the question and the snapshot."""

    check_id: str = Field(description="Unique id of this answer")
    department: str = Field(description="Department that asked")
    dataset: str = Field(default=DATASET, description="Dataset the answer was read from")
    license_id: str = Field(description="Licence number asked about (as the caller sent it)")
    holder_checked: bool = Field(default=True, description="Whether a holder ID was compared (always, since "
                                                           "2026-12: the check answers only for a pair)")
    holder_binding: str | None = Field(
        default=None,
        description="SHA-256 of check_id, a NUL byte and the holder ID asked about: lets whoever holds that ID "
                    "confirm which holder was checked; the random check_id keeps it from being a lookup key",
    )
    answer: Answer = Field(description="valid (the licence exists, belongs to the holder asked about and is valid "
                                        "today) or not_valid (anything else: no such licence, another holder, "
                                        "expired, revoked; which one is never said)")
    valid: bool = Field(description="True only when answer is 'valid'")
    status: Status | None = Field(default=None, description="The licence's status, only when the pair matches "
                                                            "and the caller's grant discloses it")
    issuing_authority: str | None = Field(default=None, description="Issuing authority (same condition)")
    issued_on: date | None = Field(default=None, description="Date of issue (same condition)")
    valid_until: date | None = Field(default=None, description="Last valid day (same condition; absent when the "
                                                               "licence has none)")
    snapshot_id: int = Field(description="Lake snapshot the answer was read from")
    answered_at: datetime = Field(description="When the hub answered (UTC)")


class SignedLicenceCheck(BaseModel, frozen=True):
    """An e-licence check answer with the hub's signature, verifiable offline with the trust bundle."""

    check: LicenceCheck = Field(description="The signed content")
    signature: Signature = Field(description="Hub signature over canonical_json(check)")


@dataclass(frozen=True)
class Checked:
    """A signed answer and whether the pair asked about matched a licence (a failed holder check if not)."""

    signed: SignedLicenceCheck
    matched: bool


def holder_binding(check_id: str, holder_id: str) -> str:
    """The salted digest that ties an answer to the holder ID asked about."""
    return sha256_hex(check_id.encode() + b"\0" + holder_id.upper().encode())


def check_licence(con: duckdb.DuckDBPyConnection, snapshot_id: int, department: str, license_id: str,
                  holder_id: str, signer: Signer, disclosure: CheckDisclosure = NO_DISCLOSURE,
                  now: datetime | None = None) -> Checked:
    """Answer and sign one check against the lake at `snapshot_id` (the newest version of the licence wins).

    `disclosure` says which details may be added when the pair matches, for which rows (default: none).
    """
    require(licence_check(sharing_terms(DATASET)))
    now = now or datetime.now(UTC)
    check_id = uuid.uuid4().hex
    rows = disclosure.rows
    try:
        row = con.execute(
            f'SELECT status, issuing_authority, issued_on, valid_until, upper(holder_id) = ? AS holder_match, '
            f'coalesce({rows.sql}, FALSE) AS inside '
            f'FROM {LAKE}."{DATASET}" AT (VERSION => {int(snapshot_id)}) WHERE license_id = ? '
            'ORDER BY updated_at DESC, batch_id DESC LIMIT 1',
            [holder_id.upper(), *rows.params, license_id],
        ).fetchone()
    except duckdb.CatalogException:
        row = None  # no e-licence has reached the lake yet at that snapshot
    matched = row is not None and row[4] is True and row[0] in ("valid", "expired", "revoked")
    status: Status | None = None
    if matched:
        assert row is not None
        status = row[0]
        if status == "valid" and row[3] is not None and row[3] < now.astimezone(LOCAL).date():
            status = "expired"
    answer: Answer = "valid" if status == "valid" else "not_valid"
    # Details only for a matching pair inside the grant's rows, and only the columns the grant shows in clear.
    show = set(disclosure.details) if matched and row is not None and row[5] is True else set()
    authority, issued_on, valid_until = row[1:4] if row is not None else (None, None, None)
    check = LicenceCheck(
        check_id=check_id, department=department, license_id=license_id,
        holder_binding=holder_binding(check_id, holder_id), answer=answer, valid=answer == "valid",
        status=status if "status" in show else None,
        issuing_authority=authority if "issuing_authority" in show else None,
        issued_on=issued_on if "issued_on" in show else None,
        valid_until=valid_until if "valid_until" in show else None,
        snapshot_id=snapshot_id, answered_at=now,
    )
    signed = SignedLicenceCheck(check=check, signature=signer.sign(canonical_bytes(check.model_dump(mode="json"))))
    return Checked(signed=signed, matched=matched)


def verify_licence_check(signed: SignedLicenceCheck, bundle: TrustBundle) -> LicenceCheck:
    """Check an answer offline: the hub's signature over its canonical JSON, by a key the bundle trusts."""
    c = signed.check
    item = f"licence check {c.check_id}"
    verify_signature(bundle, signed.signature, canonical_bytes(c.model_dump(mode="json")), c.answered_at, item)
    check_signer(bundle, signed.signature, Signed.LICENCE_CHECK, item)
    return c
