"""API tokens of the parties who are not departments: province data offices and the coordinating authority.

Same bearer form as a department's (``yrd_<16 hex>.<secret>``, exchange/access/registry.py) and the same
storage rule (only the SHA-256 of the secret is kept), in EXCHANGE_HOME/sharing/party-tokens.json (0600).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from exchange.access.registry import TOKEN_FORMAT, TOKEN_PREFIX, secret_digest
from exchange.atomic import write_text
from exchange.errors import AuthenticationFailed, BadInput
from exchange.provenance.events import Role, role_of
from exchange.sharing.store import SharingStore


class PartyToken(BaseModel, frozen=True):
    """An office's or the authority's API token as stored: the digest of the secret, never the secret."""

    id: str = Field(description="Public token id")
    party: str = Field(description="Actor: <province>.data_office or authority[:<name>]")
    secret_sha256: str = Field(description="Hex SHA-256 of the secret")
    created_at: datetime = Field(description="Issued (UTC)")
    expires_at: datetime = Field(description="Refused after (UTC)")


def _read(store: SharingStore) -> list[PartyToken]:
    if not store.tokens_path.exists():
        return []
    return [PartyToken.model_validate(t) for t in json.loads(store.tokens_path.read_text(encoding="utf-8"))]


def issue(store: SharingStore, party: str, days: int = 90, now: datetime | None = None) -> tuple[PartyToken, str]:
    """A token for an office or the authority; returns the record and the bearer string (shown once)."""
    if role_of(party) not in (Role.PROVINCE_OFFICE, Role.AUTHORITY):
        raise BadInput(f"{party!r} is neither a province data office (<province>.data_office) nor the "
                       "coordinating authority (authority or authority:<name>); departments get tokens from "
                       "`exchange departments token`")
    if days < 1:
        raise BadInput("a token must be valid for at least one day (--days 1 or more)")
    now = now or datetime.now(UTC)
    secret = secrets.token_urlsafe(32)
    record = PartyToken(id=TOKEN_PREFIX + secrets.token_hex(8), party=party, secret_sha256=secret_digest(secret),
                        created_at=now, expires_at=now + timedelta(days=days))
    with store.locked():
        store.dir.mkdir(parents=True, exist_ok=True)
        write_text(store.tokens_path, json.dumps([t.model_dump(mode="json") for t in [*_read(store), record]]))
        os.chmod(store.tokens_path, 0o600)
    return record, f"{record.id}.{secret}"


def token(store: SharingStore, token_id: str) -> PartyToken | None:
    """The stored record of a party token (digest only), or None."""
    return next((t for t in _read(store) if t.id == token_id), None)


def authenticate(store: SharingStore, bearer: str, now: datetime | None = None) -> PartyToken | None:
    """The party a bearer proves; None when the token id is not a party's (it may be a department's)."""
    match = TOKEN_FORMAT.match(bearer)
    if match is None:
        return None
    token_id, secret = match.groups()
    record = token(store, token_id)
    if record is None:
        return None
    if not hmac.compare_digest(record.secret_sha256, secret_digest(secret)):
        raise AuthenticationFailed(f"token {token_id} is unknown or its secret is wrong")
    if record.expires_at <= (now or datetime.now(UTC)):
        raise AuthenticationFailed(f"token {token_id} expired on {record.expires_at:%Y-%m-%d}")
    return record
