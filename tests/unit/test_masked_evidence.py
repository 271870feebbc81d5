"""The masked evidence a rejection report shows (exchange/report/masked.py), value by value: where each masking rule
starts hiding a value whole, what an unknown rule does, which rows broke which rule, the rebuilt reasons, values
as sent, and ids the contract does not know. A province office mails these reports: a value shown in clear is a
leak. Written against the mutants `make mutation` found unchecked."""

from __future__ import annotations

import dataclasses
import json

import duckdb
import pyarrow as pa
import pytest

from exchange.access.policy import CLEAR, MASKS
from exchange.contracts.load import load_contract
from exchange.report.masked import WITHHELD, explain, flat, mask_expression, masked_columns

CHECKSUM = ("持证人身份证号校验码错误或出生日期无效，请按原始证照核对 / holder resident ID has a wrong check "
            "character or an impossible birth date, correct it from the original licence record")


def _masked(values: list[str | None], masking: str) -> list[str | None]:
    with duckdb.connect() as con:
        con.register("t", pa.table({"v": pa.array(values, pa.string())}))
        return [row[0] for row in con.execute(f"SELECT {mask_expression('v', masking)} FROM t").fetchall()]


@pytest.mark.parametrize(("masking", "values", "shown"), [
    # resident_id keeps 6 + 4: up to 10 characters nothing would be hidden, so all are starred
    ("resident_id", ["1234567890", "12345678901", "320102199001011234"],
     ["**********", "123456*8901", "320102********1234"]),
    ("name", ["张", "张三", "欧阳娜娜"], ["*", "张*", "欧***"]),  # keeps 1
    ("mobile", ["1381234", "13812345", "13812345678"], ["*******", "138****2345", "138****5678"]),  # keeps 7
    ("none", ["320102199001011234", ""], ["320102199001011234", ""]),
    ("withhold", ["12.5", ""], [WITHHELD, WITHHELD]),
    ("a_rule_nobody_defined", ["320102199001011234"], [WITHHELD]),  # unknown: hide, never leak
])
def test_each_masking_rule_hides_a_value_too_short_to_keep_anything_whole(
    masking: str, values: list[str | None], shown: list[str]
) -> None:
    assert _masked([*values, None], masking) == [*shown, None]


@pytest.mark.parametrize("masking", sorted(MASKS))
def test_every_masking_rule_of_the_policy_hides_what_it_does_not_keep(masking: str) -> None:
    shown = _masked(["320102199001011234", "1"], masking)
    if masking == CLEAR:
        assert shown == ["320102199001011234", "1"]
    else:
        assert shown[0] != "320102199001011234" and "*" in shown[0] and shown[1] == "*"


def test_an_expression_is_aliased_to_its_column_and_refuses_what_is_not_a_column_name() -> None:
    assert mask_expression("holder_id", "none") == '"holder_id" AS "holder_id"'
    for bad in ('x" FROM secrets --', "a b", ""):
        with pytest.raises(ValueError) as caught:
            mask_expression(bad, "none")
        assert str(caught.value) == f"not a column name: {bad!r}"
        with pytest.raises(ValueError):
            masked_columns(pa.table({"record_json": ["{}"]}), load_contract("e_license"), [bad])


def test_masked_columns_keep_row_order_and_names_once_each() -> None:
    contract = load_contract("e_license")
    ids = [f"32010219900101{i:04d}" for i in range(3000)]
    rows = [json.dumps({"license_id": f"L{i}", "holder_id": h}) for i, h in enumerate(ids)]
    records = pa.table({"record_json": rows})
    masked = masked_columns(records, contract, ["license_id", "holder_id", "license_id"])
    assert masked.column_names == ["license_id", "holder_id"]
    assert masked.schema.field("holder_id").type == pa.string()
    assert masked.column("license_id").to_pylist() == [f"L{i}" for i in range(3000)]
    assert masked.column("holder_id").to_pylist() == [f"{h[:6]}********{h[-4:]}" for h in ids]
    assert masked_columns(records, contract, []).num_columns == 0


def _quarantine() -> pa.Table:
    records = [
        {"license_id": "L1", "holder_id": "320102199001011235", "holder_name": "张三丰"},
        {"license_id": "L2", "holder_id": "32010219", "region_code": "12"},
        {"license_id": None, "holder_id": None},
        {"license_id": "L4", "holder_id": "320102199001011234"},
        {"license_id": "L5", "issued_on": "2026-11-05", "valid_until": "2026-11-01", "holder_name": "王小明"},
    ]
    as_sent = [None, None, None, '{"issued_on":{"sent":"2026-13-40","problem":"not a date (YYYY-MM-DD)"}}', None]
    rule_ids = ["holder_id.resident_id_checksum", "holder_id.resident_id_checksum,region_code.six_digits",
                "license_id.not_null", "issued_on.readable,bogus.rule", "valid_until.after_issued_on"]
    return pa.table({"rule_id": rule_ids, "record_json": [json.dumps(r, ensure_ascii=False) for r in records],
                     "as_sent": as_sent})


def test_explain_says_which_rows_broke_which_rule_with_masked_values_and_reasons() -> None:
    explained = explain(_quarantine(), load_contract("e_license"))
    assert explained.keys.to_pylist() == ["L1", "L2", "(no license_id)", "L4", "L5"]
    assert explained.unknown.to_pylist() == [False, False, False, True, False]  # bogus.rule: not the contract's
    rules = {r.rule.id: r for r in explained.rules}
    assert list(rules) == ["license_id.not_null", "holder_id.resident_id_checksum", "region_code.six_digits",
                           "valid_until.after_issued_on", "issued_on.readable"]  # contract order, then readable
    checksum = rules["holder_id.resident_id_checksum"]
    assert checksum.hit.to_pylist() == [True, True, False, False, False]
    assert checksum.values.to_pylist() == ["holder_id='320102********1235'", "holder_id='********'", None, None, None]
    assert checksum.reasons.to_pylist() == [f"holder_id='320102********1235': {CHECKSUM}",
                                            f"holder_id='********': {CHECKSUM}", None, None, None]
    assert rules["region_code.six_digits"].values.to_pylist() == [None, "region_code='12'", None, None, None]
    assert rules["license_id.not_null"].values.to_pylist() == [None, None, "license_id=null", None, None]
    pair = rules["valid_until.after_issued_on"]
    assert pair.values.to_pylist()[4] == "valid_until='2026-11-01', issued_on='2026-11-05'"
    assert pair.reasons.to_pylist()[4].startswith("valid_until='2026-11-01', issued_on='2026-11-05': ")
    readable = rules["issued_on.readable"]
    assert readable.hit.to_pylist() == [False, False, False, True, False]
    assert readable.values.to_pylist() == [None, None, None, "issued_on sent '2026-13-40'", None]
    assert readable.reasons.to_pylist() == [None, None, None, "issued_on sent '2026-13-40': not a date (YYYY-MM-DD)",
                                            None]
    for r in explained.rules:
        assert isinstance(r.values, pa.Array) and isinstance(r.reasons, pa.Array)
    assert "张三丰" not in json.dumps([r.values.to_pylist() + r.reasons.to_pylist() for r in explained.rules],
                                     ensure_ascii=False)


def test_a_value_sent_unreadable_is_shown_as_sent_masked_by_its_fields_rule() -> None:
    contract = load_contract("e_license")
    sent = '{"holder_id":{"sent":"3201021990010112345678","problem":"longer than 18 characters"}}'
    quarantined = pa.table({"rule_id": ["holder_id.readable", "license_id.not_null"],
                            "record_json": ['{"license_id":"L1","holder_id":null}', '{"license_id":null}'],
                            "as_sent": [sent, None]})
    explained = explain(quarantined, contract)
    readable = next(r for r in explained.rules if r.rule.id == "holder_id.readable")
    assert readable.values.to_pylist() == ["holder_id sent '320102************5678'", None]
    assert readable.reasons.to_pylist() == ["holder_id sent '320102************5678': longer than 18 characters", None]
    assert explained.unknown.to_pylist() == [False, False]


def test_rows_without_as_sent_or_rule_ids_are_explained_without_it() -> None:
    contract = load_contract("e_license")
    quarantined = pa.table({"rule_id": pa.array(["license_id.not_null", None], pa.string()),
                            "record_json": ['{"license_id":null}', '{"license_id":"L9"}'],
                            "as_sent": pa.array([None, None], pa.string())})
    explained = explain(quarantined, contract)
    assert [r.rule.id for r in explained.rules] == ["license_id.not_null"]
    assert explained.keys.to_pylist() == ["(no license_id)", "L9"]
    assert explained.unknown.to_pylist() == [False, False]
    no_column = explain(quarantined.drop_columns(["as_sent"]), contract)
    assert no_column.rules[0].reasons.to_pylist() == explained.rules[0].reasons.to_pylist()


@pytest.mark.parametrize("rule_id", ["license_id.not_null", "XXXX", "None", "null"])
def test_a_row_without_rule_ids_breaks_no_rule_whatever_the_rules_are_called(rule_id: str) -> None:
    loaded = load_contract("e_license")
    contract = dataclasses.replace(loaded, rules=tuple(
        dataclasses.replace(r, id=rule_id) if r.id == "license_id.not_null" else r for r in loaded.rules))
    quarantined = pa.table({"rule_id": pa.array([None, rule_id], pa.string()),
                            "record_json": ['{"license_id":"L9"}', '{"license_id":null}']})
    explained = explain(quarantined, contract)
    assert [(r.rule.id, r.hit.to_pylist()) for r in explained.rules] == [(rule_id, [False, True])]
    assert explained.unknown.to_pylist() == [False, False]


def test_flat_joins_chunks_and_leaves_an_array_as_it_is() -> None:
    chunked = pa.chunked_array([["a"], ["b", None]])
    assert flat(chunked).to_pylist() == ["a", "b", None] and isinstance(flat(chunked), pa.Array)
    array = pa.array(["x"])
    assert flat(array) is array


def test_a_value_sent_for_a_field_the_contract_no_longer_has_does_not_stop_the_report() -> None:
    # A replay under a newer contract version: as_sent names a field the contract dropped.
    contract = load_contract("e_license")
    quarantined = pa.table({"rule_id": ["license_id.not_null"], "record_json": ['{"license_id":null}'],
                            "as_sent": ['{"retired_field":{"sent":"x","problem":"not a number"}}']})
    explained = explain(quarantined, contract)
    assert [r.rule.id for r in explained.rules] == ["license_id.not_null"]
    assert explained.rules[0].values.to_pylist() == ["license_id=null"]
