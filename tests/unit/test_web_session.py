"""Web session cookies and CSRF tokens: any change to a cookie voids it; a CSRF token fits one session only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from exchange.provenance.events import Role
from exchange.web.session import (
    csrf_ok,
    csrf_token,
    decode_session,
    encode_session,
    login_nonce,
    new_login_nonce,
    new_session,
    session_key,
)

KEY = bytes(range(32))
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SESSION = new_session("js.public_security", Role.DEPARTMENT, "yrd_0123456789abcdef", NOW + timedelta(days=30), NOW)
COOKIE = encode_session(KEY, SESSION)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="


def test_a_cookie_decodes_to_its_session_until_it_expires() -> None:
    assert decode_session(KEY, COOKIE, NOW) == SESSION
    assert SESSION.expires_at == NOW + timedelta(hours=8), "a working day, within the token's validity"
    assert decode_session(KEY, COOKIE, SESSION.expires_at) is None
    short = new_session("authority", Role.AUTHORITY, "yrd_1", NOW + timedelta(minutes=5), NOW)
    assert short.expires_at == NOW + timedelta(minutes=5), "never beyond the token"


@given(st.integers(min_value=0, max_value=len(COOKIE) - 1), st.sampled_from(ALPHABET))
def test_any_change_to_a_cookie_voids_it(position: int, char: str) -> None:
    changed = COOKIE[:position] + char + COOKIE[position + 1:]
    decoded = decode_session(KEY, changed, NOW)
    # base64 padding bits can absorb a change to the last character of the payload without changing the bytes
    assert decoded is None or decoded == SESSION


@given(st.binary(min_size=16, max_size=64))
def test_a_cookie_signed_with_another_key_is_refused(other: bytes) -> None:
    if other != KEY:
        assert decode_session(KEY, encode_session(other, SESSION), NOW) is None


@given(st.text(max_size=80))
def test_csrf_tokens_fit_one_session_only(submitted: str) -> None:
    other = new_session("js.public_security", Role.DEPARTMENT, "yrd_0123456789abcdef", NOW + timedelta(days=1), NOW)
    assert csrf_ok(KEY, SESSION.nonce, csrf_token(KEY, SESSION.nonce))
    assert not csrf_ok(KEY, SESSION.nonce, csrf_token(KEY, other.nonce))
    assert not csrf_ok(KEY, SESSION.nonce, None) and not csrf_ok(KEY, SESSION.nonce, "")
    assert csrf_ok(KEY, SESSION.nonce, submitted) == (submitted == csrf_token(KEY, SESSION.nonce))


def test_the_login_forms_nonce_expires_and_the_key_is_private(tmp_path: Path) -> None:
    cookie = new_login_nonce(KEY, NOW)
    assert login_nonce(KEY, cookie, NOW) is not None
    assert login_nonce(KEY, cookie, NOW + timedelta(hours=1)) is None
    assert login_nonce(bytes(32), cookie, NOW) is None
    key = session_key(tmp_path)
    assert len(key) == 32 and session_key(tmp_path) == key
    assert (tmp_path / "web" / "session.key").stat().st_mode & 0o077 == 0


@given(st.text(max_size=200))
def test_any_cookie_text_is_answered_without_an_error(value: str) -> None:
    assert decode_session(KEY, value, NOW) is None
    assert login_nonce(KEY, value, NOW) is None
