"""Short-lived signed URLs for the Parquet files the hub serves to Delta Sharing clients.

A URL names the grant, the snapshot, the bearer token it was issued to, its expiry (Unix seconds) and the
file, and carries an HMAC-SHA256 over exactly those under a secret key kept in EXCHANGE_HOME/keys (0600,
created on first use, never overwritten). Any changed byte of the path fails the signature; an expired URL
is refused even with a valid signature. The signature only proves the hub issued the URL: the download
handler still checks, at every request, that the token and the grant are in force (a revoked grant or token
ends access at once, also through URLs handed out before).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import quote

from exchange.atomic import secret_key
from exchange.errors import AccessDenied, BadInput

URL_KEY = "sharing-url.key"
PREFIX = "files"  # /delta-sharing/files/<grant>/<snapshot>/<token>/<expires>/<signature>/<file>
_DOMAIN = b"yrd-exchange delta-sharing file url v1"
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, base64url without padding
_PART = re.compile(r"^[^/\x00-\x1f]{1,200}$")  # no separators or control characters in a named part


class UrlRefused(AccessDenied):
    """A file URL the hub did not issue, or one that has expired."""


@dataclass(frozen=True)
class FileClaim:
    """What a signed file URL grants: this file of this grant at this snapshot, for this token, until then."""

    grant_id: str
    snapshot_id: int
    token_id: str
    file: str
    expires: int  # Unix seconds

    def message(self) -> bytes:
        """The bytes the signature covers (parts cannot hold a newline, so the encoding is unambiguous)."""
        for part in (self.grant_id, self.token_id, self.file):
            if not _PART.match(part):
                raise BadInput(f"cannot sign a file URL part {part!r}: no '/' or control characters allowed")
        fields = [self.grant_id, str(self.snapshot_id), self.token_id, str(self.expires), self.file]
        return _DOMAIN + b"\n" + "\n".join(fields).encode("utf-8")


def url_key(keys_dir: Path) -> bytes:
    """The hub's URL-signing key (32 random bytes, 0600), created on first use; never overwritten."""
    path = keys_dir / URL_KEY
    key = secret_key(path)
    if len(key) != 32:
        raise BadInput(f"{path}: the URL-signing key must be 32 bytes; delete it to have a new one made "
                       "(URLs already issued stop working)")
    return key


def _sign(key: bytes, claim: FileClaim) -> str:
    digest = hmac.new(key, claim.message(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signed_path(key: bytes, claim: FileClaim) -> str:
    """The URL path (below the sharing prefix) of a signed file URL."""
    parts = [claim.grant_id, str(claim.snapshot_id), claim.token_id, str(claim.expires), _sign(key, claim),
             claim.file]
    return PREFIX + "/" + "/".join(quote(p, safe="") for p in parts)


def claim_of(key: bytes, grant_id: str, snapshot: str, token_id: str, expires: str, signature: str,
             file: str) -> FileClaim:
    """The claim a signed URL's parts (percent-decoded, as the router hands them over) make, or UrlRefused
    when the hub did not issue them (any changed byte, the expiry included, fails the signature)."""
    if not (snapshot.isdigit() and expires.isdigit() and _SIGNATURE.match(signature)):
        raise UrlRefused("malformed file URL: ask for the table again (POST .../query) for fresh URLs")
    if not all(_PART.match(p) for p in (grant_id, token_id, file)):
        raise UrlRefused("malformed file URL: ask for the table again (POST .../query) for fresh URLs")
    claim = FileClaim(grant_id, int(snapshot), token_id, file, int(expires))
    if not hmac.compare_digest(_sign(key, claim), signature):
        raise UrlRefused("file URL signature is not valid: the hub did not issue this URL")
    return claim


def check_expiry(claim: FileClaim, now: datetime | None = None) -> FileClaim:
    """The claim while its URL has not expired, else UrlRefused."""
    moment = now or datetime.now(UTC)
    if claim.expires <= moment.timestamp():
        raise UrlRefused(f"file URL expired at {datetime.fromtimestamp(claim.expires, UTC).isoformat()}; ask for "
                         "the table again (POST .../query) for fresh URLs")
    return claim


def check(key: bytes, grant_id: str, snapshot: str, token_id: str, expires: str, signature: str, file: str,
          now: datetime | None = None) -> FileClaim:
    """Signature, then expiry: the claim of a URL the hub issued and that is still current, or UrlRefused."""
    return check_expiry(claim_of(key, grant_id, snapshot, token_id, expires, signature, file), now)


def url_expiry(now: datetime, seconds: float, token_expires_at: datetime, grant_last_day: date) -> int:
    """When a file URL issued `now` expires (Unix seconds): after `seconds`, but never after its token or its
    grant (the grant's last day included)."""
    grant_end = datetime.combine(grant_last_day + timedelta(days=1), time.min, tzinfo=UTC)
    return int(min(now + timedelta(seconds=seconds), token_expires_at, grant_end).timestamp())
