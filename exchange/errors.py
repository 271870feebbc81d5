"""The hub's exception tree.

A record failing a contract is *data* (a quarantine row), never an exception. Exceptions are for
things that stop a stage: a source that cannot be read, a broken signature, a tampered file.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Root of every error the hub raises on purpose."""


class TransientError(ExchangeError):
    """A retry may help (network hiccup, server busy, lock held)."""


class TerminalError(ExchangeError):
    """A retry will not help until someone fixes the cause."""


class SourceFormatError(TerminalError):
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


class SourceAuthError(TerminalError):
    """The province's system refused our credentials."""


class VerificationError(TerminalError):
    """Something an auditor relies on does not check out."""

    def __init__(self, item: str, problem: str) -> None:
        self.item = item
        self.problem = problem
        super().__init__(f"{item}: {problem}")


class AccessDenied(TerminalError):
    """A department asked for data its grants do not cover."""


class SourceAuthenticityError(VerificationError):
    """A province's payload is unsigned, tampered, or signed by a key the hub does not trust for it."""

    def __init__(self, province: str, item: str, problem: str, hint: str) -> None:
        self.province = province
        self.hint = hint
        super().__init__(f"{province}: {item}", f"{problem} ({hint})")
