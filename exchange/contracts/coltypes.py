"""Column types: the one place that ties a canonical Arrow type to what a contract declares for it.

A contract property declares ``logicalType`` (ODCS v3.1's vocabulary), ``physicalType`` and, where the type
implies them, ``logicalTypeOptions``. physicalType is a SQL type name as datacontract-cli maps it for duckdb
and Parquet servers (``varchar``, ``date``, ``double``, ``bigint``, ``timestamp``): the lake is DuckDB/DuckLake,
and that tool is what provinces check contracts and exports with. The Arrow types themselves stay in
exchange.datasets; this module only translates, so the hub's behaviour does not depend on how a contract
spells a type.

Contracts before ODCS v3.1 spelled physicalType as Arrow prints the type (``date32[day]``,
``timestamp[us, tz=UTC]``). :func:`arrow_type` still reads those, so ``exchange contracts diff`` can compare
an old contract version with a new one; :func:`declared` (what ``load_contract`` checks) knows only the
DuckDB names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class ColumnType:
    """What a contract declares for one Arrow type."""

    arrow: pa.DataType
    logical: str  # ODCS logicalType
    physical: str  # DuckDB SQL type name, lower case
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # logicalTypeOptions the type implies


_TYPES = (
    ColumnType(pa.string(), "string", "varchar"),
    ColumnType(pa.bool_(), "boolean", "boolean"),
    ColumnType(pa.int8(), "integer", "tinyint"),
    ColumnType(pa.int16(), "integer", "smallint"),
    ColumnType(pa.int32(), "integer", "integer"),
    ColumnType(pa.int64(), "integer", "bigint"),
    ColumnType(pa.float32(), "number", "float"),
    ColumnType(pa.float64(), "number", "double"),
    ColumnType(pa.date32(), "date", "date"),
    # The hub keeps instants in UTC (exchange.datasets.TIMESTAMP), which DuckDB reads as TIMESTAMP WITH TIME ZONE.
    # Contracts say `timestamp` + logicalTypeOptions timezone: datacontract-cli maps physicalType `timestamp` to
    # that DuckDB type (`timestamp_ntz` to the one without), and neither DuckDB's `timestamptz` nor its long
    # spelling is a name it maps.
    ColumnType(pa.timestamp("us", tz="UTC"), "timestamp", "timestamp", {"timezone": True}),
)
_BY_ARROW = {t.arrow: t for t in _TYPES}
_BY_PHYSICAL = {t.physical: t.arrow for t in _TYPES}
_LEGACY = {str(t.arrow): t.arrow for t in _TYPES}  # pre-v3.1 contracts: Arrow's own spelling
# Type changes every old value survives unchanged.
_WIDENINGS = {
    (pa.int8(), pa.int16()), (pa.int8(), pa.int32()), (pa.int8(), pa.int64()), (pa.int16(), pa.int32()),
    (pa.int16(), pa.int64()), (pa.int32(), pa.int64()), (pa.float16(), pa.float32()), (pa.float16(), pa.float64()),
    (pa.float32(), pa.float64()),
}
_LEGACY[str(pa.float16())] = pa.float16()  # "halffloat": only ever a narrower type that widens
LOGICAL_WIDENINGS = {("integer", "number")}


def declared(arrow: pa.DataType) -> ColumnType:
    """What a contract must declare for a column of type `arrow` (ValueError if the hub has no mapping)."""
    try:
        return _BY_ARROW[arrow]
    except KeyError:
        raise ValueError(f"no ODCS type mapping for the Arrow type {arrow}") from None


def arrow_type(physical: object) -> pa.DataType | None:
    """The Arrow type a declared physicalType stands for (DuckDB name, any case, or a pre-v3.1 Arrow
    spelling), None when it is not one the hub knows."""
    if not isinstance(physical, str):
        return None
    name = " ".join(physical.split())
    return _BY_PHYSICAL.get(name.lower()) or _LEGACY.get(name)


def widens(before: object, after: object) -> bool:
    """True when every value of physicalType `before` is a value of `after` (the same type counts)."""
    old, new = arrow_type(before), arrow_type(after)
    return old is not None and new is not None and (old == new or (old, new) in _WIDENINGS)


def same_type(before: object, after: object) -> bool:
    """True when two physicalType spellings name the same Arrow type (``date32[day]`` and ``date``)."""
    old = arrow_type(before)
    return old is not None and old == arrow_type(after)
