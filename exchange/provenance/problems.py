"""Verification problems that say what was expected and what was found, for people and for `--json`."""

from __future__ import annotations

from typing import Any

from exchange.errors import VerificationError


class Mismatch(VerificationError):
    """A verification failure with the expected and the found value (digest, count, sequence, ...)."""

    def __init__(self, item: str, problem: str, *, expected: object = None, found: object = None) -> None:
        super().__init__(item, problem)
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        text = f"{self.item}: {self.problem}"
        if self.expected is not None or self.found is not None:
            text += f" (expected {self.expected}, found {self.found})"
        return text


def problem_json(problem: VerificationError) -> dict[str, Any]:
    """One problem as JSON: item, problem, expected, found (null when the check has no single value)."""
    return {
        "item": problem.item,
        "problem": problem.problem,
        "expected": _plain(getattr(problem, "expected", None)),
        "found": _plain(getattr(problem, "found", None)),
    }


def _plain(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return str(value)
