"""Why an access request fails, one class per answer a department gets (exchange/errors.py's table maps each
to an HTTP status and a CLI exit code; they are defined there so that table needs no import from here).

Every message is written by the hub and names no data value: it is shown to the caller and recorded in
the provenance log as the denial's reason.
"""

from __future__ import annotations

from exchange.errors import (
    AccessDenied,
    AuthenticationFailed,
    BadQuery,
    NotFound,
    QueryRejected,
    QueryTimeout,
    ResultTooLarge,
)

__all__ = ["AuthenticationFailed", "BadQuery", "QueryRejected", "QueryTimeout", "ResultTooLarge", "NotRegistered"]


class NotRegistered(NotFound, AccessDenied):
    """A department or grant named in a request is not registered: not found for whoever named it, and
    recorded as a denial like every other refused request."""
