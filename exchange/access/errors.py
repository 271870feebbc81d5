"""Why an access request fails, one class per answer a department gets (the API maps each to a status).

Every message is written by the hub and names no data value: it is shown to the caller and recorded in
the provenance log as the denial's reason.
"""

from __future__ import annotations

from exchange.errors import AccessDenied, TerminalError


class AuthenticationFailed(TerminalError):
    """The bearer token is missing, malformed, unknown, wrong, expired or revoked (HTTP 401)."""


class QueryRejected(AccessDenied):
    """The SQL is not a single read-only SELECT, or it reaches outside the sandbox (HTTP 403)."""


class BadQuery(TerminalError):
    """The SQL does not parse or bind inside the sandbox for a reason that is not a policy (HTTP 400)."""


class ResultTooLarge(AccessDenied):
    """The result exceeds the row or byte limit (HTTP 413)."""


class QueryTimeout(AccessDenied):
    """The query ran longer than the time limit and was interrupted (HTTP 408)."""
