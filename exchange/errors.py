"""The hub's exception tree, and the one table that says what each kind of error means to a caller.

A record failing a contract is *data* (a quarantine row), never an exception. Exceptions are for
things that stop a stage or a request: bad input, a refusal, a broken signature, a source that cannot be read.

::

    ExchangeError                      root of every error the hub raises on purpose
    ├── TransientError                 a retry may help (Airflow retries the task)
    └── TerminalError                  a retry will not help until someone fixes the cause
        ├── UserError                  the caller (or a province office) can fix it
        │   ├── BadInput               an argument, setting, file or EXCHANGE_HOME is wrong   (exit 2, HTTP 400)
        │   │   ├── SettingsError      an EXCHANGE_* setting, e.g. EXCHANGE_HOME pointing at a file
        │   │   ├── BadFile            a file the user gave or edited is unreadable or malformed
        │   │   └── BadQuery           a department's SQL does not parse or bind
        │   │   └── BadWindow          a data window no batch can have
        │   ├── NotFound               the named thing does not exist                         (exit 2, HTTP 404)
        │   │   └── UnknownName        a province, dataset, ... the hub does not know
        │   ├── Refused                the hub will not do it, and says why                   (exit 1, HTTP 403)
        │   │   ├── AuthenticationFailed                                                       (HTTP 401)
        │   │   └── AccessDenied       a department's grants do not cover it (logged as a denial)
        │   │       ├── QueryRejected, ResultTooLarge (413), QueryTimeout (408), RateLimited (429)
        │   └── CheckFailed            something relied on does not check out                 (exit 1)
        │       ├── VerificationError  ... names the item and the problem
        │       └── SourceFormatError  a province's payload cannot be parsed
        ├── Unavailable                the hub's own disk or log stops it: an operator fixes it   (exit 1, HTTP 503)
        └── InternalError              a bug in the hub: report it                            (exit 1, HTTP 500)

:data:`OUTCOMES` maps these classes, in one place, onto CLI exit codes, HTTP statuses and Airflow's
retry-or-fail split (exchange/cli, exchange/api/app.py and exchange/airflow/errors.py all ask :func:`outcome`).

Every class pickles with its fields (Celery workers and Airflow task failures ship exceptions between
processes): :class:`ExchangeError` rebuilds an instance from its args and attributes without calling
``__init__``, so a subclass with its own signature needs nothing extra.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final


def _restore(cls: type[ExchangeError], args: tuple[Any, ...], state: dict[str, Any]) -> ExchangeError:
    """Unpickle: the instance as it was, without calling a constructor whose signature args cannot fill."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class ExchangeError(Exception):
    """Root of every error the hub raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException pickles as cls(*args): wrong for every subclass whose __init__ takes its fields.
        return _restore, (type(self), self.args, dict(self.__dict__))


class TransientError(ExchangeError):
    """A retry may help (network hiccup, server busy, lock held)."""


class TerminalError(ExchangeError):
    """A retry will not help until someone fixes the cause."""


class UserError(TerminalError):
    """The caller or a province office can fix it: the message names the problem and what to do."""


class Unavailable(TerminalError):
    """The hub's own environment stops it (its provenance log cannot be written, its disk is full): the request
    was fine, the hub cannot serve it now, and retrying will not help until an operator fixes the cause."""


class InternalError(TerminalError):
    """A bug in the hub (two components disagree, an invariant broke): report it, do not work around it."""


# -- bad input -----------------------------------------------------------------------------------------------


class BadInput(UserError):
    """An argument, setting, file or EXCHANGE_HOME is wrong (a usage error: CLI exit 2, HTTP 400)."""


class SettingsError(BadInput):
    """An EXCHANGE_* setting is invalid; names the variable, the value's problem and what to set instead."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class BadFile(BadInput):
    """A file the user gave (or edited) cannot be read or does not hold what it should; names the file."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class BadQuery(BadInput):
    """The SQL does not parse or bind inside the sandbox for a reason that is not a policy (HTTP 400)."""


class NotFound(UserError):
    """The named thing (batch, extract, file, key, department) does not exist (CLI exit 2, HTTP 404)."""


class UnknownName(NotFound, KeyError):
    """A province, dataset or other name the hub does not know; lists the ones it does.

    Also a KeyError, so code that looks names up keeps catching what it caught before.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError's own __str__ would print the message as a quoted repr


class BadWindow(BadInput, ValueError):
    """A data window that no batch can have (naive bounds, end not after start); also a ValueError."""


# -- refusals ------------------------------------------------------------------------------------------------


class Refused(UserError):
    """The hub will not do what was asked, and says why (CLI exit 1, HTTP 403)."""


class AuthenticationFailed(Refused):
    """The bearer token is missing, malformed, unknown, wrong, expired or revoked (HTTP 401)."""


class SourceAuthError(Refused):
    """The province's system refused our credentials."""


class AccessDenied(Refused):
    """A department asked for data its grants do not cover (recorded as a denial)."""


class QueryRejected(AccessDenied):
    """The SQL is not a single read-only SELECT, or it reaches outside the sandbox (HTTP 403)."""


class ResultTooLarge(AccessDenied):
    """The result exceeds the row or byte limit (HTTP 413)."""


class QueryTimeout(AccessDenied):
    """The query ran longer than the time limit and was interrupted (HTTP 408)."""


class RateLimited(AccessDenied):
    """The department used up its request allowance (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, rounded up, as HTTP's Retry-After needs."""
        return str(max(1, math.ceil(self.retry_after)))


# -- failed checks -------------------------------------------------------------------------------------------


class CheckFailed(UserError):
    """Something an auditor, a department or the hub relies on does not check out (CLI exit 1)."""


class SourceFormatError(CheckFailed):
    """A province's payload cannot be parsed; names the source and the position so the office can fix it."""

    def __init__(self, source: str, position: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.position = position
        self.problem = problem
        self.hint = hint
        text = f"{source} at {position}: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class VerificationError(CheckFailed):
    """Something an auditor relies on does not check out."""

    def __init__(self, item: str, problem: str) -> None:
        self.item = item
        self.problem = problem
        super().__init__(f"{item}: {problem}")


class SourceAuthenticityError(VerificationError):
    """A province's payload is unsigned, tampered, or signed by a key the hub does not trust for it."""

    def __init__(self, province: str, item: str, problem: str, hint: str) -> None:
        self.province = province
        self.hint = hint
        super().__init__(f"{province}: {item}", f"{problem} ({hint})")


# -- what each kind means to a caller ------------------------------------------------------------------------

USAGE_EXIT: Final = 2
FAILURE_EXIT: Final = 1


@dataclass(frozen=True)
class Outcome:
    """What an error means at each edge: the CLI's exit code, the API's status and code, Airflow's retry."""

    exit_code: int
    http_status: int
    code: str  # the API error body's `error`
    retry: bool  # Airflow: keep the task's retries (True) or fail it at once (False)


# First match wins, so the most specific classes come first. Anything that is not an ExchangeError
# (a bug, a full disk) is an internal failure a retry may get past.
OUTCOMES: Final[tuple[tuple[type[BaseException], Outcome], ...]] = (
    (AuthenticationFailed, Outcome(FAILURE_EXIT, 401, "unauthenticated", retry=False)),
    # Before Refused: an unknown name in a request is both not found and a (logged) denial.
    (NotFound, Outcome(USAGE_EXIT, 404, "not_found", retry=False)),
    (RateLimited, Outcome(FAILURE_EXIT, 429, "rate_limited", retry=False)),
    (ResultTooLarge, Outcome(FAILURE_EXIT, 413, "too_large", retry=False)),
    (QueryTimeout, Outcome(FAILURE_EXIT, 408, "timeout", retry=False)),
    (Refused, Outcome(FAILURE_EXIT, 403, "forbidden", retry=False)),
    (BadQuery, Outcome(USAGE_EXIT, 400, "bad_query", retry=False)),
    (BadInput, Outcome(USAGE_EXIT, 400, "bad_input", retry=False)),
    (CheckFailed, Outcome(FAILURE_EXIT, 500, "check_failed", retry=False)),
    (UserError, Outcome(FAILURE_EXIT, 400, "bad_request", retry=False)),
    (Unavailable, Outcome(FAILURE_EXIT, 503, "unavailable", retry=False)),
    (TerminalError, Outcome(FAILURE_EXIT, 500, "server_error", retry=False)),
    (TransientError, Outcome(FAILURE_EXIT, 503, "unavailable", retry=True)),
    (BaseException, Outcome(FAILURE_EXIT, 500, "server_error", retry=True)),
)


def validation_summary(exc: Any, limit: int = 3) -> str:
    """One line from a pydantic ValidationError: `where: what` for its first `limit` problems (never the value)."""
    problems = [f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {str(e['msg']).removeprefix('Value error, ')}"
                for e in exc.errors()]
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def outcome(exc: BaseException) -> Outcome:
    """What `exc` means to a CLI user, an API caller and Airflow (see :data:`OUTCOMES`)."""
    return next(o for kind, o in OUTCOMES if isinstance(exc, kind))
