"""The error tree: every exception class pickles with its fields, and one table decides what each means.

Classes are discovered, not listed: every class in exchange/errors.py and every ExchangeError subclass
anywhere in exchange/ and adapters/ (all modules imported), so a new class cannot escape the checks.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from pathlib import Path

import pytest

import adapters
import exchange
from exchange import errors
from exchange.errors import (
    FAILURE_EXIT,
    OUTCOMES,
    USAGE_EXIT,
    AccessDenied,
    AuthenticationFailed,
    BadFile,
    BadInput,
    BadQuery,
    BadWindow,
    CheckFailed,
    ExchangeError,
    InternalError,
    NotFound,
    QueryTimeout,
    RateLimited,
    Refused,
    ResultTooLarge,
    SettingsError,
    SourceAuthenticityError,
    SourceFormatError,
    TerminalError,
    TransientError,
    Unavailable,
    UnknownName,
    UserError,
    VerificationError,
    outcome,
)
from exchange.provenance.log import LogUnavailable


def _all_modules() -> None:
    for package in (exchange, adapters):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)


def _subclasses(root: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    todo = [root]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found and sub.__module__.startswith(("exchange", "adapters")):
                found.add(sub)
                todo.append(sub)
    return found


def _every_class() -> list[type[BaseException]]:
    _all_modules()
    in_module = {c for _, c in inspect.getmembers(errors, inspect.isclass)
                 if issubclass(c, BaseException) and c.__module__ == errors.__name__}
    return sorted(in_module | _subclasses(ExchangeError) | {ExchangeError},
                  key=lambda c: f"{c.__module__}.{c.__qualname__}")


EVERY_CLASS = _every_class()


def _example(cls: type[BaseException]) -> BaseException:
    """An instance with a distinct value for every constructor parameter (numbers where the type says so)."""
    values: dict[str, object] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = str(param.annotation)
        values[name] = 2.5 if "float" in annotation else 3 if annotation == "int" else f"<{name} of {cls.__name__}>"
    if not values:
        return cls(f"a {cls.__name__} [/b] with [records]")
    return cls(**values)


def test_the_discovery_finds_the_classes_outside_the_module_too() -> None:
    names = {c.__name__ for c in EVERY_CLASS}
    assert {"SourceFormatError", "ContractError", "Mismatch", "DecryptionFailed", "NotRegistered"} <= names
    assert len(EVERY_CLASS) >= 30


@pytest.mark.parametrize("cls", EVERY_CLASS, ids=lambda c: c.__qualname__)
def test_every_exception_class_survives_pickling_with_its_fields(cls: type[BaseException]) -> None:
    original = _example(cls)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is cls
    assert str(copy) == str(original)
    assert copy.args == original.args
    assert vars(copy) == vars(original)


@pytest.mark.parametrize("cls", EVERY_CLASS, ids=lambda c: c.__qualname__)
def test_every_class_has_one_meaning_and_retry_follows_the_terminal_split(cls: type[BaseException]) -> None:
    meaning = outcome(_example(cls))
    assert meaning.exit_code in (USAGE_EXIT, FAILURE_EXIT)
    if issubclass(cls, TerminalError):
        assert not meaning.retry, "a TerminalError must fail the Airflow task at once"
    if issubclass(cls, TransientError):
        assert meaning.retry
    if issubclass(cls, UserError):
        assert meaning.http_status < 500 or issubclass(cls, CheckFailed)
    assert cls.__doc__, "every error class says in one line what it means"


@pytest.mark.parametrize(("exc", "exit_code", "status", "code", "retry"), [
    (BadInput("x"), 2, 400, "bad_input", False),
    (SettingsError("EXCHANGE_HOME", "a file"), 2, 400, "bad_input", False),
    (BadFile(Path("p.yaml"), "not YAML"), 2, 400, "bad_input", False),
    (BadWindow("empty"), 2, 400, "bad_input", False),
    (BadQuery("no such column"), 2, 400, "bad_query", False),
    (NotFound("no batch"), 2, 404, "not_found", False),
    (UnknownName("dataset", "x", ["e_license"]), 2, 404, "not_found", False),
    (Refused("exists"), 1, 403, "forbidden", False),
    (AccessDenied("no grant"), 1, 403, "forbidden", False),
    (AuthenticationFailed("bad token"), 1, 401, "unauthenticated", False),
    (RateLimited("slow down", 1.5), 1, 429, "rate_limited", False),
    (ResultTooLarge("too big"), 1, 413, "too_large", False),
    (QueryTimeout("too slow"), 1, 408, "timeout", False),
    (VerificationError("item", "broken"), 1, 500, "check_failed", False),
    (SourceAuthenticityError("jiangsu", "drop", "unsigned", "sign it"), 1, 500, "check_failed", False),
    (SourceFormatError("page 2", "record 3", "bad JSON"), 1, 500, "check_failed", False),
    (InternalError("GX and the predicate disagree"), 1, 500, "server_error", False),
    (TerminalError("held"), 1, 500, "server_error", False),
    (Unavailable("disk full"), 1, 503, "unavailable", False),
    (LogUnavailable(Path("log.jsonl"), "not writable"), 1, 503, "unavailable", False),
    (TransientError("busy"), 1, 503, "unavailable", True),
    (ExchangeError("unclassified"), 1, 500, "server_error", True),
    (OSError(28, "No space left on device"), 1, 500, "server_error", True),
])
def test_the_one_table(exc: BaseException, exit_code: int, status: int, code: str, retry: bool) -> None:
    meaning = outcome(exc)
    assert (meaning.exit_code, meaning.http_status, meaning.code, meaning.retry) == (exit_code, status, code, retry)


def test_the_table_lists_subclasses_before_their_bases() -> None:
    kinds = [kind for kind, _ in OUTCOMES]
    for i, kind in enumerate(kinds):
        assert not any(issubclass(later, kind) and later is not kind for later in kinds[i + 1:]), (
            f"{kind.__name__} shadows a subclass listed after it")


def test_an_unknown_name_is_still_a_key_error_with_a_plain_message() -> None:
    exc = UnknownName("province", "hubei", ["jiangsu"])
    assert isinstance(exc, KeyError)
    assert str(exc) == "unknown province 'hubei'; known: jiangsu"
    assert isinstance(BadWindow("x"), ValueError)
