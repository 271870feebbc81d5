"""Load an ODCS v3 contract file into a checked :class:`~exchange.contracts.model.Contract`.

Loading is strict on purpose: a contract is data edited by people, and a mistake (a rule naming a
column that does not exist, a required field without its not-null rule, an unknown masking) must stop
the load, not surface as a silently skipped check in the middle of a night's exchange.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pydantic
import yaml
from open_data_contract_standard.model import (
    CustomProperty,
    DataQuality,
    OpenDataContractStandard,
    SchemaObject,
    SchemaProperty,
)

from exchange.contracts import coltypes, reference, rules
from exchange.contracts.model import (
    MASKINGS,
    REASON_SEPARATOR,
    RULE_ID_SEPARATOR,
    SEVERITIES,
    SHARING_TYPES,
    Contract,
    ContractError,
    FieldSpec,
    Rule,
)
from exchange.datasets import dataset as canonical_dataset
from exchange.reference import regions

CONTRACTS_DIR_ENV = "EXCHANGE_CONTRACTS_DIR"
GX_ENGINE = "greatExpectations"
GRADES = ("general", "important", "core")  # GB/T 43697-2024 data grades
# Values a rule may take from the run instead of the contract, written {$PARAMETER: name} as in GX:
# the providing province, the run's date (Asia/Shanghai), and lake references (see contracts/reference.py).
RUNTIME_PARAMETERS = ("province", "today")
# Stand-ins used to dry-run a parameterised rule at load, so a misfit (a date bound on a text column)
# is refused now and not in the middle of a batch.
_SAMPLE_PARAMETERS: dict[str, Any] = {"province": "shanghai", "today": dt.date(2000, 1, 1)}


def default_contracts_dir() -> Path:
    """``$EXCHANGE_CONTRACTS_DIR`` if set, else the repository's ``contracts/`` folder."""
    override = os.environ.get(CONTRACTS_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "contracts"


def contract_path(dataset: str, contracts_dir: Path | None = None) -> Path:
    """Where the contract of `dataset` lives: ``<dir>/<dataset>.odcs.yaml``."""
    return (contracts_dir or default_contracts_dir()) / f"{dataset}.odcs.yaml"


def load_contract(dataset: str, contracts_dir: Path | None = None) -> Contract:
    """Load and check the contract of `dataset` (raises ContractError naming the file and the problem)."""
    canonical_dataset(dataset)  # KeyError listing the known datasets, before looking for a file
    path = contract_path(dataset, contracts_dir)
    try:
        document = path.read_bytes()
    except FileNotFoundError:
        raise ContractError(path, f"no contract for dataset {dataset!r}") from None
    contract = parse_contract(document, path, dataset)
    refuse_lint_problems(document, path)
    return contract


@functools.lru_cache(maxsize=64)
def refuse_lint_problems(document: bytes, path: Path) -> None:
    """Raise ContractError for the first problem ``exchange contracts lint`` finds in the document (F8).

    One definition: the checks are lint's own (:func:`exchange.contracts.lint.document_problems`), so a
    contract with, say, a version that is not semantic is refused by a run exactly as by lint. Cached per
    document: every batch loads its contract.
    """
    from exchange.contracts.lint import document_problems  # lint imports this module

    problems = document_problems(document_data(document))
    if problems:
        where, reason = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ContractError(path, f"{where or '(document)'}: {reason}{more}; `exchange contracts lint {path}` "
                                  "lists every problem")


def parse_contract(document: bytes, path: Path, dataset: str) -> Contract:
    """Parse ODCS YAML bytes into a Contract for `dataset`; `path` is only used in messages and kept.

    Cached per (document, path, dataset), like the lint check: each stage of each batch loads its contract
    (three parses per run_exchange, 0.1-0.4 s each), and a Contract is immutable (frozen; its raw document
    and rule arguments are only read). An edited file is other bytes, so it is parsed afresh.
    """
    return _parse_contract(document, path, dataset)


@functools.lru_cache(maxsize=64)
def document_data(document: bytes) -> Any:
    """A contract document's YAML, parsed once per process for both the lint check and the ODCS model (which
    only read it), by libyaml where PyYAML has it (the pure-Python parser took 0.3-0.9 s per parse here)."""
    return yaml.load(document.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.lru_cache(maxsize=64)
def _parse_contract(document: bytes, path: Path, dataset: str) -> Contract:
    try:
        odcs = OpenDataContractStandard(**document_data(document))  # what from_string does, one parse fewer
    except (pydantic.ValidationError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ContractError(path, f"not a valid ODCS document: {exc}") from None
    if odcs.kind != "DataContract" or not (odcs.apiVersion or "").startswith("v3."):
        raise ContractError(path, f"expected an ODCS v3 DataContract, got kind={odcs.kind} {odcs.apiVersion}")
    for attr in ("id", "version"):
        if not getattr(odcs, attr):
            raise ContractError(path, f"missing {attr}")
    props = _custom(odcs.customProperties)
    schema_object = _schema_object(odcs, path, dataset)
    fields = tuple(_field(p, path) for p in schema_object.properties or [])
    key = _key(schema_object, path, dataset)
    _check_columns(fields, schema_object, path, dataset)
    contract_rules = _rules(schema_object, fields, path)
    _check_rules_match_fields(fields, contract_rules, path)
    _check_self_consistent(fields, key, contract_rules, path, dataset)
    _check_run_parameters(contract_rules, path, dataset)

    sharing_type = str(props.get("sharingType", ""))
    if sharing_type not in SHARING_TYPES:
        raise ContractError(
            path, f"sharingType must be one of {', '.join(SHARING_TYPES)}, not {sharing_type!r}"
        )
    threshold = props.get("batchHoldThreshold")
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise ContractError(path, f"batchHoldThreshold must be a share between 0 and 1, not {threshold!r}")
    version = str(props.get("gbt2260Version", ""))
    if version != regions.GBT2260_VERSION:
        raise ContractError(
            path, f"gbt2260Version {version!r}: the hub holds GB/T 2260-{regions.GBT2260_VERSION} only"
        )
    return Contract(
        id=str(odcs.id),
        version=str(odcs.version),
        dataset=dataset,
        key=key,
        fields=fields,
        rules=contract_rules,
        sharing_type=sharing_type,
        batch_hold_threshold=float(threshold),
        document_sha256=hashlib.sha256(document).hexdigest(),
        path=path,
        raw=odcs,
    )


def _custom(properties: list[CustomProperty] | None) -> dict[str, Any]:
    return {p.property: p.value for p in properties or [] if p.property}


def _schema_object(odcs: OpenDataContractStandard, path: Path, dataset: str) -> SchemaObject:
    matches = [s for s in odcs.schema_ or [] if s.name == dataset]
    if len(matches) != 1:
        raise ContractError(
            path, f"expected exactly one schema object named {dataset!r}, found {len(matches)}"
        )
    return matches[0]


def _field(prop: SchemaProperty, path: Path) -> FieldSpec:
    if not prop.name:
        raise ContractError(path, "a property has no name")
    custom = _custom(prop.customProperties)
    grade = custom.get("grade")
    if grade is not None and grade not in GRADES:
        raise ContractError(path, f"{prop.name}: grade must be one of {', '.join(GRADES)}, not {grade!r}")
    masking = str(custom.get("masking", "none"))
    if masking not in MASKINGS:
        raise ContractError(
            path, f"{prop.name}: masking must be one of {', '.join(MASKINGS)}, not {masking!r}"
        )
    options = prop.logicalTypeOptions or {}
    max_length = options.get("maxLength")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ContractError(path, f"{prop.name}: logicalTypeOptions maxLength must be a positive integer, "
                                  f"not {max_length!r}")
    return FieldSpec(
        name=prop.name,
        max_length=max_length,
        logical_type=prop.logicalType or "",
        required=bool(prop.required),
        unique=bool(prop.unique),
        classification=prop.classification,
        grade=None if grade is None else str(grade),
        masking=masking,
        description=prop.description or "",
    )


def _key(schema_object: SchemaObject, path: Path, dataset: str) -> str:
    keys = [p.name for p in schema_object.properties or [] if p.primaryKey]
    expected = canonical_dataset(dataset).key
    if keys != [expected]:
        raise ContractError(
            path, f"primary key must be exactly [{expected}] as in exchange.datasets, not {keys}"
        )
    return expected


def _check_columns(
    fields: tuple[FieldSpec, ...], schema_object: SchemaObject, path: Path, dataset: str
) -> None:
    """The contract must describe exactly the canonical columns, in order, declaring their types as
    exchange.contracts.coltypes maps the canonical Arrow types."""
    schema = canonical_dataset(dataset).schema
    names = [f.name for f in fields]
    if names != schema.names:
        raise ContractError(path, f"properties {names} differ from the canonical columns {schema.names}")
    for prop in schema_object.properties or []:
        expected = coltypes.declared(schema.field(str(prop.name)).type)
        if prop.physicalType != expected.physical:
            raise ContractError(
                path, f"{prop.name}: physicalType {prop.physicalType!r}, canonical is {expected.physical!r} "
                      f"(Arrow {expected.arrow})"
            )
        if prop.logicalType != expected.logical:
            raise ContractError(
                path, f"{prop.name}: logicalType {prop.logicalType!r}, canonical is {expected.logical!r}"
            )
        options = prop.logicalTypeOptions or {}
        for key, value in expected.options.items():
            if options.get(key) != value:
                raise ContractError(
                    path, f"{prop.name}: logicalTypeOptions {key} must be {value!r} for {expected.physical}"
                )


def _rules(schema_object: SchemaObject, fields: tuple[FieldSpec, ...], path: Path) -> tuple[Rule, ...]:
    """Every quality entry, property-level ones first (in property order), then object-level ones."""
    out: list[Rule] = []
    for prop in schema_object.properties or []:
        out.extend(_rule(q, path, column=prop.name) for q in prop.quality or [])
    out.extend(_rule(q, path, column=None) for q in schema_object.quality or [])
    out.extend(length_rule(f) for f in fields if f.max_length is not None)
    seen: set[str] = set()
    names = {f.name for f in fields}
    for rule in out:
        if rule.id in seen:
            raise ContractError(path, f"rule id {rule.id!r} is used twice")
        seen.add(rule.id)
        unknown = [c for c in rule.columns if c not in names]
        if unknown:
            raise ContractError(path, f"rule {rule.id}: unknown column(s) {unknown}")
    return tuple(out)


def length_rule(spec: FieldSpec) -> Rule:
    """The rule ``<field>.max_length`` a property's ``logicalTypeOptions.maxLength`` stands for.

    The length is written once, where ODCS puts it; the rule (a GX value-lengths expectation with its
    predicate) follows from it, so the contract cannot state a length it does not enforce.
    """
    assert spec.max_length is not None
    return Rule(
        id=f"{spec.name}.max_length",
        description=f"超过 {spec.max_length} 个字符 / longer than {spec.max_length} characters (the contract's "
                    "maxLength)",
        severity="error",
        expectation=rules.VALUE_LENGTHS_BETWEEN,
        kwargs={"column": spec.name, "max_value": spec.max_length},
    )


def _rule(quality: DataQuality, path: Path, column: str | None) -> Rule:
    rule_id = quality.name or ""
    where = f"rule {rule_id or '(unnamed)'}"
    if not rule_id or RULE_ID_SEPARATOR in rule_id or rule_id != rule_id.strip():
        raise ContractError(path, f"{where}: every quality rule needs a name (its stable id) without commas")
    if quality.type != "custom" or quality.engine != GX_ENGINE:
        raise ContractError(path, f"{where}: expected type custom and engine {GX_ENGINE}")
    if quality.severity not in SEVERITIES:
        raise ContractError(path, f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    if not quality.description:
        raise ContractError(path, f"{where}: needs a description (it is the reason a province office reads)")
    if REASON_SEPARATOR in quality.description:
        raise ContractError(
            path, f"{where}: description must not contain {REASON_SEPARATOR!r}, it separates reasons"
        )
    impl = quality.implementation
    if not isinstance(impl, dict) or not isinstance(impl.get("type"), str):
        raise ContractError(path, f"{where}: implementation must be a mapping with an expectation type")
    kwargs = dict(impl.get("kwargs") or {})
    # A property-level rule is about that property; say so once in the YAML, or not at all.
    if column is not None and kwargs.setdefault("column", column) != column:
        raise ContractError(path, f"{where}: sits under {column} but checks {kwargs['column']}")
    for name, value in kwargs.items():
        if isinstance(value, dict):
            parameter = value.get("$PARAMETER")
            if parameter in RUNTIME_PARAMETERS:
                continue
            try:
                lake_parameter = reference.parse_lake_parameter(parameter) if isinstance(parameter, str) else None
            except ValueError as exc:
                raise ContractError(path, f"{where}: {name} refers to a bad lake parameter: {exc}") from None
            if lake_parameter is None:
                raise ContractError(path, f"{where}: {name} refers to unknown run parameter {parameter!r}")
            if name != "value_set":
                raise ContractError(path, f"{where}: lake parameter {parameter!r} can only supply a value_set")
    try:
        rules.check_kwargs(impl["type"], kwargs)
    except ValueError as exc:
        raise ContractError(path, f"{where}: {exc}") from None
    return Rule(
        id=rule_id,
        description=" ".join(quality.description.split()),
        severity=quality.severity,
        expectation=impl["type"],
        kwargs=kwargs,
    )


def _check_rules_match_fields(
    fields: tuple[FieldSpec, ...], contract_rules: tuple[Rule, ...], path: Path
) -> None:
    """``required`` and ``unique`` must each be backed by an error rule, and such rules by the flags."""
    for flag, expectation in (("required", rules.NOT_NULL), ("unique", rules.FIRST_OCCURRENCE)):
        flagged = {f.name for f in fields if getattr(f, flag)}
        enforced = {
            str(r.kwargs["column"])
            for r in contract_rules
            if r.expectation == expectation and r.severity == "error"
        }
        if flagged != enforced:
            raise ContractError(
                path,
                f"fields marked {flag} {sorted(flagged)} differ from those with an error rule {expectation} "
                f"{sorted(enforced)}",
            )


# Rules whose contract-supplied values (sets, bounds, patterns, column pairs) meet the column's Arrow type:
# a bad value only surfaces when the predicate runs, so each is dry-run on one all-null row at load.
_DRY_RUN = (rules.IN_SET, rules.BETWEEN, rules.MATCH_REGEX, rules.PAIR_A_GREATER_THAN_B)


def _check_self_consistent(
    fields: tuple[FieldSpec, ...], key: str, contract_rules: tuple[Rule, ...], path: Path, dataset: str
) -> None:
    """Refuse a contract no record could satisfy, or one whose rule values do not fit the column types."""
    spec = next(f for f in fields if f.name == key)
    if not (spec.required and spec.unique):
        raise ContractError(path, f"primary key {key} must be required and unique")
    one_null_row = pa.Table.from_pylist([{}], schema=canonical_dataset(dataset).schema)
    for rule in contract_rules:
        kwargs = rule.kwargs
        where = f"rule {rule.id}"
        if rule.expectation == rules.IN_SET and not kwargs["value_set"]:
            raise ContractError(path, f"{where}: empty value_set rejects every value")
        if rule.expectation == rules.BETWEEN:
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            if low is not None and high is not None:
                try:
                    empty = low > high or (low == high and bool(kwargs.get("strict_min") or kwargs.get("strict_max")))
                except TypeError:
                    problem = f"min_value {low!r} and max_value {high!r} differ in type"
                    raise ContractError(path, f"{where}: {problem}") from None
                if empty:
                    raise ContractError(path, f"{where}: min_value {low!r} / max_value {high!r} admit no value")
        if rule.expectation == rules.PAIR_A_GREATER_THAN_B and kwargs["column_A"] == kwargs["column_B"]:
            raise ContractError(path, f"{where}: compares {kwargs['column_A']} with itself")
        # A {$PARAMETER: ...} value is only known at run time.
        if rule.expectation in _DRY_RUN and not any(isinstance(v, dict) for v in kwargs.values()):
            try:
                rules.failing_mask(rule.expectation, one_null_row, **kwargs)
            except (pa.ArrowException, ValueError, TypeError) as exc:
                raise ContractError(path, f"{where}: does not fit the column type: {exc}") from None


def _check_run_parameters(contract_rules: tuple[Rule, ...], path: Path, dataset: str) -> None:
    """Lake references must fit the rule's column, and every parameterised rule must fit its column type."""
    schema = canonical_dataset(dataset).schema
    one_null_row = pa.Table.from_pylist([{}], schema=schema)
    for rule in contract_rules:
        where = f"rule {rule.id}"
        names = {k: reference.parameter_of(v) for k, v in rule.kwargs.items()}
        if not any(names.values()):
            continue
        for name in names.values():
            lake_parameter = reference.parse_lake_parameter(name) if name else None
            if lake_parameter is None:
                continue
            column = str(rule.kwargs["column"])
            if lake_parameter.kind == reference.LAKE_STALE and (
                lake_parameter.dataset != dataset or column != lake_parameter.column
            ):
                raise ContractError(
                    path, f"{where}: {name!r} can only check this dataset's own key {dataset}.{column}"
                )
            ours = schema.field(column).type
            theirs = canonical_dataset(lake_parameter.dataset).schema.field(lake_parameter.column).type
            if theirs != ours:
                raise ContractError(path, f"{where}: {column} ({ours}) cannot match {name} ({theirs})")
        sample = {
            k: v if names[k] is None else _SAMPLE_PARAMETERS.get(str(names[k]), [])
            for k, v in rule.kwargs.items()
        }
        try:
            rules.failing_mask(rule.expectation, one_null_row, **sample)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise ContractError(path, f"{where}: does not fit the column type with run parameters: {exc}") from None
