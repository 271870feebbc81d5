"""Run parameters that name data in the lake, and the protocol through which a validation reads it.

A contract rule may take its ``value_set`` from the lake instead of the contract, written as a GX suite
parameter:

* ``{$PARAMETER: "lake:<dataset>.<column>"}`` - the values of lake column ``<dataset>.<column>`` that
  occur in this batch's rule column; with ``expect_column_values_to_be_in_set`` it says "must already be
  in the lake". Restricting the set to this batch's values keeps it no larger than the batch.
* ``{$PARAMETER: "lake_absent:<dataset>.<column>"}`` - the complement: this batch's values the lake
  column does not hold; with ``expect_column_values_to_not_be_in_set`` it says the same thing with a set
  that is empty when all is well. Prefer it: GX copies a value set through pydantic a few hundred times
  per suite run (measured: a 20,000-value set turns a 1 s validation of 20,000 records into 4.5 s).
* ``{$PARAMETER: "lake_stale:<dataset>.<key>"}`` - the keys of this batch whose record the lake already
  holds with the same or a later ``updated_at``: a re-delivery, or an out-of-order copy older than what
  was committed. Used with ``expect_column_values_to_not_be_in_set`` on the key. A strictly newer
  version of a key is a legitimate update and is not in the set.

Both are resolved once per batch, before GX runs, to plain lists; GX and the quarantine predicate then
see the same list, so their counts agree as for every other rule. This module is pure: the lake is
reached only through :class:`LakeReference` (the DuckLake implementation is ``exchange.lake.reference``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from exchange.contracts import rules
from exchange.contracts.model import Rule
from exchange.datasets import DATASETS

LAKE_VALUES = "lake"
LAKE_ABSENT = "lake_absent"
LAKE_STALE = "lake_stale"
LAKE_KINDS = (LAKE_VALUES, LAKE_ABSENT, LAKE_STALE)
VERSION_COLUMN = "updated_at"  # every canonical dataset carries the source's last update time
PARAMETER = "$PARAMETER"


@dataclass(frozen=True)
class LakeParameter:
    """A parsed lake run parameter: which kind, and which lake table and column it reads."""

    kind: str  # one of LAKE_KINDS
    dataset: str
    column: str

    @property
    def name(self) -> str:
        """The parameter as a contract writes it."""
        return f"{self.kind}:{self.dataset}.{self.column}"


def parse_lake_parameter(name: str) -> LakeParameter | None:
    """The lake parameter `name` denotes, None if it is not one; ValueError if it is one but malformed."""
    kind, colon, rest = name.partition(":")
    if not colon or kind not in LAKE_KINDS:
        return None
    dataset, dot, column = rest.partition(".")
    if not dot:
        raise ValueError(f"{name!r} must be written {kind}:<dataset>.<column>")
    if dataset not in DATASETS:
        raise ValueError(f"{name!r} names unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    canonical = DATASETS[dataset]
    if column not in canonical.schema.names:
        raise ValueError(f"{name!r}: dataset {dataset} has no column {column!r}")
    if kind == LAKE_STALE and column != canonical.key:
        raise ValueError(f"{name!r}: staleness is decided per record key, {dataset}'s key is {canonical.key}")
    return LakeParameter(kind=kind, dataset=dataset, column=column)


def gx_parameter_name(name: str) -> str:
    """The name GX is given for run parameter `name`.

    GX parses a parameter name as an arithmetic expression whose variables admit only letters, digits,
    ``_`` and ``$``; ``lake:a.b`` would be a parse failure. Mapping ``:`` and ``.`` to ``$`` is injective
    on the grammar above (dataset and column names never contain ``$``).
    """
    return re.sub(r"[^A-Za-z0-9_$]", "$", name)


def parameter_of(value: Any) -> str | None:
    """The parameter name if `value` is a GX suite-parameter reference ``{"$PARAMETER": name}``."""
    if isinstance(value, dict) and PARAMETER in value:
        return str(value[PARAMETER])
    return None


class LakeReference(Protocol):
    """What a validation may ask of the committed lake. A table not created yet holds nothing."""

    def present(self, dataset: str, column: str, values: pa.Array) -> pa.Array:
        """Those of the distinct, non-null `values` that lake table `dataset` holds in `column`."""
        ...

    def stale_keys(self, dataset: str, key: str, incoming: pa.Table) -> pa.Array:
        """Keys of `incoming` (columns `key` and updated_at, one row per key) the lake holds at an equal or
        later updated_at."""
        ...


class EmptyLake:
    """A lake with nothing committed: every value is absent and no key is stale."""

    def present(self, dataset: str, column: str, values: pa.Array) -> pa.Array:
        """Nothing is present."""
        return values.slice(0, 0)

    def stale_keys(self, dataset: str, key: str, incoming: pa.Table) -> pa.Array:
        """No key is stale."""
        return _flat(incoming.column(key)).slice(0, 0)


class TableLake:
    """A lake given as in-memory Arrow tables per dataset (tests, and checks against an exported snapshot)."""

    def __init__(self, tables: Mapping[str, pa.Table]) -> None:
        self._tables = dict(tables)

    def present(self, dataset: str, column: str, values: pa.Array) -> pa.Array:
        """The values that occur in ``tables[dataset][column]``."""
        table = self._tables.get(dataset)
        if table is None or len(values) == 0:
            return values.slice(0, 0)
        held = pc.unique(_flat(table.column(column)).cast(values.type))
        return pc.unique(values.filter(pc.is_in(values, value_set=held)))

    def stale_keys(self, dataset: str, key: str, incoming: pa.Table) -> pa.Array:
        """Keys whose latest version in ``tables[dataset]`` is not older than the incoming one."""
        table = self._tables.get(dataset)
        if table is None or incoming.num_rows == 0:
            return _flat(incoming.column(key)).slice(0, 0)
        latest = table.select([key, VERSION_COLUMN]).group_by(key).aggregate([(VERSION_COLUMN, "max")])
        joined = incoming.join(latest, keys=key, join_type="inner")
        stale = pc.greater_equal(joined.column(f"{VERSION_COLUMN}_max"), joined.column(VERSION_COLUMN))
        return _flat(joined.filter(stale).column(key))


def lake_parameters(contract_rules: Iterable[Rule]) -> dict[str, tuple[LakeParameter, tuple[str, ...]]]:
    """Each lake parameter the rules use, with the batch columns whose values it is asked about."""
    found: dict[str, tuple[LakeParameter, tuple[str, ...]]] = {}
    for rule in contract_rules:
        for value in rule.kwargs.values():
            name = parameter_of(value)
            parsed = parse_lake_parameter(name) if name is not None else None
            if name is None or parsed is None:
                continue
            _, columns = found.get(name, (parsed, ()))
            column = str(rule.kwargs["column"])
            found[name] = (parsed, columns if column in columns else (*columns, column))
    return found


def resolve_lake_parameters(
    contract_rules: Iterable[Rule], data: pa.Table, lake: LakeReference
) -> dict[str, list[Any]]:
    """The value list of every lake parameter the rules use, for this batch (one lake question each).

    A value set is asked about the union of the values of every column that uses it: for any one of
    those columns, "in the resolved set" is then exactly "in the lake" (or "not in the lake").
    """
    out: dict[str, list[Any]] = {}
    for name, (parameter, columns) in lake_parameters(contract_rules).items():
        if parameter.kind in (LAKE_VALUES, LAKE_ABSENT):
            asked = pa.chunked_array([_flat(data.column(c)) for c in columns]).combine_chunks()
            asked = pc.unique(asked.filter(pc.is_valid(asked)))
            found = lake.present(parameter.dataset, parameter.column, asked)
            if parameter.kind == LAKE_ABSENT:
                found = asked.filter(pc.invert(pc.is_in(asked, value_set=found)))
        else:
            found = lake.stale_keys(parameter.dataset, parameter.column, kept_versions(data, parameter.column))
        out[name] = found.to_pylist()
    return out


def kept_versions(data: pa.Table, key: str) -> pa.Table:
    """(key, updated_at) of the record each key keeps in this batch: its first occurrence.

    Later copies of a key fail the in-batch uniqueness rule anyway; judging staleness by the kept record
    means a legitimate update is never quarantined because a stale copy of it rode in the same batch.
    Records missing the key or the update time are left to the not-null rules.
    """
    repeat = rules.first_occurrence(data, column=key)
    usable = ~repeat & ~rules.missing(data.column(key)) & ~rules.missing(data.column(VERSION_COLUMN))
    return data.select([key, VERSION_COLUMN]).filter(pa.array(usable))


def _flat(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    return values

