"""The peer's Great Expectations suite: what a user would write with GX's built-in expectations for the
same contract (not-null, unique, in-set, regex, range, column pair), run with result_format COMPLETE so
GX reports the failing rows. It lacks the hub's checksum and province rules (GX has no built-ins).

GX defaults are kept as a user would have them (e.g. its batch fingerprinting), except that usage
statistics and progress bars are off.
"""

from __future__ import annotations

import importlib
from typing import Any

import pandas as pd

from exchange.datasets import E_LICENSE_STATUSES, ENTERPRISE_STATUSES, ENTERPRISE_TYPES
from exchange.datasets import dataset as canonical_dataset
from exchange.synthetic import LICENSE_TYPES

RESIDENT_ID = r"^[0-9]{17}[0-9X]$"
USCC = r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"
REGION = r"^[0-9]{6}$"


def expectations(dataset: str) -> list[Any]:
    """The GX expectations equivalent to the dataset's contract, built-ins only."""
    # Typed loosely: GX's package does not re-export its expectation classes for type checkers.
    gxe: Any = importlib.import_module("great_expectations.expectations")
    ds = canonical_dataset(dataset)
    suite: list[Any] = [gxe.ExpectColumnValuesToNotBeNull(column=name) for name in ds.schema.names]
    suite.append(gxe.ExpectColumnValuesToBeUnique(column=ds.key))
    suite.append(gxe.ExpectColumnValuesToMatchRegex(column="region_code", regex=REGION))
    if dataset == "e_license":
        suite += [
            gxe.ExpectColumnValuesToMatchRegex(column="holder_id", regex=RESIDENT_ID),
            gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(E_LICENSE_STATUSES)),
            gxe.ExpectColumnValuesToBeInSet(column="license_type", value_set=list(LICENSE_TYPES)),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="valid_until", column_B="issued_on", or_equal=True),
        ]
    else:
        suite += [
            gxe.ExpectColumnValuesToMatchRegex(column="uscc", regex=USCC),
            gxe.ExpectColumnValuesToMatchRegex(column="legal_rep_id", regex=RESIDENT_ID),
            gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(ENTERPRISE_STATUSES)),
            gxe.ExpectColumnValuesToBeInSet(column="enterprise_type", value_set=list(ENTERPRISE_TYPES)),
            gxe.ExpectColumnValuesToBeBetween(column="registered_capital", min_value=0),
        ]
    return suite


def validate_complete(frame: pd.DataFrame, dataset: str, province: str) -> int:
    """Run the suite on `frame` with per-row (COMPLETE) results; the number of unexpected values found."""
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("peer").add_dataframe_asset(name=f"{province}.{dataset}")
    batch_definition = asset.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(ExpectationSuite(name=f"peer.{dataset}", expectations=expectations(dataset)))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format="COMPLETE")
    return sum(int((r.result or {}).get("unexpected_count") or 0) for r in result.results)
