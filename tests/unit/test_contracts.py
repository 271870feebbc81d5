"""The two ODCS contracts, and validating generator output with real Great Expectations.

The generator names the defect it injected in each record (``_defect``), so the quarantine split can be
checked record by record: exactly the defective records are rejected, each with the right rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml
from open_data_contract_standard.model import OpenDataContractStandard

from exchange.contracts.load import default_contracts_dir, load_contract
from exchange.contracts.model import Contract
from exchange.contracts.reference import TableLake
from exchange.contracts.validate import QUARANTINE_SCHEMA, ValidationOutcome, validate
from exchange.datasets import (
    DATASETS,
    E_LICENSE_STATUSES,
    ENTERPRISE_STATUSES,
    ENTERPRISE_TYPES,
    PENALTY_STATUSES,
    PENALTY_TYPES,
    TRANSFER_STATUSES,
)
from exchange.reference.regions import GBT2260_VERSION
from exchange.synthetic import DEFECT_COLUMN, DEFECT_RATE, generate

START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 3, 2, tzinfo=UTC)
N = 20_000

EXPECTED_RULE = {
    "e_license": {
        "bad_id_checksum": "holder_id.resident_id_checksum",
        "missing_required": "holder_name.not_null",
        "duplicate_key": "license_id.unique_in_batch",
        "foreign_region": "region_code.in_province",
        "valid_until_before_issued": "valid_until.after_issued_on",
    },
    "enterprise_registration": {
        "bad_uscc_checksum": "uscc.uscc_checksum",
        "missing_required": "enterprise_name.not_null",
        "duplicate_key": "uscc.unique_in_batch",
        "foreign_region": "region_code.in_province",
        "bad_id_checksum": "legal_rep_id.resident_id_checksum",
    },
    "administrative_penalty": {
        "bad_uscc_checksum": "party_uscc.uscc_checksum",
        "missing_required": "party_name.not_null",
        "duplicate_key": "decision_no.unique_in_batch",
        "foreign_region": "region_code.in_province",
        "unregistered_party": "party_uscc.registered_in_lake",
        "publicity_before_decision": "publicity_until.after_decided_on",
        "negative_fine": "fine_amount.within_bounds",
    },
    "provident_fund_transfer": {
        "bad_id_checksum": "person_id.resident_id_checksum",
        "missing_required": "person_name.not_null",
        "duplicate_key": "transfer_id.unique_in_batch",
        "foreign_region": "region_code.in_province",
        "completed_before_applied": "completed_on.not_before_applied_on",
        "negative_amount": "transfer_amount.within_bounds",
        "future_application": "applied_on.not_in_future",
    },
}
# Defects that honestly break a second rule too: a corrupted credit code is no registered one, and a
# transfer applied for in the future was (if completed) completed before it was applied for.
ALSO_BROKEN = {
    ("administrative_penalty", "bad_uscc_checksum"): {"party_uscc.registered_in_lake"},
    ("provident_fund_transfer", "future_application"): {"completed_on.not_before_applied_on"},
}


def _generated(dataset: str, province: str = "jiangsu", n: int = N, **kwargs: float) -> pa.Table:
    return generate(dataset, province, n, seed=7, start=START, end=END, **kwargs)


def _lake(dataset: str, n: int = N, defect_rate: float = DEFECT_RATE) -> TableLake:
    """The lake a generated batch meets: for penalties, the clean registrations the generator drew parties from."""
    if dataset != "administrative_penalty":
        return TableLake({})
    registrations = _generated("enterprise_registration", n=n, defect_rate=defect_rate)
    clean = registrations.filter(pc.is_null(registrations.column(DEFECT_COLUMN))).drop_columns([DEFECT_COLUMN])
    return TableLake({"enterprise_registration": clean})


def _validate(
    table: pa.Table, contract: Contract, *, batch_id: str, province: str = "jiangsu", lake: TableLake | None = None
) -> ValidationOutcome:
    # The generator's window ends on END: "not in the future" is judged on that day.
    lake = lake if lake is not None else _lake(contract.dataset, n=table.num_rows)
    return validate(table, contract, province=province, batch_id=batch_id, today=END.date(), lake=lake)


@pytest.fixture(scope="module", params=sorted(DATASETS))
def dataset(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def contract(dataset: str) -> Contract:
    return load_contract(dataset)


@pytest.fixture(scope="module")
def generated(dataset: str) -> pa.Table:
    return _generated(dataset)


@pytest.fixture(scope="module")
def outcome(generated: pa.Table, contract: Contract) -> ValidationOutcome:
    return _validate(generated.drop_columns([DEFECT_COLUMN]), contract, batch_id="b-test")


# --- the contract documents ---------------------------------------------------------------------------


def test_contract_parses_with_the_odcs_package(dataset: str) -> None:
    path = default_contracts_dir() / f"{dataset}.odcs.yaml"
    odcs = OpenDataContractStandard.from_file(str(path))
    assert odcs.kind == "DataContract"
    assert odcs.apiVersion == "v3.1.0"  # the version whose vocabulary it uses (logicalType timestamp)
    assert odcs.id == f"urn:yrd:contract:{dataset}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", odcs.version or "") and odcs.status == "active"
    assert [s.name for s in odcs.schema_ or []] == [dataset]


def test_contract_is_valid_against_the_odcs_json_schema(dataset: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    path = default_contracts_dir() / f"{dataset}.odcs.yaml"
    schema = json.loads(OpenDataContractStandard.json_schema())  # type: ignore[no-untyped-call]
    errors = list(
        jsonschema.Draft201909Validator(schema).iter_errors(yaml.safe_load(path.read_text("utf-8")))
    )
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def test_contract_describes_exactly_the_canonical_columns(contract: Contract) -> None:
    canonical = DATASETS[contract.dataset]
    assert contract.field_names == tuple(canonical.schema.names)
    assert contract.key == canonical.key
    key = contract.field(canonical.key)
    assert key.required and key.unique
    assert all(f.description and "/" in f.description for f in contract.fields), "descriptions are zh / en"
    assert all(f.classification in {"L1", "L2", "L3", "L4"} for f in contract.fields)
    assert all(f.grade in {"general", "important", "core"} for f in contract.fields)


def test_contract_masks_personal_fields(contract: Contract) -> None:
    expected = {
        "e_license": {"holder_id": "resident_id", "holder_name": "name"},
        "enterprise_registration": {"legal_rep_id": "resident_id", "legal_representative": "name"},
        "administrative_penalty": {},  # published by law: penalties on market entities carry no personal data
        "provident_fund_transfer": {"person_id": "resident_id", "person_name": "name", "transfer_amount": "withhold"},
    }[contract.dataset]
    assert {f.name: f.masking for f in contract.fields if f.masking != "none"} == expected


def test_contract_level_properties(contract: Contract) -> None:
    custom = {p.property: p.value for p in contract.raw.customProperties or []}
    assert custom["sharingType"] == contract.sharing_type
    assert (
        contract.sharing_type
        == {
            "e_license": "conditional",
            "enterprise_registration": "unconditional",
            "administrative_penalty": "unconditional",
            "provident_fund_transfer": "conditional",
        }[contract.dataset]
    )
    assert custom["updateFrequency"] == "daily"
    assert custom["gbt2260Version"] == GBT2260_VERSION
    assert custom["resourceCode"] and custom["provider"] and custom["sharingConditions"]
    assert 0 < contract.batch_hold_threshold < 1
    assert contract.document_sha256 == hashlib.sha256(contract.path.read_bytes()).hexdigest()


def test_contract_has_ten_or_more_rules_with_stable_ids(contract: Contract) -> None:
    assert len(contract.rules) >= 10
    ids = [r.id for r in contract.rules]
    assert len(ids) == len(set(ids))
    assert all(r.severity in {"error", "warning"} and r.description for r in contract.rules)
    assert all(r.id.split(".")[0] in contract.field_names for r in contract.rules)
    expectations = {r.expectation for r in contract.rules}
    assert {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_first_occurrence",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_in_province_regions",
        "expect_column_values_to_match_regex",
    } <= expectations
    assert expectations & {"expect_column_values_to_be_valid_resident_id", "expect_column_values_to_be_valid_uscc"}
    assert f"{contract.key}.newer_than_lake" in ids, "uniqueness against the lake"
    for field in contract.fields:
        assert (f"{field.name}.not_null" in ids) == field.required


def test_enumerations_match_the_canonical_codes(contract: Contract) -> None:
    sets = {r.id: r.kwargs["value_set"] for r in contract.rules if r.expectation.endswith("to_be_in_set")}
    if contract.dataset == "e_license":
        assert sets == {"status.in_enum": list(E_LICENSE_STATUSES)}
    elif contract.dataset == "administrative_penalty":
        assert sets == {"status.in_enum": list(PENALTY_STATUSES), "penalty_type.in_enum": list(PENALTY_TYPES)}
    elif contract.dataset == "provident_fund_transfer":
        assert sets == {"status.in_enum": list(TRANSFER_STATUSES)}
    else:
        assert sets == {
            "status.in_enum": list(ENTERPRISE_STATUSES),
            "enterprise_type.in_enum": list(ENTERPRISE_TYPES),
        }


def test_env_overrides_the_contracts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = default_contracts_dir() / "e_license.odcs.yaml"
    current = load_contract("e_license").version
    (tmp_path / "e_license.odcs.yaml").write_bytes(
        source.read_bytes().replace(f"version: {current}\n".encode(), b"version: 9.9.9\n")
    )
    monkeypatch.setenv("EXCHANGE_CONTRACTS_DIR", str(tmp_path))
    assert load_contract("e_license").version == "9.9.9"
    monkeypatch.delenv("EXCHANGE_CONTRACTS_DIR")
    assert load_contract("e_license").version == current


# --- validating generator output ----------------------------------------------------------------------


def test_exactly_the_defective_records_are_quarantined(
    generated: pa.Table, outcome: ValidationOutcome, contract: Contract
) -> None:
    defect = generated.column(DEFECT_COLUMN)
    clean = pc.is_null(defect)
    assert outcome.pulled == N == outcome.accepted_count + outcome.quarantined_count
    assert outcome.quarantined_count == defect.length() - defect.null_count > 0
    # Accepted records are the clean ones, unchanged and in input order.
    assert outcome.accepted.equals(generated.filter(clean).drop_columns([DEFECT_COLUMN]))
    assert outcome.accepted.schema == DATASETS[contract.dataset].schema


def test_each_defect_kind_is_caught_by_its_rule(
    generated: pa.Table, outcome: ValidationOutcome, contract: Contract
) -> None:
    defects = generated.filter(pc.is_valid(generated.column(DEFECT_COLUMN)))
    q = outcome.quarantined
    assert q.schema == QUARANTINE_SCHEMA
    # Quarantine rows follow input order, so row k is the k-th defective record.
    assert q.column("record_key").to_pylist() == defects.column(contract.key).to_pylist()
    kinds = defects.column(DEFECT_COLUMN).to_pylist()
    expected = [EXPECTED_RULE[contract.dataset][kind] for kind in kinds]
    for kind, rule_id, listed in zip(kinds, expected, q.column("rule_id").to_pylist(), strict=True):
        assert rule_id in listed.split(","), (kind, listed)
        assert set(listed.split(",")) - {rule_id} <= ALSO_BROKEN.get((contract.dataset, kind), set()), listed
    assert set(q.column("severity").to_pylist()) == {"error"}
    assert set(q.column("batch_id").to_pylist()) == {"b-test"}
    assert set(q.column("province").to_pylist()) == {"jiangsu"}
    assert set(q.column("dataset").to_pylist()) == {contract.dataset}
    assert set(expected) == set(EXPECTED_RULE[contract.dataset].values()), "every defect kind occurs"


def test_reasons_name_the_field_and_the_offending_value(
    outcome: ValidationOutcome, contract: Contract
) -> None:
    for row in outcome.quarantined.to_pylist():
        record = json.loads(row["record_json"])
        assert list(record) == list(contract.field_names)
        rule_ids, reasons = row["rule_id"].split(","), row["reason"].split("; ")
        assert len(rule_ids) == len(reasons)
        for rule_id, reason in zip(rule_ids, reasons, strict=True):
            rule = contract.rule(rule_id)
            column = rule.columns[0]
            value = record[column]
            shown = "null" if value is None else f"'{value}'"
            assert reason.startswith(f"{column}={shown}")
            assert reason.endswith(rule.description)


def test_rule_outcomes_are_the_gx_counts(
    generated: pa.Table, outcome: ValidationOutcome, contract: Contract
) -> None:
    kinds = generated.column(DEFECT_COLUMN).to_pylist()
    per_rule = {r.rule_id: r for r in outcome.rules}
    assert [r.rule_id for r in outcome.rules] == [r.id for r in contract.rules]
    listed = Counter(r for ids in outcome.quarantined.column("rule_id").to_pylist() for r in ids.split(","))
    for kind, rule_id in EXPECTED_RULE[contract.dataset].items():
        assert per_rule[rule_id].unexpected_count == listed[rule_id] >= kinds.count(kind) > 0
        assert not per_rule[rule_id].success
    untouched = set(per_rule) - set(EXPECTED_RULE[contract.dataset].values())
    assert all(per_rule[r].success and per_rule[r].unexpected_count == 0 for r in untouched)
    assert outcome.gx_success is False
    assert outcome.held is False  # about 3 % bad, below the 20 % threshold
    assert outcome.warnings.num_rows == 0


def test_clean_data_passes(generated: pa.Table, contract: Contract) -> None:
    clean = generated.filter(pc.is_null(generated.column(DEFECT_COLUMN))).drop_columns([DEFECT_COLUMN])
    result = _validate(clean, contract, batch_id="b-clean", lake=_lake(contract.dataset))
    assert result.gx_success is True
    assert result.quarantined_count == 0 and result.quarantined.num_rows == 0
    assert result.accepted.equals(clean)
    assert all(r.success for r in result.rules)


def test_batch_is_held_when_the_bad_share_exceeds_the_threshold(contract: Contract) -> None:
    table = _generated(contract.dataset, n=4000, defect_rate=0.5).drop_columns([DEFECT_COLUMN])
    result = _validate(table, contract, batch_id="b-bad", lake=_lake(contract.dataset, n=4000, defect_rate=0.5))
    assert result.quarantined_count / result.pulled > contract.batch_hold_threshold
    assert result.held is True
    assert result.pulled == result.accepted_count + result.quarantined_count


def test_records_of_another_province_are_rejected(generated: pa.Table, contract: Contract) -> None:
    result = _validate(generated.drop_columns([DEFECT_COLUMN]), contract, province="anhui", batch_id="b-anhui")
    region = next(r for r in result.rules if r.rule_id == "region_code.in_province")
    assert (
        region.unexpected_count == N - pc.sum(pc.starts_with(generated.column("region_code"), "34")).as_py()
    )
    assert result.held is True


def test_empty_batch(contract: Contract) -> None:
    empty = DATASETS[contract.dataset].schema.empty_table()
    result = validate(empty, contract, province="shanghai", batch_id="b-empty")
    assert (result.pulled, result.accepted_count, result.quarantined_count) == (0, 0, 0)
    assert result.gx_success is True and result.held is False
    assert result.quarantined.schema == QUARANTINE_SCHEMA


def test_generator_defect_column_must_be_dropped(generated: pa.Table, contract: Contract) -> None:
    from exchange.contracts.validate import BatchSchemaError

    with pytest.raises(BatchSchemaError, match="_defect"):
        validate(generated.slice(0, 10), contract, province="jiangsu", batch_id="b")
    with pytest.raises(BatchSchemaError, match="status"):
        validate(
            generated.slice(0, 10).drop_columns([DEFECT_COLUMN, "status"]),
            contract,
            province="jiangsu",
            batch_id="b",
        )
    with pytest.raises(ValueError, match="province"):
        validate(
            generated.slice(0, 10).drop_columns([DEFECT_COLUMN]), contract, province="beijing", batch_id="b"
        )


def test_warning_rules_keep_the_record() -> None:
    contract = load_contract("e_license")
    table = _generated("e_license", n=200, defect_rate=0.0).drop_columns([DEFECT_COLUMN])
    no_expiry = np.zeros(200, dtype=bool)
    no_expiry[[3, 50]] = True
    valid_until = pc.if_else(pa.array(no_expiry), pa.scalar(None, pa.date32()), table.column("valid_until"))
    table = table.set_column(table.schema.get_field_index("valid_until"), "valid_until", valid_until)
    result = validate(table, contract, province="jiangsu", batch_id="b-warn")
    assert result.accepted_count == 200 and result.quarantined_count == 0
    assert result.warnings.column("rule_id").to_pylist() == ["valid_until.expiry_stated"] * 2
    assert result.warnings.column("severity").to_pylist() == ["warning"] * 2
    assert (
        result.warnings.column("record_key").to_pylist()
        == table.column("license_id").take([3, 50]).to_pylist()
    )
    assert result.warned_count == 2
    assert result.gx_success is False  # GX reports the failed warning expectation; nothing is rejected


def test_every_broken_rule_is_listed_once_per_record() -> None:
    contract = load_contract("enterprise_registration")
    table = _generated("enterprise_registration", n=50, defect_rate=0.0).drop_columns([DEFECT_COLUMN])
    rows = table.to_pylist()
    rows[10].update(legal_rep_id=None, registered_capital=-5.0, status="closed", region_code="3205")
    rows[20].update(registered_capital=2.5e7)  # a warning only
    broken = pa.Table.from_pylist(rows, schema=table.schema)
    result = validate(broken, contract, province="jiangsu", batch_id="b-multi")
    assert result.quarantined_count == 1
    row = result.quarantined.to_pylist()[0]
    # Null is reported once, by the not-null rule, not again as a bad checksum.
    assert row["rule_id"] == (
        "legal_rep_id.not_null,registered_capital.non_negative,region_code.six_digits,region_code.in_province,"
        "status.in_enum"
    )
    reasons = row["reason"].split("; ")
    assert [r.split(":")[0] for r in reasons] == [
        "legal_rep_id=null",
        "registered_capital='-5'",
        "region_code='3205'",
        "region_code='3205'",
        "status='closed'",
    ]
    assert result.warnings.column("record_key").to_pylist() == [rows[20]["uscc"]]
    assert result.warnings.column("rule_id").to_pylist() == ["registered_capital.plausible_magnitude"]


def test_duplicates_keep_the_first_occurrence() -> None:
    contract = load_contract("e_license")
    table = _generated("e_license", n=10, defect_rate=0.0).drop_columns([DEFECT_COLUMN])
    twice = pa.concat_tables([table, table.slice(2, 3), table.slice(2, 1)])
    result = validate(twice, contract, province="jiangsu", batch_id="b-dup")
    assert result.accepted.equals(table)
    assert result.quarantined.column("rule_id").to_pylist() == ["license_id.unique_in_batch"] * 4
