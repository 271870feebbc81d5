"""Loading is strict: a broken contract fails at load time with the file and the problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.contracts.load import default_contracts_dir, load_contract
from exchange.contracts.model import ContractError
from exchange.contracts.suite import build_suite

SOURCE = (default_contracts_dir() / "e_license.odcs.yaml").read_text("utf-8")


def _load_edited(tmp_path: Path, old: str, new: str) -> None:
    assert old in SOURCE, old
    (tmp_path / "e_license.odcs.yaml").write_text(SOURCE.replace(old, new, 1), "utf-8")
    load_contract("e_license", tmp_path)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("kind: DataContract", "kind: DataProduct", "DataContract"),
        ("- name: holder_name\n", "- name: holder_full_name\n", "canonical columns"),
        ("physicalType: date\n", "physicalType: timestamp\n", "physicalType"),
        ("physicalType: date\n", "physicalType: date32[day]\n", "canonical is 'date'"),  # Arrow's spelling
        ("logicalType: date\n", "logicalType: string\n", "logicalType"),
        ("logicalTypeOptions: {timezone: true}", "logicalTypeOptions: {timezone: false}", "timezone"),
        ("value: resident_id}", "value: stars}", "masking"),
        ("value: important}", "value: secret}", "grade"),
        ("value: conditional\n", "value: sometimes\n", "sharingType"),
        ("value: 0.2\n", "value: 1.5\n", "batchHoldThreshold"),
        ('value: "2023"\n', 'value: "2020"\n', "gbt2260Version"),
        ("name: license_id.not_null", "name: holder_id.resident_id_checksum", "used twice"),
        ("severity: error", "severity: fatal", "severity"),
        ("engine: greatExpectations", "engine: soda", "engine"),
        (
            "kwargs: {column_A: valid_until, column_B: issued_on",
            "kwargs: {column_A: valid_untl, column_B: issued_on",
            "unknown column",
        ),
        ("regex: '^[0-9]{6}$'}", "regex: '^[0-9]{6}$', mostly: 0.9}", "mostly"),
        (
            "type: expect_column_values_to_match_regex",
            "type: expect_column_values_to_match_regexp",
            "unknown expectation",
        ),
        ("province: {$PARAMETER: province}", "province: {$PARAMETER: city}", "run parameter"),
        (
            "implementation: {type: expect_column_values_to_not_be_null, kwargs: {column: holder_name}}",
            "implementation: {type: expect_column_values_to_not_be_null, kwargs: {column: holder_id}}",
            "sits under",
        ),
        ("        primaryKey: true\n", "", "primary key"),
        ("    description: 持证人姓名 / licence holder's name", "    description: 持证人姓名; name", None),
    ],
)
def test_broken_contracts_are_refused(tmp_path: Path, old: str, new: str, problem: str | None) -> None:
    if problem is None:  # descriptions of fields may contain anything; only rule reasons are restricted
        _load_edited(tmp_path, old, new)
        return
    with pytest.raises(ContractError, match=problem.replace("[", r"\[")) as caught:
        _load_edited(tmp_path, old, new)
    assert "e_license.odcs.yaml" in str(caught.value)


def test_required_field_needs_its_not_null_rule(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="marked required"):
        _load_edited(tmp_path, "        required: false\n", "        required: true\n")


def test_rule_reason_must_not_contain_the_separator(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="separates reasons"):
        _load_edited(tmp_path, "licence type is missing, fill", "licence type is missing; fill")


def test_missing_contract_and_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="no contract"):
        load_contract("e_license", tmp_path)
    with pytest.raises(KeyError, match="known"):
        load_contract("tax_records")


def test_suite_has_one_expectation_per_rule_tagged_with_its_id() -> None:
    contract = load_contract("e_license")
    suite = build_suite(contract)
    assert [e.meta["rule_id"] for e in suite.expectations if e.meta] == [r.id for r in contract.rules]
    assert [e.expectation_type for e in suite.expectations] == [r.expectation for r in contract.rules]
    warning = next(
        e for e in suite.expectations if e.meta and e.meta["rule_id"] == "valid_until.expiry_stated"
    )
    assert warning.severity.value == "warning"
