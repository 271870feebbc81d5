"""`exchange contracts lint`: everything wrong with a contract file, each problem with its place in the file.

Loading (``exchange.contracts.load``) stops at the first problem, which is right for a run but slow for the
person editing the contract. Lint reports every problem it can find, each as file, document path
(``schema[0].properties[3].quality[1]``) and reason:

* the document is valid against the standard's own JSON Schema of the ODCS version it declares (apiVersion
  v3.0.2, v3.1.0 or v3.2.0; stricter than the package's pydantic model, which accepts unknown keys and any
  logicalType);
* the version is a semantic version (``MAJOR.MINOR.PATCH``), which ``contracts diff`` relies on;
* every quality rule is a Great Expectations rule the hub has a predicate for and compiles to a GX
  expectation (``exchange.contracts.suite.expectation_for``);
* every property carries a classification and an explicit masking rule that ``exchange.access.policy``
  knows, and personal levels (L3, L4) are never left unmasked;
* the contract loads: every check ``load_contract`` makes (canonical columns, rule/flag agreement,
  self-contradictions) passes.

Lint imports Great Expectations (seconds), so it is for CI and editors, not for the pipeline's hot path.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from exchange.access.policy import MASKS
from exchange.contracts import rules
from exchange.contracts.load import GX_ENGINE, default_contracts_dir, parse_contract
from exchange.contracts.model import SEVERITIES, ContractError, Rule
from exchange.datasets import DATASETS

# SemVer 2.0.0 (semver.org), pre-release and build metadata allowed.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
CLASSIFICATIONS = ("L1", "L2", "L3", "L4")
# Sensitivity levels whose values identify a person: sharing them in clear needs a grant, never the contract.
MUST_MASK = ("L3", "L4")
# "withhold" is not an SQL mask: exchange.access.policy.masked_column keeps such a column out unless a grant names it.
KNOWN_MASKS = (*MASKS, "withhold")
CONTRACT_GLOB = "*.odcs.yaml"
ODCS_PREFIX = "not valid ODCS "  # every ODCS schema problem's reason starts so, naming the version checked
# Declared apiVersion -> the standard's own JSON Schema of that version (package, resource). The
# open-data-contract-standard package ships only its newest; the earlier ones are vendored from the
# standard's repository (odcs_schemas/README.md). Lint and load check a contract against its declared version.
ODCS_SCHEMAS = {
    "v3.0.2": ("exchange.contracts", "odcs_schemas/odcs-json-schema-v3.0.2.json"),
    "v3.1.0": ("exchange.contracts", "odcs_schemas/odcs-json-schema-v3.1.0.json"),
    "v3.2.0": ("open_data_contract_standard", "schema.json"),
}


@dataclass(frozen=True)
class LintProblem:
    """One problem: the file, where in the document ("" for the whole document) and why."""

    file: Path
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where or '(document)'}: {self.reason}"


def default_paths(contracts_dir: Path | None = None) -> list[Path]:
    """Every contract file in the contracts folder, sorted."""
    return sorted((contracts_dir or default_contracts_dir()).glob(CONTRACT_GLOB))


def lint_paths(paths: Iterable[Path]) -> list[LintProblem]:
    """The problems of every file, in file order."""
    return [problem for path in paths for problem in lint_file(path)]


def lint_file(path: Path) -> list[LintProblem]:
    """Every problem found in one contract file (empty when it is fine)."""
    try:
        document = path.read_bytes()
    except OSError as exc:
        return [LintProblem(path, "", f"cannot read: {exc.strerror or exc}")]
    try:
        data = yaml.safe_load(document.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [LintProblem(path, "", f"not YAML: {' '.join(str(exc).split())}")]
    if not isinstance(data, dict):
        return [LintProblem(path, "", "not a mapping: an ODCS document is a YAML mapping")]
    found = [LintProblem(path, where, reason) for where, reason in document_problems(data)]
    if any(p.reason.startswith(ODCS_PREFIX) for p in found):
        return found  # the checks below walk the ODCS structure, which is not there
    found += [LintProblem(path, where, reason) for where, reason in _rule_problems(data)]
    dataset = _dataset(path, data)
    if dataset is None:
        found.append(LintProblem(path, "schema", f"no schema object names a known dataset ({', '.join(DATASETS)})"))
        return found
    try:
        parse_contract(document, path, dataset)
    except ContractError as exc:
        where = locate(data, exc.problem)
        # Load stops at its first problem; when lint already named that place, it is the same problem.
        if not where or all(p.where != where for p in found):
            found.append(LintProblem(path, where, exc.problem))
    return found


def dotted(parts: Sequence[str | int]) -> str:
    """A document path as ``schema[0].properties[3].quality[1]``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@functools.cache
def odcs_validator(api_version: str) -> Any:
    """A validator for the ODCS JSON Schema of `api_version` (one of ODCS_SCHEMAS)."""
    import jsonschema  # airflow and GX depend on it; imported here so loading a contract stays light

    package, name = ODCS_SCHEMAS[api_version]
    schema = json.loads(resources.files(package).joinpath(name).read_text("utf-8"))
    return jsonschema.validators.validator_for(schema)(schema)


def document_problems(data: Any) -> list[tuple[str, str]]:
    """(path, reason) for what lint refuses without Great Expectations: the declared ODCS version's schema,
    semantic version, classification and masking. ``load_contract`` refuses the same, so a run never accepts a
    contract lint refuses (the rules' GX compilation is checked when the validate stage compiles the suite)."""
    found = odcs_schema_problems(data)
    if found:
        return found
    return _version_problems(data) + _masking_problems(data)


def odcs_schema_problems(data: Any) -> list[tuple[str, str]]:
    """(path, reason) for every way `data` breaks the ODCS JSON Schema of the version it declares, sorted by
    path. A document is checked against its own version's schema, not the newest: the newest accepts every
    older apiVersion, so a v3.0.2 contract using v3.1 vocabulary would pass it and fail the standard's tools."""
    declared = data.get("apiVersion") if isinstance(data, dict) else None
    if declared not in ODCS_SCHEMAS:
        return [("apiVersion", f"{ODCS_PREFIX}apiVersion {declared!r} is not one the hub has the standard's schema "
                               f"for; declare one of {', '.join(ODCS_SCHEMAS)}")]
    seen: dict[tuple[str, str], None] = {}
    for error in odcs_validator(declared).iter_errors(data):
        reason = " ".join(str(error.message).split())
        if len(reason) > 300:  # a oneOf failure quotes the whole offending object
            reason = reason[:297] + "..."
        seen.setdefault((dotted(list(error.absolute_path)), f"not valid ODCS {declared}: {reason}"), None)
    return sorted(seen)


def _version_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    version = data.get("version")
    if not isinstance(version, str) or not SEMVER.match(version):
        return [("version", f"must be a semantic version MAJOR.MINOR.PATCH, not {version!r}")]
    return []


def _properties(data: dict[str, Any]) -> Iterable[tuple[list[str | int], dict[str, Any]]]:
    for i, obj in enumerate(data.get("schema") or []):
        for j, prop in enumerate(obj.get("properties") or []):
            yield ["schema", i, "properties", j], prop


def _custom(entries: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {str(e.get("property")): e.get("value") for e in entries or []}


def _masking_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for where, prop in _properties(data):
        name, level = prop.get("name"), prop.get("classification")
        masking = _custom(prop.get("customProperties")).get("masking")
        if level not in CLASSIFICATIONS:
            out.append((dotted(where), f"{name}: classification must be one of {', '.join(CLASSIFICATIONS)}, "
                                       f"not {level!r}"))
        if masking is None:
            out.append((dotted(where), f"{name}: classification {level} has no masking rule "
                                       "(customProperties masking)"))
        elif masking not in KNOWN_MASKS:
            out.append((dotted(where), f"{name}: masking {masking!r} is not one the hub applies "
                                       f"({', '.join(KNOWN_MASKS)})"))
        elif level in MUST_MASK and masking == "none":
            out.append((dotted(where), f"{name}: classification {level} must be masked, not 'none'"))
    return out


def _quality(data: dict[str, Any]) -> Iterable[tuple[list[str | int], dict[str, Any], str | None]]:
    """Every quality entry with its path and the property it sits under (None for object-level rules)."""
    for i, obj in enumerate(data.get("schema") or []):
        for j, prop in enumerate(obj.get("properties") or []):
            for k, quality in enumerate(prop.get("quality") or []):
                yield ["schema", i, "properties", j, "quality", k], quality, prop.get("name")
        for k, quality in enumerate(obj.get("quality") or []):
            yield ["schema", i, "quality", k], quality, None


def _rule_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    from exchange.contracts.suite import expectation_for  # Great Expectations takes seconds to import

    out = []
    for where, quality, column in _quality(data):
        name = quality.get("name") or "(unnamed)"
        impl = quality.get("implementation")
        if quality.get("type") != "custom" or quality.get("engine") != GX_ENGINE:
            out.append((dotted(where), f"rule {name}: must be type custom, engine {GX_ENGINE}"))
            continue
        if not isinstance(impl, dict) or not isinstance(impl.get("type"), str):
            out.append((dotted(where), f"rule {name}: implementation must be a mapping with an expectation type"))
            continue
        expectation = impl["type"]
        if expectation not in rules.PREDICATES:
            out.append((dotted(where), f"rule {name}: unknown rule type {expectation!r}; the hub supports "
                                       f"{', '.join(sorted(rules.PREDICATES))}"))
            continue
        kwargs = dict(impl.get("kwargs") or {})
        if column is not None:
            kwargs.setdefault("column", column)
        # A bad severity is load's to report; compile with a valid one so the GX check still runs.
        severity = str(quality["severity"]) if quality.get("severity") in SEVERITIES else "error"
        try:
            expectation_for(Rule(str(name), str(quality.get("description") or name), severity, expectation, kwargs))
        except Exception as exc:  # noqa: BLE001 - GX raises pydantic, its own and builtin errors alike
            reason = " ".join(str(exc).split())
            out.append((dotted(where), f"rule {name}: does not compile to a GX expectation: {reason}"))
    return out


def _dataset(path: Path, data: dict[str, Any]) -> str | None:
    """The dataset a file describes: its name (``<dataset>.odcs.yaml``), else its only schema object."""
    stem = path.name.removesuffix(".odcs.yaml")
    if stem in DATASETS:
        return stem
    names = [obj.get("name") for obj in data.get("schema") or []]
    return names[0] if len(names) == 1 and names[0] in DATASETS else None


_PROPERTY_PROBLEM = re.compile(r"^(?P<name>[^\s:]+): ")
_RULE_PROBLEM = re.compile(r"^rule (?P<name>\S+?):? ")
_CUSTOM_PROBLEM = re.compile(r"^(?P<name>sharingType|batchHoldThreshold|gbt2260Version)\b")


def locate(data: dict[str, Any], problem: str) -> str:
    """The document path a load error is about, found from the rule id or property name it names."""
    if match := _RULE_PROBLEM.match(problem):
        for where, quality, _ in _quality(data):
            if quality.get("name") == match["name"]:
                return dotted(where)
    if match := _CUSTOM_PROBLEM.match(problem):
        for i, entry in enumerate(data.get("customProperties") or []):
            if entry.get("property") == match["name"]:
                return dotted(["customProperties", i])
        return "customProperties"
    if match := _PROPERTY_PROBLEM.match(problem):
        for where, prop in _properties(data):
            if prop.get("name") == match["name"]:
                return dotted(where)
    if problem.startswith(("missing id", "missing version")):
        return problem.split()[1]
    if problem.startswith(("properties ", "fields marked", "primary key")):
        return dotted(["schema", 0, "properties"])
    if "schema object" in problem:
        return "schema"
    return ""
