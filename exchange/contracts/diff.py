"""`exchange contracts diff OLD NEW`: classify every change between two contract versions.

Breaking means a party that relied on the old version can be hurt: a department loses a column, a type or
clear values (removed column, changed type, stricter masking or sharing), or a province's records that
passed before may now be rejected (column made required, tightened enumeration or bounds, a new error rule
on existing data, a lower batch-hold threshold). Relaxations, additions of optional columns and wording
are not breaking. When in doubt (a changed regex, a changed rule type) a change counts as breaking: a
needless major bump costs a release note, a missed one costs a night of quarantined records.

Pure: works on the parsed YAML mappings of two ODCS documents, touches no file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from exchange.contracts import coltypes, rules
from exchange.contracts.model import SHARING_TYPES

# SHARING_TYPES is ordered from open to closed; moving right restricts who may receive the data.
_SHARING_ORDER = {name: i for i, name in enumerate(SHARING_TYPES)}
_LEVEL_ORDER = {"L1": 1, "L2": 2, "L3": 3, "L4": 4}
_GRADE_ORDER = {"general": 1, "important": 2, "core": 3}
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
# Top-level keys compared on their own below; any other top-level change is documentation.
_HANDLED = {"version", "id", "customProperties", "schema"}


@dataclass(frozen=True)
class Change:
    """One difference between the versions: where, what, and whether it breaks the agreement."""

    breaking: bool
    where: str
    what: str


@dataclass(frozen=True)
class ContractDiff:
    """All changes from one contract version to the next, and whether the version number fits them."""

    old_version: str
    new_version: str
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        """The breaking changes only."""
        return tuple(c for c in self.changes if c.breaking)

    @property
    def version_problem(self) -> str | None:
        """Why the new version number does not fit the changes (None when it does)."""
        old, new = semver_key(self.old_version), semver_key(self.new_version)
        if old is None or new is None:
            bad = self.old_version if old is None else self.new_version
            return f"{bad!r} is not a semantic version MAJOR.MINOR.PATCH"
        if not self.changes:
            return None
        if new <= old:
            return f"the contract changed but its version did not increase ({self.old_version} -> {self.new_version})"
        if self.breaking and new[0] <= old[0]:
            return (
                f"{len(self.breaking)} breaking change(s) need a major version bump "
                f"({self.old_version} -> {old[0] + 1}.0.0), not {self.new_version}"
            )
        return None

    @property
    def ok(self) -> bool:
        """True when the new version number is right for the changes."""
        return self.version_problem is None


def semver_key(version: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]] | None:
    """A sort key following SemVer 2.0 precedence (a pre-release sorts before its release), or None."""
    match = _SEMVER.match(version or "")
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        return int(major), int(minor), int(patch), 1, ()
    # Numeric identifiers sort before alphanumeric ones, numerically among themselves.
    ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return int(major), int(minor), int(patch), 0, ids


def diff_contracts(old: dict[str, Any], new: dict[str, Any]) -> ContractDiff:
    """Every change from `old` to `new` (both parsed ODCS v3 documents), classified."""
    return ContractDiff(
        old_version=str(old.get("version")),
        new_version=str(new.get("version")),
        changes=tuple(_changes(old, new)),
    )


def _changes(old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    if old.get("id") != new.get("id"):
        yield Change(True, "id", f"contract id changed {old.get('id')!r} -> {new.get('id')!r}")
    yield from _custom_changes(_custom(old.get("customProperties")), _custom(new.get("customProperties")))
    for key in sorted((set(old) | set(new)) - _HANDLED):
        if old.get(key) != new.get(key):
            yield Change(False, key, f"{key} changed")
    old_objects, new_objects = _by_name(old.get("schema")), _by_name(new.get("schema"))
    for name in old_objects.keys() - new_objects.keys():
        yield Change(True, name, f"schema object {name} removed")
    for name in new_objects.keys() - old_objects.keys():
        yield Change(False, name, f"schema object {name} added")
    for name in old_objects.keys() & new_objects.keys():
        yield from _object_changes(name, old_objects[name], new_objects[name])


def _custom(entries: Any) -> dict[str, Any]:
    return {str(e.get("property")): e.get("value") for e in entries or [] if isinstance(e, dict)}


def _by_name(items: Any) -> dict[str, dict[str, Any]]:
    return {str(item.get("name")): item for item in items or [] if isinstance(item, dict)}


def _custom_changes(old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        where = f"customProperties.{key}"
        if key == "sharingType":
            restricted = _SHARING_ORDER.get(str(after), len(SHARING_TYPES)) > _SHARING_ORDER.get(str(before), -1)
            more = "more" if restricted else "less"
            yield Change(restricted, where, f"sharing type {before} -> {after} ({more} restrictive)")
        elif key == "batchHoldThreshold":
            stricter = not (_is_number(before) and _is_number(after)) or float(after) < float(before)  # type: ignore[arg-type]
            yield Change(stricter, where, f"batch hold threshold {before} -> {after}"
                         + (" (more batches held)" if stricter else " (relaxed)"))
        elif key == "gbt2260Version":
            yield Change(True, where, f"region code table GB/T 2260-{before} -> {after} (codes may disappear)")
        else:
            yield Change(False, where, f"{key} changed")


def _object_changes(name: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    if old.get("physicalName") != new.get("physicalName"):
        yield Change(True, name, f"physicalName {old.get('physicalName')!r} -> {new.get('physicalName')!r}")
    for key in ("description", "businessName"):
        if old.get(key) != new.get(key):
            yield Change(False, name, f"{key} changed")
    old_props, new_props = _by_name(old.get("properties")), _by_name(new.get("properties"))
    for column in old_props:
        if column not in new_props:
            yield Change(True, f"{name}.{column}", "column removed")
    for column, prop in new_props.items():
        if column not in old_props:
            required = bool(prop.get("required"))
            kind = "required" if required else "optional"
            yield Change(required, f"{name}.{column}", f"{kind} column added ({prop.get('physicalType')})")
        else:
            yield from _property_changes(f"{name}.{column}", old_props[column], prop)
    old_rules, new_rules = _rules_of(old), _rules_of(new)
    for rule_id in old_rules.keys() - new_rules.keys():
        yield Change(False, f"rule {rule_id}", "rule removed (fewer checks)")
    for rule_id, (severity, expectation, kwargs) in new_rules.items():
        if rule_id in old_rules:
            yield from _rule_changes(f"rule {rule_id}", old_rules[rule_id], new_rules[rule_id])
            continue
        existing = all(c in old_props for c in _columns(kwargs))
        breaking = severity == "error" and existing
        on = "existing columns" if existing else "a new column"
        yield Change(breaking, f"rule {rule_id}", f"new {severity} rule {expectation} on {on}")


def _property_changes(where: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    before, after = old.get("physicalType"), new.get("physicalType")
    if before != after:
        if coltypes.same_type(before, after):  # a new spelling (ODCS v3.1 names), not a new type
            yield Change(False, where, f"physicalType {before} -> {after} (same type, renamed)")
        else:
            widened = coltypes.widens(before, after)
            yield Change(not widened, where, f"physicalType {before} -> {after} "
                                             f"({'widened' if widened else 'changed'})")
    before, after = old.get("logicalType"), new.get("logicalType")
    if before != after:
        widened = (str(before), str(after)) in coltypes.LOGICAL_WIDENINGS
        yield Change(not widened, where, f"logicalType {before} -> {after} ({'widened' if widened else 'changed'})")
    for flag, tighter in (("required", "made required"), ("unique", "made unique")):
        before, after = bool(old.get(flag)), bool(new.get(flag))
        if before != after:
            yield Change(after, where, tighter if after else f"no longer {flag}")
    if bool(old.get("primaryKey")) != bool(new.get("primaryKey")):
        yield Change(True, where, "primary key changed")
    before, after = ((p.get("logicalTypeOptions") or {}).get("maxLength") for p in (old, new))
    if before != after:
        # A length is a rule (<field>.max_length): a new or shorter one may reject what passed before.
        shorter = after is not None and (before is None or after < before)
        yield Change(shorter, where, f"maxLength {before} -> {after}")
    yield from _ordered(where, "classification", old.get("classification"), new.get("classification"), _LEVEL_ORDER)
    old_custom, new_custom = _custom(old.get("customProperties")), _custom(new.get("customProperties"))
    yield from _ordered(where, "grade", old_custom.get("grade"), new_custom.get("grade"), _GRADE_ORDER)
    before, after = old_custom.get("masking", "none"), new_custom.get("masking", "none")
    if before != after:
        # Departments see less after any move away from clear values; only unmasking gives them more.
        yield Change(after != "none", where, f"masking {before} -> {after}")
    for key in ("description", "businessName"):
        if old.get(key) != new.get(key):
            yield Change(False, where, f"{key} changed")


def _ordered(where: str, key: str, before: Any, after: Any, order: dict[str, int]) -> Iterator[Change]:
    if before == after:
        return
    raised = order.get(str(after), len(order) + 1) > order.get(str(before), 0)
    yield Change(raised, where, f"{key} {before} -> {after} ({'raised' if raised else 'lowered'})")


Spec = tuple[str, str, dict[str, Any]]  # severity, expectation type, kwargs


def _rules_of(obj: dict[str, Any]) -> dict[str, Spec]:
    """Rule id -> (severity, expectation, kwargs with the implied column filled in)."""
    out: dict[str, Spec] = {}
    entries = [(q, p.get("name")) for p in obj.get("properties") or [] for q in p.get("quality") or []]
    entries += [(q, None) for q in obj.get("quality") or []]
    for quality, column in entries:
        impl = quality.get("implementation") if isinstance(quality.get("implementation"), dict) else {}
        kwargs = dict(impl.get("kwargs") or {})
        if column is not None:
            kwargs.setdefault("column", column)
        out[str(quality.get("name"))] = (str(quality.get("severity")), str(impl.get("type")), kwargs)
    return out


def _columns(kwargs: dict[str, Any]) -> list[str]:
    return [str(kwargs[k]) for k in ("column", "column_A", "column_B") if k in kwargs]


def _rule_changes(where: str, old: Spec, new: Spec) -> Iterator[Change]:
    (old_severity, old_type, old_kwargs), (new_severity, new_type, new_kwargs) = old, new
    if old_severity != new_severity:
        stricter = new_severity == "error"
        yield Change(stricter, where, f"severity {old_severity} -> {new_severity}")
    if old_type != new_type:
        yield Change(True, where, f"rule type {old_type} -> {new_type}")
        return
    compared: set[str] = set()
    if new_type == rules.IN_SET:
        compared.add("value_set")
        before, after = _values(old_kwargs.get("value_set")), _values(new_kwargs.get("value_set"))
        removed, added = [v for v in before if v not in after], [v for v in after if v not in before]
        if removed:
            yield Change(True, where, f"enumeration tightened: removed {removed}")
        if added:
            yield Change(False, where, f"enumeration widened: added {added}")
    elif new_type == rules.BETWEEN:
        compared |= {"min_value", "max_value", "strict_min", "strict_max"}
        yield from _bound(where, "min", old_kwargs, new_kwargs, tighter_if_greater=True)
        yield from _bound(where, "max", old_kwargs, new_kwargs, tighter_if_greater=False)
    elif new_type == rules.PAIR_A_GREATER_THAN_B:
        compared.add("or_equal")
        was_or_equal, is_or_equal = bool(old_kwargs.get("or_equal")), bool(new_kwargs.get("or_equal"))
        if was_or_equal != is_or_equal:
            text = "equal values no longer pass" if was_or_equal else "equal values now pass"
            yield Change(was_or_equal, where, text)
    for key in sorted((set(old_kwargs) | set(new_kwargs)) - compared):
        if old_kwargs.get(key) != new_kwargs.get(key):
            # A changed pattern, column or code table cannot be shown to accept everything it did before.
            yield Change(True, where, f"{key} {old_kwargs.get(key)!r} -> {new_kwargs.get(key)!r}")


def _values(value_set: Any) -> list[Any]:
    return list(value_set) if isinstance(value_set, list | tuple) else []


def _bound(
    where: str, side: str, old: dict[str, Any], new: dict[str, Any], *, tighter_if_greater: bool
) -> Iterator[Change]:
    before, after = old.get(f"{side}_value"), new.get(f"{side}_value")
    strict_before, strict_after = bool(old.get(f"strict_{side}")), bool(new.get(f"strict_{side}"))
    if before == after and strict_before == strict_after:
        return
    text = f"{side} {before!r}{' (strict)' if strict_before else ''} -> {after!r}{' (strict)' if strict_after else ''}"
    if after is None:
        yield Change(False, where, f"bound relaxed: {text}")
        return
    if before is None:
        yield Change(True, where, f"bound tightened: {text}")
        return
    try:
        moved_in = after > before if tighter_if_greater else after < before
        moved_out = after < before if tighter_if_greater else after > before
    except TypeError:
        yield Change(True, where, f"bound changed type: {text}")
        return
    tighter = moved_in or (after == before and strict_after and not strict_before)
    loosened = moved_out or (after == before and strict_before and not strict_after)
    if tighter:
        yield Change(True, where, f"bound tightened: {text}")
    elif loosened:
        yield Change(False, where, f"bound relaxed: {text}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
