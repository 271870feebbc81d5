"""The rule predicates: GX semantics, null handling, Arrow/pandas agreement, and the GX cross-check."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from exchange.contracts import rules
from exchange.contracts.load import load_contract
from exchange.contracts.model import ValidationMismatchError
from exchange.contracts.validate import _pandas_type, record_json, validate
from exchange.synthetic import DEFECT_COLUMN, generate


def _frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=_pandas_type)


def test_first_occurrence_matches_pandas_duplicated() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 300, 5000).astype(str).astype(object)
    keys[rng.random(5000) < 0.05] = None
    table = pa.table({"k": pa.array(keys, pa.string())})
    mask = rules.first_occurrence(table, column="k")
    series = pd.Series(keys)
    expected = series[series.notna()].duplicated(keep="first").reindex(series.index, fill_value=False)
    assert (mask == expected.to_numpy(dtype=bool)).all()
    assert mask[np.flatnonzero(pd.isna(keys))].sum() == 0


def test_first_occurrence_small_case() -> None:
    table = pa.table({"k": ["a", "b", "a", None, "a", "b", None]})
    assert rules.first_occurrence(table, column="k").tolist() == [
        False,
        False,
        True,
        False,
        True,
        True,
        False,
    ]


def test_predicates_agree_on_tables_and_frames() -> None:
    contract = load_contract("enterprise_registration")
    table = generate(
        "enterprise_registration",
        "zhejiang",
        3000,
        seed=2,
        start=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
    ).drop_columns([DEFECT_COLUMN])
    frame = _frame(table)
    for rule in contract.rules:
        kwargs = {k: ("zhejiang" if isinstance(v, dict) else v) for k, v in rule.kwargs.items()}
        on_table = rules.failing_mask(rule.expectation, table, **kwargs)
        on_frame = rules.failing_mask(rule.expectation, frame, **kwargs)
        assert on_table.dtype == np.bool_ and len(on_table) == table.num_rows
        assert (on_table == on_frame).all(), rule.id


def test_value_rules_ignore_nulls_and_nan() -> None:
    table = pa.table(
        {
            "id": pa.array([None, "bad", "11010519491231002X"]),
            "code": pa.array([None, "999999", "310101"]),
            "capital": pa.array([float("nan"), -1.0, None]),
            "a": pa.array([None, dt.date(2020, 1, 1), dt.date(2020, 1, 1)]),
            "b": pa.array([dt.date(2021, 1, 1), None, dt.date(2020, 1, 1)]),
        }
    )
    assert rules.valid_resident_id(table, column="id").tolist() == [False, True, False]
    assert rules.in_province_regions(
        table, column="code", province="shanghai", gbt2260_version="2023"
    ).tolist() == [
        False,
        True,
        False,
    ]
    assert rules.between(table, column="capital", min_value=0).tolist() == [False, True, False]
    assert rules.not_null(table, column="capital").tolist() == [
        True,
        False,
        True,
    ]  # NaN is missing, as in pandas
    assert rules.a_greater_than_b(table, column_A="a", column_B="b").tolist() == [False, False, True]
    assert rules.a_greater_than_b(table, column_A="a", column_B="b", or_equal=True).tolist() == [False] * 3


def test_region_rule_refuses_another_code_table_edition() -> None:
    table = pa.table({"code": ["310101"]})
    with pytest.raises(ValueError, match="GB/T 2260-2020"):
        rules.in_province_regions(table, column="code", province="shanghai", gbt2260_version="2020")


def test_check_kwargs_rejects_typos_and_mostly() -> None:
    rules.check_kwargs(rules.IN_SET, {"column": "status", "value_set": ["a"]})
    with pytest.raises(ValueError, match="value_sett"):
        rules.check_kwargs(rules.IN_SET, {"column": "status", "value_sett": ["a"]})
    with pytest.raises(ValueError, match="mostly"):
        rules.check_kwargs(rules.NOT_NULL, {"column": "status", "mostly": 0.9})
    with pytest.raises(ValueError, match="unknown expectation"):
        rules.check_kwargs("expect_column_values_to_be_unique", {"column": "status"})


def test_a_predicate_that_disagrees_with_gx_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the split and GX ever disagree, validation stops instead of writing wrong reasons."""
    contract = load_contract("e_license")
    table = generate(
        "e_license",
        "anhui",
        500,
        seed=4,
        defect_rate=0.0,
        start=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
    ).drop_columns([DEFECT_COLUMN])

    def wrong(data: rules.Data, *, column: str) -> rules.Mask:
        mask = rules.missing(rules.column_values(data, column))
        mask[0] = True
        return mask

    # GX's built-in not-null does not call this predicate, so only the split sees the "bug".
    monkeypatch.setitem(rules.PREDICATES, rules.NOT_NULL, wrong)
    with pytest.raises(
        ValidationMismatchError, match="license_id.not_null: GX counts 0 unexpected, the predicate 1"
    ):
        validate(table, contract, province="anhui", batch_id="b")


def test_record_json_escapes_and_types() -> None:
    table = pa.table(
        {
            "s": pa.array(['引号"与\\反斜杠', "tab\tnew\nline\x01", None]),
            "f": pa.array([1.25, float("inf"), None]),
            "d": pa.array([dt.date(2024, 2, 29), None, dt.date(1, 1, 1)]),
            "t": pa.array(
                [dt.datetime(2024, 1, 1, 8, 30, 0, 5, tzinfo=dt.UTC), None, None],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    decoded = [json.loads(line) for line in record_json(table).to_pylist()]
    assert [d["s"] for d in decoded] == table.column("s").to_pylist()
    assert [d["f"] for d in decoded] == [1.25, None, None]
    assert [d["d"] for d in decoded] == ["2024-02-29", None, "0001-01-01"]
    assert dt.datetime.fromisoformat(decoded[0]["t"]) == table.column("t")[0].as_py()
    assert list(decoded[0]) == ["s", "f", "d", "t"]
    assert "引号" in record_json(table)[0].as_py()  # Chinese stays readable, not \\u-escaped
