"""The hub's view of an ODCS data contract: the fields and rules the validator needs, nothing more.

The parsed ODCS document stays available as ``Contract.raw`` for anything else (SLA, support, team).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from open_data_contract_standard.model import OpenDataContractStandard

from exchange.errors import BadFile, InternalError

SEVERITIES = ("error", "warning")
# Masking rules exchange.access.policy knows; "withhold" keeps the column out unless a grant names it.
MASKINGS = ("none", "resident_id", "name", "mobile", "withhold")
SHARING_TYPES = ("unconditional", "conditional", "not_shared")
# How a quarantine row lists several broken rules; ids and descriptions must not contain these.
RULE_ID_SEPARATOR = ","
REASON_SEPARATOR = "; "
# The rule id suffix of a record quarantined because a field's value could not be read as sent.
READABLE_SUFFIX = ".readable"


class ContractError(BadFile):
    """A contract file is malformed or does not fit its canonical dataset; names the file and the problem."""


class ValidationMismatchError(InternalError):
    """Great Expectations and the hub's own predicate disagree about a rule: a bug, never a data problem.

    Raised rather than guessed around, because a quarantine reason that does not match the GX result
    would be a wrong statement to a province office.
    """


@dataclass(frozen=True)
class FieldSpec:
    """One column of a contract: type, constraints, classification and how it is masked when shared."""

    name: str
    logical_type: str
    required: bool
    unique: bool
    classification: str | None
    grade: str | None
    masking: str = "none"
    description: str = ""
    max_length: int | None = None  # characters at most (ODCS logicalTypeOptions.maxLength)


@dataclass(frozen=True)
class Rule:
    """One quality rule: a stable id, the reason text shown to the province, and its GX expectation."""

    id: str
    description: str
    severity: str
    expectation: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the rule reads, in the order its reason text names them."""
        names = [self.kwargs[k] for k in ("column", "column_A", "column_B") if k in self.kwargs]
        return tuple(str(n) for n in names)


@dataclass(frozen=True)
class Contract:
    """A loaded, checked data contract for one canonical dataset."""

    id: str
    version: str
    dataset: str
    key: str
    fields: tuple[FieldSpec, ...]
    rules: tuple[Rule, ...]
    sharing_type: str
    batch_hold_threshold: float
    document_sha256: str
    path: Path
    raw: OpenDataContractStandard = dataclasses.field(compare=False, repr=False)

    def field(self, name: str) -> FieldSpec:
        """The field called `name`; KeyError lists the known ones."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"contract {self.id} has no field {name!r}; known: {', '.join(self.field_names)}")

    @property
    def field_names(self) -> tuple[str, ...]:
        """Column names in contract order."""
        return tuple(spec.name for spec in self.fields)

    def readable_rule(self, name: str) -> Rule:
        """The hub's own rule ``<field>.readable``: what the province sent for `name` could be read at all.

        Not written in the contract: every field has it. A record breaking it is quarantined with the value
        as sent (exchange.intake); the reason names the value and the format expected.
        """
        self.field(name)
        return Rule(
            id=f"{name}{READABLE_SUFFIX}",
            description="送来的值无法按合同类型读取，请按约定格式发送 / the value sent cannot be read as "
                        "the contract's type, send it in the documented format",
            severity="error",
            expectation="as_sent_readable",
            kwargs={"column": name},
        )

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id (a contract rule or a field's readable rule); KeyError lists the known ones."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        if rule_id.endswith(READABLE_SUFFIX) and rule_id.removesuffix(READABLE_SUFFIX) in self.field_names:
            return self.readable_rule(rule_id.removesuffix(READABLE_SUFFIX))
        raise KeyError(
            f"contract {self.id} has no rule {rule_id!r}; known: {', '.join(r.id for r in self.rules)}"
        )
