"""Web sessions and CSRF tokens: what the pages' cookie holds and how the server checks it.

The login form takes the party's bearer token once; the token itself is never stored in the browser or put
in a URL. The session cookie holds who the party is, the token id, a random nonce and an expiry, with an
HMAC-SHA256 over them under a key only the server has (EXCHANGE_HOME/web/session.key, 0600), so any worker
of the server verifies it without shared memory and a tampered cookie fails. Each request also checks that
the token is still valid (not revoked, not expired), so revoking the token ends its web sessions, and that the
session was not logged out (EXCHANGE_HOME/web/ended-sessions.json, until the cookie would have expired).

CSRF: every form carries HMAC(key, "csrf|" + nonce) of its session in a hidden field; every POST compares it
in constant time. The login form, before there is a session, uses the same scheme with a short-lived
pre-session cookie. Pure functions apart from `session_key` (which creates the key on first use).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from exchange.atomic import secret_key, write_text
from exchange.locking import file_lock
from exchange.provenance.events import Role

SESSION_COOKIE = "exchange_session"
LOGIN_COOKIE = "exchange_login"
SESSION_HOURS = 8  # a working day; never beyond the token's own expiry
LOGIN_MINUTES = 30


class WebSession(BaseModel, frozen=True):
    """What a session cookie asserts (signed by the server)."""

    actor: str = Field(description="The party: a department id, <province>.data_office or authority[:<name>]")
    role: Role = Field(description="The party's role")
    token_id: str = Field(description="The token the party logged in with (its secret is never kept)")
    nonce: str = Field(description="Random per session; the CSRF token is derived from it")
    expires_at: datetime = Field(description="The cookie is refused after this (UTC)")


def session_key(home: Path) -> bytes:
    """The server's session key, created (32 random bytes, 0600) on first use."""
    return secret_key(home / "web" / "session.key")


def _mac(key: bytes, purpose: str, payload: str) -> str:
    return hmac.new(key, f"{purpose}|{payload}".encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two strings of any characters (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_session(actor: str, role: Role, token_id: str, token_expires: datetime, now: datetime) -> WebSession:
    """A session for a party that just proved its token; it ends with the working day or the token."""
    return WebSession(actor=actor, role=role, token_id=token_id, nonce=secrets.token_hex(16),
                      expires_at=min(now + timedelta(hours=SESSION_HOURS), token_expires))


def encode_session(key: bytes, session: WebSession) -> str:
    """The cookie value: base64url(JSON) '.' HMAC."""
    payload = _b64(session.model_dump_json().encode())
    return f"{payload}.{_mac(key, 'session', payload)}"


def decode_session(key: bytes, value: str | None, now: datetime | None = None) -> WebSession | None:
    """The session a cookie proves, or None (absent, tampered, malformed or expired)."""
    if not value or value.count(".") != 1:
        return None
    payload, mac = value.split(".")
    if not _same(mac, _mac(key, "session", payload)):
        return None
    try:
        session = WebSession.model_validate_json(_unb64(payload))
    except (ValidationError, ValueError):
        return None
    return session if session.expires_at > (now or datetime.now(UTC)) else None


def _ended_path(home: Path) -> Path:
    return home / "web" / "ended-sessions.json"


def end_session(home: Path, session: WebSession, now: datetime) -> None:
    """Log-out: the session's nonce is refused from now on (kept until the cookie would have expired anyway), so
    a copy of the cookie is no use after the party logged out."""
    path = _ended_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        ended = {n: until for n, until in _ended(home).items() if datetime.fromisoformat(until) > now}
        ended[session.nonce] = session.expires_at.isoformat()
        write_text(path, json.dumps(ended))


def _ended(home: Path) -> dict[str, str]:
    path = _ended_path(home)
    if not path.exists():
        return {}
    ended: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return ended


def session_ended(home: Path, session: WebSession) -> bool:
    """Whether the party logged this session out."""
    return session.nonce in _ended(home)


def csrf_token(key: bytes, nonce: str) -> str:
    """The per-session CSRF token that every form of the session carries."""
    return _mac(key, "csrf", nonce)


def csrf_ok(key: bytes, nonce: str, submitted: str | None) -> bool:
    """Whether a submitted CSRF token is the session's (constant-time)."""
    return bool(submitted) and _same(csrf_token(key, nonce), str(submitted))


def new_login_nonce(key: bytes, now: datetime) -> str:
    """The pre-session cookie of the login form: a nonce and its expiry, signed."""
    body = json.dumps({"nonce": secrets.token_hex(16),
                       "until": (now + timedelta(minutes=LOGIN_MINUTES)).isoformat()})
    payload = _b64(body.encode())
    return f"{payload}.{_mac(key, 'login', payload)}"


def login_nonce(key: bytes, value: str | None, now: datetime | None = None) -> str | None:
    """The nonce of a valid, unexpired pre-session cookie, or None."""
    if not value or value.count(".") != 1:
        return None
    payload, mac = value.split(".")
    if not _same(mac, _mac(key, "login", payload)):
        return None
    try:
        body = json.loads(_unb64(payload))
        until = datetime.fromisoformat(body["until"])
        nonce = str(body["nonce"])
    except (ValueError, KeyError, TypeError):
        return None
    return nonce if until > (now or datetime.now(UTC)) else None
