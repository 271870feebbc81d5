"""Credentials for Shanghai's API: a static bearer token, or OAuth2 client credentials.

The client-credentials source fetches a token from the token endpoint, keeps it until shortly before it
expires (by its own clock, injectable for tests) and fetches a new one then, or when the API answers
401 to it (the server may revoke or expire tokens early).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import httpx

from exchange.errors import SourceAuthError, SourceFormatError

CLIENT_ID_SETTING = "EXCHANGE_SHANGHAI_CLIENT_ID"
CLIENT_SECRET_SETTING = "EXCHANGE_SHANGHAI_CLIENT_SECRET"
TOKEN_SETTING = "EXCHANGE_SHANGHAI_API_TOKEN"

Fetch = Callable[[str, dict[str, str]], httpx.Response]
"""POSTs a form to a URL (with the adapter's retries) and returns the final response."""


class TokenSource(Protocol):
    """Where the adapter's bearer token comes from."""

    def token(self, fetch: Fetch) -> str:
        """A token believed valid now ('' for none)."""
        ...

    def invalidate(self) -> bool:
        """Forget the current token after a 401; True if a fresh one can be fetched."""
        ...

    def hint(self) -> str:
        """Which settings to check when the API refuses us."""
        ...


class StaticToken:
    """A long-lived token configured by the operator (the sandbox's and the demo's path)."""

    def __init__(self, token: str) -> None:
        self._token = token.strip()

    def token(self, fetch: Fetch) -> str:
        """The configured token."""
        return self._token

    def invalidate(self) -> bool:
        """A static token cannot be refreshed."""
        return False

    def hint(self) -> str:
        """The setting to fix."""
        return f"check {TOKEN_SETTING}"


class ClientCredentials:
    """OAuth2 client-credentials grant (RFC 6749 section 4.4) against `token_url`."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        leeway: float = 30.0,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self._clock = clock
        self._leeway = leeway
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetched = 0  # how many tokens were fetched (for tests and logs)

    def token(self, fetch: Fetch) -> str:
        """The cached token, or a new one if there is none or it is about to expire."""
        if self._token is None or self._clock() >= self._expires_at:
            self._fetch(fetch)
        assert self._token is not None
        return self._token

    def invalidate(self) -> bool:
        """Drop the cached token so the next request fetches a new one."""
        self._token = None
        return True

    def hint(self) -> str:
        """The settings to fix."""
        return f"check {CLIENT_ID_SETTING} and {CLIENT_SECRET_SETTING}"

    def _fetch(self, fetch: Fetch) -> None:
        started = self._clock()
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self._secret}
        response = fetch(self.token_url, form)
        if response.status_code in (400, 401, 403):
            raise SourceAuthError(
                f"Shanghai token endpoint {self.token_url} refused client {self.client_id!r} "
                f"(HTTP {response.status_code}: {response.text[:200]}); {self.hint()}"
            )
        if response.status_code != 200:
            raise SourceAuthError(f"Shanghai token endpoint {self.token_url} answered HTTP {response.status_code}")
        try:
            doc = response.json()
            token = doc["access_token"]
            lifetime = float(doc.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceFormatError(
                self.token_url, "token response", f"not an OAuth2 token response: {exc!r}",
                'expected {"access_token": ..., "token_type": "Bearer", "expires_in": seconds}',
            ) from exc
        if not isinstance(token, str) or not token:
            raise SourceFormatError(self.token_url, "token response", "access_token is not a non-empty string")
        self._token = token
        # Refresh a little early (at most a tenth of the lifetime) so a token never expires in flight.
        self._expires_at = started + lifetime - min(self._leeway, lifetime / 10)
        self.fetched += 1
