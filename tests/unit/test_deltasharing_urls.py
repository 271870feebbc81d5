"""Signed Delta Sharing file URLs: any changed byte is refused, an expired URL is refused, the key is private."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.deltasharing.urls import (
    PREFIX,
    URL_KEY,
    FileClaim,
    UrlRefused,
    check,
    claim_of,
    signed_path,
    url_expiry,
    url_key,
)

KEY = bytes(range(32))
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
CLAIM = FileClaim("grant-js-public-security-e-license", 42, "yrd_0123456789abcdef",
                  "e_license.0123456789abcdef0123456789abcdef.s42.parquet",
                  int((NOW + timedelta(minutes=15)).timestamp()))

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/"),
                min_size=1, max_size=40)


def parts(path: str) -> list[str]:
    """The path's parts as the router hands them over (percent-decoded, prefix dropped)."""
    head, *rest = path.split("/")
    assert head == PREFIX and len(rest) == 6
    return [unquote(p) for p in rest]


def test_a_signed_url_checks_out_to_its_claim() -> None:
    assert check(KEY, *parts(signed_path(KEY, CLAIM)), now=NOW) == CLAIM


@given(grant=names, token=names, file=names, snapshot=st.integers(0, 10**9), ttl=st.integers(1, 10**6))
@settings(max_examples=150, deadline=None)
def test_any_claim_round_trips(grant: str, token: str, file: str, snapshot: int, ttl: int) -> None:
    claim = FileClaim(grant, snapshot, token, file, int(NOW.timestamp()) + ttl)
    assert check(KEY, *parts(signed_path(KEY, claim)), now=NOW) == claim


@given(data=st.data())
@settings(max_examples=300, deadline=None)
def test_any_changed_byte_of_the_url_is_refused(data: st.DataObject) -> None:
    path = signed_path(KEY, CLAIM).encode()
    at = data.draw(st.integers(len(PREFIX) + 1, len(path) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != path[at]), label="byte")
    tampered = path[:at] + bytes([new]) + path[at + 1:]
    try:
        text = tampered.decode()
        pieces = parts(text)
    except (UnicodeDecodeError, AssertionError):
        return  # not even a URL of the right shape: the router never matches it
    if pieces == parts(signed_path(KEY, CLAIM)):
        return  # a different spelling of the same URL (e.g. %2d for '-'): the same claim, not a forgery
    with pytest.raises(UrlRefused):
        check(KEY, *pieces, now=NOW)


@given(grant=names, token=names, file=names)
@settings(max_examples=50, deadline=None)
def test_a_url_signed_under_another_key_is_refused(grant: str, token: str, file: str) -> None:
    claim = FileClaim(grant, 1, token, file, int(NOW.timestamp()) + 60)
    with pytest.raises(UrlRefused, match="signature"):
        check(bytes(32), *parts(signed_path(KEY, claim)), now=NOW)


@given(late=st.integers(0, 10**7))
@settings(max_examples=50, deadline=None)
def test_an_expired_url_is_refused_though_its_signature_holds(late: int) -> None:
    pieces = parts(signed_path(KEY, CLAIM))
    assert claim_of(KEY, *pieces) == CLAIM  # genuine
    with pytest.raises(UrlRefused, match="expired"):
        check(KEY, *pieces, now=datetime.fromtimestamp(CLAIM.expires + late, UTC))


def test_moving_the_expiry_breaks_the_signature() -> None:
    pieces = parts(signed_path(KEY, CLAIM))
    pieces[3] = str(CLAIM.expires + 3600)
    with pytest.raises(UrlRefused, match="signature"):
        check(KEY, *pieces, now=NOW)


@given(seconds=st.floats(1, 10**6), token_days=st.integers(0, 400), grant_days=st.integers(-1, 400))
def test_a_url_never_outlives_its_token_or_grant(seconds: float, token_days: int, grant_days: int) -> None:
    token_expires = NOW + timedelta(days=token_days, hours=1)
    last_day = NOW.date() + timedelta(days=grant_days)
    expires = url_expiry(NOW, seconds, token_expires, last_day)
    assert expires <= (NOW + timedelta(seconds=seconds)).timestamp()
    assert expires <= token_expires.timestamp()
    assert expires <= datetime.combine(last_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp()


def test_the_key_is_created_once_0600_and_kept(tmp_path: Path) -> None:
    key = url_key(tmp_path / "keys")
    path = tmp_path / "keys" / URL_KEY
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert url_key(tmp_path / "keys") == key
    assert not [p for p in os.listdir(tmp_path / "keys") if p != URL_KEY]  # no temporary file left


def test_a_url_names_grant_snapshot_and_file() -> None:
    path = signed_path(KEY, CLAIM)
    assert CLAIM.grant_id in path and f"/{CLAIM.snapshot_id}/" in path and path.endswith(CLAIM.file)
