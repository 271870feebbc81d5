"""The single definition of every contract rule: a vectorized predicate that marks the failing records.

Each predicate is registered under the Great Expectations expectation type it mirrors, takes the data
(an Arrow table or a pandas frame) plus the expectation's kwargs, and returns a NumPy bool mask with one
entry per row, True where the row breaks the rule. The same function serves two callers:

* the custom GX expectations (``exchange.contracts.expectations``) call it from their pandas metric, so
  GX's verdict for checksums, regions and key uniqueness *is* this code;
* the quarantine split calls it on the whole batch to say which record failed which rule and why.

For GX's built-in expectations the predicate mirrors GX's pandas semantics, and ``validate`` checks after
every run that GX's unexpected count equals ``mask.sum()`` (raising if not), so a per-record reason can
never disagree with the GX result.

Null handling follows GX's map expectations: a missing value never fails a value rule (only the
not-null rule reports it), so a blank ID is reported once, as missing, not also as a bad checksum.
Float NaN counts as missing, as it does for pandas.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from exchange.reference import regions
from exchange.reference.checksums import resident_id_valid, uscc_valid

if TYPE_CHECKING:  # pandas is only needed by callers that pass frames; loading a contract stays light
    import pandas as pd

Mask = npt.NDArray[np.bool_]
Data: TypeAlias = "pa.Table | pd.DataFrame"
Values: TypeAlias = "pa.Array | pa.ChunkedArray"
Predicate: TypeAlias = Callable[..., Mask]

# GX expectation types of the hub's custom expectations (class names in expectations.py map onto these).
FIRST_OCCURRENCE = "expect_column_values_to_be_first_occurrence"
VALID_RESIDENT_ID = "expect_column_values_to_be_valid_resident_id"
VALID_USCC = "expect_column_values_to_be_valid_uscc"
IN_PROVINCE_REGIONS = "expect_column_values_to_be_in_province_regions"

# GX built-ins the hub uses.
NOT_NULL = "expect_column_values_to_not_be_null"
IN_SET = "expect_column_values_to_be_in_set"
NOT_IN_SET = "expect_column_values_to_not_be_in_set"
MATCH_REGEX = "expect_column_values_to_match_regex"
BETWEEN = "expect_column_values_to_be_between"
PAIR_A_GREATER_THAN_B = "expect_column_pair_values_a_to_be_greater_than_b"
VALUE_LENGTHS_BETWEEN = "expect_column_value_lengths_to_be_between"

PREDICATES: dict[str, Predicate] = {}


def _register(expectation: str) -> Callable[[Predicate], Predicate]:
    def add(fn: Predicate) -> Predicate:
        PREDICATES[expectation] = fn
        return fn

    return add


def failing_mask(expectation: str, data: Data, **kwargs: Any) -> Mask:
    """Rows of `data` that break the rule `expectation` with these kwargs (True = fails).

    Raises KeyError for an expectation type the hub has no predicate for.
    """
    try:
        predicate = PREDICATES[expectation]
    except KeyError:
        raise KeyError(
            f"no predicate for expectation {expectation!r}; known: {', '.join(PREDICATES)}"
        ) from None
    return predicate(data, **kwargs)


def check_kwargs(expectation: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError when `kwargs` do not fit the predicate for `expectation` (unknown or missing names).

    Called when a contract is loaded, so a typo in a contract fails then, not in the middle of a batch.
    Options such as ``mostly`` are rejected on purpose: the per-record split has no notion of them.
    """
    if expectation not in PREDICATES:
        raise ValueError(
            f"unknown expectation {expectation!r}; the hub supports: {', '.join(sorted(PREDICATES))}"
        )
    params = list(inspect.signature(PREDICATES[expectation]).parameters.values())[1:]  # after `data`
    known = {p.name for p in params}
    unknown = sorted(set(kwargs) - known)
    missing_names = sorted(
        p.name for p in params if p.default is inspect.Parameter.empty and p.name not in kwargs
    )
    if unknown or missing_names:
        raise ValueError(
            f"{expectation}: unknown argument(s) {unknown}, missing argument(s) {missing_names}; "
            f"it takes {sorted(known)}"
        )


def column_values(data: Data, name: str) -> Values:
    """One column of a table or frame as Arrow (pandas NaN/None become Arrow nulls)."""
    if isinstance(data, pa.Table):
        return data.column(name)
    # pa.array on a pandas Series applies pandas null semantics and is zero-copy for Arrow-backed dtypes.
    return pa.array(data[name])


def _flat(values: Values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    return values


def _np(mask: pa.Array | pa.ChunkedArray | pa.Scalar, n: int) -> Mask:
    """An Arrow boolean result (nulls already filled) as a NumPy mask of length n."""
    if isinstance(mask, pa.Scalar):
        return np.full(n, bool(mask.as_py()), dtype=np.bool_)
    out: Mask = np.asarray(_flat(mask).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return out


def missing(values: Values) -> Mask:
    """True where a value is null (or NaN in a float column, as pandas counts it)."""
    nan_is_null = pa.types.is_floating(values.type)
    return _np(pc.is_null(values, nan_is_null=nan_is_null), len(values))


def _fails_where_present(values: Values, ok: pa.Array | pa.ChunkedArray | Mask) -> Mask:
    """Rows that are present and not ok: the null-ignoring shape every value rule shares."""
    ok_np = ok if isinstance(ok, np.ndarray) else _np(pc.fill_null(ok, True), len(values))
    return ~missing(values) & ~ok_np


@_register(NOT_NULL)
def not_null(data: Data, *, column: str) -> Mask:
    """Required field is missing."""
    return missing(column_values(data, column))


@_register(FIRST_OCCURRENCE)
def first_occurrence(data: Data, *, column: str) -> Mask:
    """The value already occurred in an earlier row: the first occurrence is kept, later ones fail.

    Same as pandas ``duplicated(keep="first")`` on the non-null values, computed in O(n): dictionary
    codes are assigned in order of first appearance, so a row is a first occurrence exactly when its
    code exceeds every earlier code.
    """
    values = _flat(column_values(data, column))
    absent = missing(values)
    encoded = pc.dictionary_encode(values)
    codes = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.bool_)
    previous_max = np.concatenate(([-1], np.maximum.accumulate(codes)[:-1]))
    first = codes > previous_max
    return ~absent & ~first


@_register(IN_SET)
def in_set(data: Data, *, column: str, value_set: Sequence[Any]) -> Mask:
    """Value is not one of the canonical codes."""
    values = column_values(data, column)
    allowed = pa.array(list(value_set)).cast(values.type)
    return _fails_where_present(values, pc.is_in(values, value_set=allowed))


@_register(NOT_IN_SET)
def not_in_set(data: Data, *, column: str, value_set: Sequence[Any]) -> Mask:
    """Value is one of the excluded values (for example a key the lake already holds, see reference.py)."""
    values = column_values(data, column)
    excluded = pa.array(list(value_set)).cast(values.type)
    return ~missing(values) & _np(pc.fill_null(pc.is_in(values, value_set=excluded), False), len(values))


@_register(MATCH_REGEX)
def match_regex(data: Data, *, column: str, regex: str) -> Mask:
    """Value does not match the pattern (search semantics, as GX's pandas ``str.contains``)."""
    values = column_values(data, column)
    return _fails_where_present(values, pc.match_substring_regex(values.cast(pa.string()), regex))


@_register(BETWEEN)
def between(
    data: Data,
    *,
    column: str,
    min_value: Any = None,
    max_value: Any = None,
    strict_min: bool = False,
    strict_max: bool = False,
) -> Mask:
    """Value lies outside [min_value, max_value] (either bound may be open or absent)."""
    if min_value is None and max_value is None:
        raise ValueError("between needs min_value or max_value")
    values = column_values(data, column)
    ok = np.ones(len(values), dtype=np.bool_)
    if min_value is not None:
        low = pc.greater(values, min_value) if strict_min else pc.greater_equal(values, min_value)
        ok &= _np(pc.fill_null(low, False), len(values))
    if max_value is not None:
        high = pc.less(values, max_value) if strict_max else pc.less_equal(values, max_value)
        ok &= _np(pc.fill_null(high, False), len(values))
    return _fails_where_present(values, ok)


@_register(VALUE_LENGTHS_BETWEEN)
def value_lengths_between(data: Data, *, column: str, min_value: int | None = None,
                          max_value: int | None = None) -> Mask:
    """Value has fewer than min_value or more than max_value characters (the contract's maxLength)."""
    if min_value is None and max_value is None:
        raise ValueError("value lengths need min_value or max_value")
    values = column_values(data, column)
    lengths = pc.utf8_length(values.cast(pa.string()))
    ok = np.ones(len(values), dtype=np.bool_)
    if min_value is not None:
        ok &= _np(pc.fill_null(pc.greater_equal(lengths, min_value), True), len(values))
    if max_value is not None:
        ok &= _np(pc.fill_null(pc.less_equal(lengths, max_value), True), len(values))
    return _fails_where_present(values, ok)


@_register(PAIR_A_GREATER_THAN_B)
def a_greater_than_b(
    data: Data,
    *,
    column_A: str,  # noqa: N803 - GX's kwarg names
    column_B: str,  # noqa: N803
    or_equal: bool = False,
    ignore_row_if: str = "either_value_is_missing",
) -> Mask:
    """Column A is not after (with or_equal: not at or after) column B; rows missing either are skipped."""
    if ignore_row_if != "either_value_is_missing":
        # Only this mode has an unambiguous per-record meaning; the others compare against null.
        raise ValueError(f"ignore_row_if must be 'either_value_is_missing', not {ignore_row_if!r}")
    a = column_values(data, column_A)
    b = column_values(data, column_B)
    both = ~missing(a) & ~missing(b)
    ordered = pc.greater_equal(a, b) if or_equal else pc.greater(a, b)
    return both & ~_np(pc.fill_null(ordered, True), len(a))


@_register(VALID_RESIDENT_ID)
def valid_resident_id(data: Data, *, column: str) -> Mask:
    """Not an 18-character resident ID with a real birth date and a correct GB 11643 check character."""
    values = column_values(data, column)
    return _fails_where_present(values, resident_id_valid(values))


@_register(VALID_USCC)
def valid_uscc(data: Data, *, column: str) -> Mask:
    """Not a unified social credit code with correct GB 32100 and GB 11714 check characters."""
    values = column_values(data, column)
    return _fails_where_present(values, uscc_valid(values))


@_register(IN_PROVINCE_REGIONS)
def in_province_regions(data: Data, *, column: str, province: str, gbt2260_version: str) -> Mask:
    """Not a county-level GB/T 2260 code of the providing province."""
    if gbt2260_version != regions.GBT2260_VERSION:
        # The contract asks for a code table the hub does not hold: checking against another would lie.
        raise ValueError(
            f"contract wants GB/T 2260-{gbt2260_version}; the hub has GB/T 2260-{regions.GBT2260_VERSION}"
        )
    if province not in regions.REGIONS:
        raise ValueError(f"unknown province {province!r}; known: {', '.join(regions.REGIONS)}")
    values = column_values(data, column)
    codes = pa.array(regions.codes(province), pa.string())
    return _fails_where_present(values, pc.is_in(values.cast(pa.string()), value_set=codes))
