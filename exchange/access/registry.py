"""The department and grant registry under EXCHANGE_HOME/access (JSON documents, grants signed).

Files: departments.json, grants.json, revocations.json (signed grant revocations) and tokens.json (API
token records holding only SHA-256 digests of the secrets). Every read-modify-write holds an exclusive
lock on `.lock`, so the CLI and a running API server never lose each other's changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from exchange import atomic
from exchange.access.errors import AuthenticationFailed, NotRegistered
from exchange.access.models import (
    ApiToken,
    Department,
    Grant,
    GrantRevocation,
    SignedGrant,
    SignedGrantRevocation,
)
from exchange.access.policy import require, review_grant, usable_grant
from exchange.access.terms import sharing_terms
from exchange.datasets import dataset as canonical_dataset
from exchange.errors import AccessDenied, BadInput, NotFound
from exchange.locking import file_lock
from exchange.signing.canonical import canonical_bytes
from exchange.signing.signers import Signer

TOKEN_PREFIX = "yrd_"
# A bearer token is "<id>.<secret>": the id finds the record, the secret is compared by digest.
TOKEN_FORMAT = re.compile(r"^(yrd_[0-9a-f]{16})\.([A-Za-z0-9_-]{32,128})$")
DEFAULT_TOKEN_DAYS = 90


def secret_digest(secret: str) -> str:
    """Hex SHA-256 of a token secret (the secret is 256 random bits, so no slow KDF is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Registry:
    """Departments, signed grants, grant revocations and API tokens, stored as JSON files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.departments_path = directory / "departments.json"
        self.grants_path = directory / "grants.json"
        self.revocations_path = directory / "revocations.json"
        self.tokens_path = directory / "tokens.json"

    # --- departments -------------------------------------------------------------------------------

    def departments(self) -> list[Department]:
        """Every registered department."""
        return [Department.model_validate(d) for d in self._read(self.departments_path)]

    def department(self, department_id: str) -> Department:
        """One department, or NotRegistered (a denial, and not found) naming the unknown id."""
        for d in self.departments():
            if d.id == department_id:
                return d
        raise NotRegistered(f"unknown department {department_id!r}; register it with `exchange departments add`")

    def add_department(self, department: Department) -> None:
        """Register (or update) a department."""
        with self._lock():
            others = [d for d in self.departments() if d.id != department.id]
            self._write(self.departments_path, [d.model_dump(mode="json") for d in [*others, department]])

    def set_extract_key(self, department_id: str, public_key: str) -> Department:
        """Record the department's X25519 extract public key (base64 raw); later extracts can be sealed to it."""
        with self._lock():
            current = self.department(department_id)
            updated = Department.model_validate({**current.model_dump(), "extract_public_key": public_key})
            others = [d for d in self.departments() if d.id != department_id]
            self._write(self.departments_path, [d.model_dump(mode="json") for d in [*others, updated]])
        return updated

    # --- grants ------------------------------------------------------------------------------------

    def grants(self) -> list[SignedGrant]:
        """Every recorded grant."""
        return [SignedGrant.model_validate(g) for g in self._read(self.grants_path)]

    def grant(self, grant_id: str) -> SignedGrant:
        """One grant by id, or NotRegistered naming the unknown id."""
        for g in self.grants():
            if g.grant.id == grant_id:
                return g
        raise NotRegistered(f"unknown grant {grant_id!r}; `exchange grants list` shows the recorded ones")

    def add_grant(self, grant: Grant, signer: Signer) -> SignedGrant:
        """Check the grant against the contract's sharing terms (exchange.access.policy.review_grant), sign it
        and record it."""
        self.department(grant.department)
        require(review_grant(grant, sharing_terms(grant.dataset), canonical_dataset(grant.dataset).schema.names,
                             self.revoked_grants()))
        signed = SignedGrant(grant=grant, signature=signer.sign(canonical_bytes(grant.model_dump(mode="json"))))
        with self._lock():
            others = [g for g in self.grants() if g.grant.id != grant.id]
            self._write(self.grants_path, [g.model_dump(mode="json") for g in [*others, signed]])
        return signed

    def revocations(self) -> list[SignedGrantRevocation]:
        """Every recorded grant revocation."""
        return [SignedGrantRevocation.model_validate(r) for r in self._read(self.revocations_path)]

    def revoked_grants(self) -> dict[str, GrantRevocation]:
        """Revocations by grant id."""
        return {r.revocation.grant_id: r.revocation for r in self.revocations()}

    def revoke_grant(self, grant_id: str, revoked_by: str, reason: str, signer: Signer,
                     at: datetime | None = None) -> SignedGrantRevocation:
        """Withdraw a grant from now on; the grant stays on record (extracts cut under it still verify)."""
        self.grant(grant_id)
        if not reason.strip():
            raise BadInput(f"revoking grant {grant_id} needs a reason (--reason)")
        revocation = GrantRevocation(grant_id=grant_id, revoked_at=at or datetime.now(UTC), revoked_by=revoked_by,
                                     reason=reason)
        signed = SignedGrantRevocation(
            revocation=revocation, signature=signer.sign(canonical_bytes(revocation.model_dump(mode="json"))))
        with self._lock():
            if grant_id in self.revoked_grants():
                raise AccessDenied(f"grant {grant_id} is already revoked")
            self._write(self.revocations_path, [r.model_dump(mode="json") for r in [*self.revocations(), signed]])
        return signed

    def active_grant(self, department_id: str, dataset: str, today: date | None = None) -> SignedGrant:
        """The department's usable grant on the dataset (exchange.access.policy.usable_grant), or AccessDenied
        saying why there is none."""
        self.department(department_id)
        canonical_dataset(dataset)
        return require(usable_grant(department_id, dataset, self.grants(), self.revoked_grants(),
                                    sharing_terms(dataset), today or datetime.now(UTC).date()))

    def active_grants(self, department_id: str, today: date | None = None) -> list[SignedGrant]:
        """Every usable grant of the department, one per dataset (datasets it cannot use are left out)."""
        return self.usable_grants(department_id, today)[0]

    def usable_grants(self, department_id: str, today: date | None = None) -> tuple[list[SignedGrant], list[str]]:
        """The department's usable grants, one per dataset, and why each of its other grants is unusable."""
        datasets = sorted({g.grant.dataset for g in self.grants() if g.grant.department == department_id})
        usable: list[SignedGrant] = []
        reasons: list[str] = []
        for name in datasets:
            try:
                usable.append(self.active_grant(department_id, name, today))
            except AccessDenied as denied:
                reasons.append(str(denied))
        return usable, reasons

    # --- API tokens --------------------------------------------------------------------------------

    def tokens(self) -> list[ApiToken]:
        """Every token record (digests only)."""
        return [ApiToken.model_validate(t) for t in self._read(self.tokens_path)]

    def issue_token(self, department_id: str, days: int = DEFAULT_TOKEN_DAYS,
                    now: datetime | None = None, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
        """Create a token for the department; returns the record and the bearer string, shown only once.

        `expires_at` (a Delta Sharing profile's token, which must not outlive the grants) replaces `days`.
        """
        self.department(department_id)
        if days < 1:
            raise BadInput("a token must be valid for at least one day (--days 1 or more)")
        now = now or datetime.now(UTC)
        if expires_at is not None and expires_at <= now:
            raise BadInput(f"a token cannot expire in the past ({expires_at.isoformat()})")
        token_id = TOKEN_PREFIX + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiToken(id=token_id, department=department_id, secret_sha256=secret_digest(secret),
                          created_at=now, expires_at=expires_at or now + timedelta(days=days))
        with self._lock():
            self._write(self.tokens_path, [t.model_dump(mode="json") for t in [*self.tokens(), record]])
        return record, f"{token_id}.{secret}"

    def revoke_token(self, token_id: str, now: datetime | None = None) -> ApiToken:
        """Mark a token revoked (the record stays, so the access log's token ids keep their meaning)."""
        with self._lock():
            tokens = self.tokens()
            match = [t for t in tokens if t.id == token_id]
            if not match:
                raise NotFound(f"unknown token {token_id!r}; `exchange departments tokens` lists them")
            if match[0].revoked_at is not None:
                raise AccessDenied(f"token {token_id} is already revoked")
            revoked = match[0].model_copy(update={"revoked_at": now or datetime.now(UTC)})
            self._write(self.tokens_path,
                        [(revoked if t.id == token_id else t).model_dump(mode="json") for t in tokens])
        return revoked

    def authenticate(self, bearer: str, now: datetime | None = None) -> ApiToken:
        """The token record a bearer string proves, or AuthenticationFailed saying why (never echoing it)."""
        match = TOKEN_FORMAT.match(bearer)
        if match is None:
            raise AuthenticationFailed("malformed token: expected '<token id>.<secret>' as issued by "
                                       "`exchange departments token`")
        token_id, secret = match.groups()
        record = next((t for t in self.tokens() if t.id == token_id), None)
        # Compare digests in constant time; an unknown id still costs one comparison so timing tells little.
        expected = record.secret_sha256 if record else "0" * 64
        if not hmac.compare_digest(expected, secret_digest(secret)) or record is None:
            raise AuthenticationFailed(f"token {token_id} is unknown or its secret is wrong")
        now = now or datetime.now(UTC)
        if record.revoked_at is not None:
            raise AuthenticationFailed(f"token {token_id} was revoked on {record.revoked_at:%Y-%m-%d}")
        if record.expires_at <= now:
            raise AuthenticationFailed(f"token {token_id} expired on {record.expires_at:%Y-%m-%d}")
        try:
            self.department(record.department)
        except AccessDenied:
            raise AuthenticationFailed(f"token {token_id} belongs to a department no longer registered") from None
        return record

    # --- storage -----------------------------------------------------------------------------------

    def _read(self, path: Path) -> list[dict[str, object]]:
        if not path.exists():
            return []
        payload: list[dict[str, object]] = json.loads(path.read_text(encoding="utf-8"))
        return payload

    def _lock(self) -> AbstractContextManager[None]:
        return file_lock(self.dir / ".lock")

    def _write(self, path: Path, payload: object) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
            if path == self.tokens_path:
                tmp.chmod(0o600)  # digests only, but nobody but the hub needs to read them
