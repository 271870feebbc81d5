"""Custom Great Expectations expectations for checks GX lacks, each backed by its predicate in rules.py.

Importing this module registers four expectation types with GX:

* ``expect_column_values_to_be_first_occurrence`` - key uniqueness within a batch where the first
  occurrence is kept (GX's ``expect_column_values_to_be_unique`` flags every copy, which would
  quarantine the original record too);
* ``expect_column_values_to_be_valid_resident_id`` - GB 11643 check character and birth date;
* ``expect_column_values_to_be_valid_uscc`` - GB 32100 / GB 11714 check characters;
* ``expect_column_values_to_be_in_province_regions`` - a county-level GB/T 2260 code of the province.

Each metric is vectorized: the pandas condition converts the (null-filtered) column to Arrow and calls
``rules.failing_mask``, the very function the quarantine split uses. Inside :func:`capturing` each condition
also hands its result to the caller, so the quarantine split reuses GX's evaluation instead of repeating it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider.column_condition_partial import (
    column_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.column_map_metric_provider import (
    ColumnMapMetricProvider,
)

from exchange.contracts import rules

_METRIC_PREFIX = "column_values.yrd_"

CaptureKey = tuple[str, str, tuple[tuple[str, Any], ...]]
Captured = dict[CaptureKey, tuple[np.ndarray[Any, np.dtype[np.intp]], rules.Mask]]
_sink: ContextVar[Captured | None] = ContextVar("exchange_contract_conditions", default=None)


def capture_key(expectation: str, column: str, params: dict[str, Any]) -> CaptureKey:
    """What identifies one evaluation of a custom condition: its type, column and (resolved) parameters."""
    return expectation, column, tuple(sorted(params.items()))


@contextmanager
def capturing() -> Iterator[Captured]:
    """Collect, per :func:`capture_key`, the row positions each custom condition saw and its failing mask.

    GX hands a condition the non-null rows of a frame with a RangeIndex, so the index labels are the rows'
    positions in the frame; null rows never fail a value rule (rules.py), so they complete the mask.
    """
    found: Captured = {}
    token = _sink.set(found)
    try:
        yield found
    finally:
        _sink.reset(token)


def _pandas_condition(expectation: str, value_keys: tuple[str, ...]) -> Callable[..., Any]:
    """A GX pandas map condition (True = value meets the expectation) calling the rules.py predicate."""

    def condition(cls: type, column: pd.Series, **kwargs: Any) -> pd.Series:
        # GX has already dropped nulls from `column`; the predicate ignores nulls anyway.
        params = {key: kwargs[key] for key in value_keys}
        failing = rules.failing_mask(expectation, column.to_frame(), column=str(column.name), **params)
        sink = _sink.get()
        if sink is not None:
            sink[capture_key(expectation, str(column.name), params)] = (column.index.to_numpy(), failing)
        return pd.Series(~failing, index=column.index)

    condition.__name__ = "_pandas"
    decorated: Callable[..., Any] = column_condition_partial(engine=PandasExecutionEngine)(condition)
    return decorated


class ColumnValuesFirstOccurrence(ColumnMapMetricProvider):
    """Map metric: the value has not occurred in an earlier row."""

    condition_metric_name = _METRIC_PREFIX + "first_occurrence"
    _pandas = _pandas_condition(rules.FIRST_OCCURRENCE, ())


class ColumnValuesValidResidentId(ColumnMapMetricProvider):
    """Map metric: the value is a resident ID with a correct check character."""

    condition_metric_name = _METRIC_PREFIX + "valid_resident_id"
    _pandas = _pandas_condition(rules.VALID_RESIDENT_ID, ())


class ColumnValuesValidUscc(ColumnMapMetricProvider):
    """Map metric: the value is a USCC with correct check characters."""

    condition_metric_name = _METRIC_PREFIX + "valid_uscc"
    _pandas = _pandas_condition(rules.VALID_USCC, ())


class ColumnValuesInProvinceRegions(ColumnMapMetricProvider):
    """Map metric: the value is a county-level GB/T 2260 code of the given province."""

    condition_metric_name = _METRIC_PREFIX + "in_province_regions"
    condition_value_keys = ("province", "gbt2260_version")
    _pandas = _pandas_condition(rules.IN_PROVINCE_REGIONS, ("province", "gbt2260_version"))


class ExpectColumnValuesToBeFirstOccurrence(ColumnMapExpectation):
    """Expect each non-null value not to have occurred in an earlier row of the batch (later copies fail)."""

    map_metric = ColumnValuesFirstOccurrence.condition_metric_name
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)


class ExpectColumnValuesToBeValidResidentId(ColumnMapExpectation):
    """Expect each non-null value to be an 18-character resident ID with a right GB 11643 check character."""

    map_metric = ColumnValuesValidResidentId.condition_metric_name
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)


class ExpectColumnValuesToBeValidUscc(ColumnMapExpectation):
    """Expect each non-null value to be a unified social credit code with correct check characters."""

    map_metric = ColumnValuesValidUscc.condition_metric_name
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)


class ExpectColumnValuesToBeInProvinceRegions(ColumnMapExpectation):
    """Expect each non-null value to be a county-level GB/T 2260 code of the providing province.

    ``province`` is normally the suite parameter ``{"$PARAMETER": "province"}``, so one suite serves
    every province and the province is supplied per run.
    """

    province: str | dict[str, Any]  # a GX suite parameter {"$PARAMETER": ...} until the run resolves it
    gbt2260_version: str

    map_metric = ColumnValuesInProvinceRegions.condition_metric_name
    success_keys: ClassVar[tuple[str, ...]] = ("province", "gbt2260_version", "mostly")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "province", "gbt2260_version")


CUSTOM_EXPECTATIONS: dict[str, type[ColumnMapExpectation]] = {
    rules.FIRST_OCCURRENCE: ExpectColumnValuesToBeFirstOccurrence,
    rules.VALID_RESIDENT_ID: ExpectColumnValuesToBeValidResidentId,
    rules.VALID_USCC: ExpectColumnValuesToBeValidUscc,
    rules.IN_PROVINCE_REGIONS: ExpectColumnValuesToBeInProvinceRegions,
}
