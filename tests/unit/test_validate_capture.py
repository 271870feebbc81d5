"""The quarantine split reuses GX's evaluation of the custom expectations (exchange.contracts.expectations)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exchange.contracts import rules
from exchange.contracts.expectations import CUSTOM_EXPECTATIONS
from exchange.contracts.load import load_contract
from exchange.contracts.validate import validate
from exchange.synthetic import generate


def _batch(n: int) -> pa.Table:
    table = generate("e_license", "jiangsu", n, seed=11, start=datetime(2026, 1, 1, tzinfo=UTC),
                     end=datetime(2026, 2, 1, tzinfo=UTC)).drop_columns(["_defect"])
    # Nulls in the custom rules' columns: GX hands its conditions only the non-null rows.
    for name in ("holder_id", "license_id", "region_code"):
        i = table.schema.get_field_index(name)
        column = table.column(name)
        nulled = pc.if_else(pa.array(np.arange(n) % 7 == 3), pa.scalar(None, column.type), column)
        table = table.set_column(i, table.schema.field(i), nulled)
    return table


def test_each_custom_predicate_runs_once_and_the_split_matches_the_whole_table_predicate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contract = load_contract("e_license")
    table = _batch(3000)
    calls: list[str] = []
    original = rules.failing_mask

    def counted(expectation: str, data: Any, **kwargs: Any) -> rules.Mask:
        calls.append(expectation)
        return original(expectation, data, **kwargs)

    monkeypatch.setattr(rules, "failing_mask", counted)
    outcome = validate(table, contract, province="jiangsu", batch_id="b", today=date(2026, 2, 1))
    custom = [r for r in contract.rules if r.expectation in CUSTOM_EXPECTATIONS]
    assert custom, "the e-licence contract uses custom expectations"
    for rule in custom:
        assert calls.count(rule.expectation) == sum(r.expectation == rule.expectation for r in custom)
        # The count GX reported (and the split used) is the predicate's over the whole table.
        whole = original(rule.expectation, table, **{k: v for k, v in rule.kwargs.items()
                                                     if not isinstance(v, dict)},
                         **({"province": "jiangsu"} if "province" in rule.kwargs else {}))
        reported = next(r for r in outcome.rules if r.rule_id == rule.id)
        assert reported.unexpected_count == int(whole.sum())
    assert outcome.accepted_count + outcome.quarantined_count == table.num_rows
