"""The administrative penalty and provident fund transfer contracts: each rule catches what it should and
nothing else.

Every case takes a small clean batch, breaks one field of one record (or moves it to a boundary that must
still pass), and checks exactly which record is quarantined and by which rules.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from stdnum.cn import ric, uscc

from exchange.contracts.load import load_contract
from exchange.contracts.reference import TableLake
from exchange.contracts.validate import ValidationOutcome, validate
from exchange.synthetic import DEFECT_COLUMN, generate, usccs

START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 3, 8, tzinfo=UTC)
TODAY = date(2024, 3, 8)
N = 40
ROW = 7  # the record each case edits

Edit = Callable[[dict[str, Any]], None]


def _clean(dataset: str) -> pa.Table:
    table = generate(dataset, "jiangsu", N, seed=11, start=START, end=END, defect_rate=0.0)
    return table.drop_columns([DEFECT_COLUMN])


@pytest.fixture(scope="module")
def registrations() -> TableLake:
    """The lake holds the registrations the penalised parties were drawn from (same seed and size)."""
    return TableLake({"enterprise_registration": _clean("enterprise_registration")})


def _check(
    dataset: str, edit: Edit, expected: list[str], lake: TableLake, warnings: list[str] | None = None
) -> ValidationOutcome:
    clean = _clean(dataset)
    rows = clean.to_pylist()
    edit(rows[ROW])
    table = pa.Table.from_pylist(rows, schema=clean.schema)
    outcome = validate(table, load_contract(dataset), province="jiangsu", batch_id="b", today=TODAY, lake=lake)
    key = load_contract(dataset).key
    if expected:
        assert outcome.quarantined.column("record_key").to_pylist() == [rows[ROW][key]]
        assert outcome.quarantined.column("rule_id").to_pylist() == [",".join(expected)]
    else:
        assert outcome.quarantined_count == 0, outcome.quarantined.column("rule_id").to_pylist()
    assert outcome.warnings.column("rule_id").to_pylist() == ([",".join(warnings)] if warnings else [])
    assert outcome.accepted_count + outcome.quarantined_count == N
    return outcome


def _set(**values: Any) -> Edit:
    return lambda row: row.update(values)


def _bad_check_char(column: str) -> Edit:
    def edit(row: dict[str, Any]) -> None:
        value = row[column]
        row[column] = value[:-1] + ("0" if value[-1] != "0" else "1")

    return edit


def _shift(column: str, days: int, base: str | None = None) -> Edit:
    def edit(row: dict[str, Any]) -> None:
        row[column] = row[base or column] + timedelta(days=days)

    return edit


def _today_plus(column: str, days: int) -> Edit:
    return _set(**{column: TODAY + timedelta(days=days)})


def _both(*edits: Edit) -> Edit:
    def edit(row: dict[str, Any]) -> None:
        for one in edits:
            one(row)

    return edit


# --- administrative penalty ---------------------------------------------------------------------------

UNREGISTERED = usccs(np.random.default_rng(99), np.array(["320102"])).to_pylist()[0]

PENALTY_CASES: list[tuple[str, Edit, list[str]]] = [
    ("clean", _set(), []),
    ("decision_no missing", _set(decision_no=None), ["decision_no.not_null"]),
    ("party_name missing", _set(party_name=None), ["party_name.not_null"]),
    # A missing code is reported once, as missing, not also as unregistered.
    ("party_uscc missing", _set(party_uscc=None), ["party_uscc.not_null"]),
    # A code with a wrong check character cannot be a registered one either: both are said.
    (
        "party_uscc checksum",
        _bad_check_char("party_uscc"),
        ["party_uscc.uscc_checksum", "party_uscc.registered_in_lake"],
    ),
    ("party not registered", _set(party_uscc=UNREGISTERED), ["party_uscc.registered_in_lake"]),
    ("violation_type missing", _set(violation_type=None), ["violation_type.not_null"]),
    ("penalty_type missing", _set(penalty_type=None), ["penalty_type.not_null"]),
    ("penalty_type unknown", _set(penalty_type="detention"), ["penalty_type.in_enum"]),
    ("fine missing", _set(fine_amount=None), ["fine_amount.not_null"]),
    ("fine negative", _set(fine_amount=-0.01), ["fine_amount.within_bounds"]),
    ("fine above 1e9", _set(fine_amount=1e9 + 1), ["fine_amount.within_bounds"]),
    ("fine exactly 1e9", _set(fine_amount=1e9), []),
    ("fine zero", _set(fine_amount=0.0), []),
    ("agency missing", _set(enforcement_agency=None), ["enforcement_agency.not_null"]),
    ("region missing", _set(region_code=None), ["region_code.not_null"]),
    ("region five digits", _set(region_code="32010"), ["region_code.six_digits", "region_code.in_province"]),
    ("region of Shanghai", _set(region_code="310101"), ["region_code.in_province"]),
    ("decided missing", _set(decided_on=None), ["decided_on.not_null"]),
    ("decided tomorrow", _today_plus("decided_on", 1), ["decided_on.not_in_future"]),
    ("decided today", _today_plus("decided_on", 0), []),
    ("publicity missing", _set(publicity_until=None), ["publicity_until.not_null"]),
    ("publicity same day", _shift("publicity_until", 0, base="decided_on"), ["publicity_until.after_decided_on"]),
    ("publicity before", _shift("publicity_until", -1, base="decided_on"), ["publicity_until.after_decided_on"]),
    ("publicity day after", _shift("publicity_until", 1, base="decided_on"), []),
    ("status missing", _set(status=None), ["status.not_null"]),
    ("status unknown", _set(status="closed"), ["status.in_enum"]),
    ("updated missing", _set(updated_at=None), ["updated_at.not_null"]),
]


@pytest.mark.parametrize(("case", "edit", "expected"), PENALTY_CASES, ids=[c[0] for c in PENALTY_CASES])
def test_penalty_rule(case: str, edit: Edit, expected: list[str], registrations: TableLake) -> None:
    _check("administrative_penalty", edit, expected, registrations)


def test_penalty_duplicate_decision_keeps_the_first(registrations: TableLake) -> None:
    clean = _clean("administrative_penalty")
    rows = clean.to_pylist()
    rows[ROW]["decision_no"] = rows[2]["decision_no"]
    table = pa.Table.from_pylist(rows, schema=clean.schema)
    outcome = validate(table, load_contract("administrative_penalty"), province="jiangsu", batch_id="b",
                       today=TODAY, lake=registrations)
    assert outcome.quarantined.column("rule_id").to_pylist() == ["decision_no.unique_in_batch"]
    assert pc.sum(pc.equal(outcome.accepted.column("decision_no"), rows[2]["decision_no"])).as_py() == 1


def test_unregistered_party_reason_tells_the_office_what_to_do(registrations: TableLake) -> None:
    outcome = _check("administrative_penalty", _set(party_uscc=UNREGISTERED), ["party_uscc.registered_in_lake"],
                     registrations)
    reason = outcome.quarantined.column("reason").to_pylist()[0]
    assert reason.startswith(f"party_uscc='{UNREGISTERED}': ")
    assert "查无此户" in reason and "no enterprise registration in the lake" in reason


def test_without_a_lake_no_party_is_registered() -> None:
    """No reference means an empty lake: honest, and every penalty waits for its registration."""
    table = _clean("administrative_penalty")
    outcome = validate(table, load_contract("administrative_penalty"), province="jiangsu", batch_id="b", today=TODAY)
    assert outcome.quarantined_count == N and outcome.held
    assert set(outcome.quarantined.column("rule_id").to_pylist()) == {"party_uscc.registered_in_lake"}


def test_fixture_codes_agree_with_stdnum() -> None:
    # The fixtures' codes are real: python-stdnum, the oracle, agrees with the contract's checksum rule.
    table = _clean("administrative_penalty")
    assert all(uscc.is_valid(code) for code in table.column("party_uscc").to_pylist())
    assert uscc.is_valid(UNREGISTERED)
    # ric.is_valid also checks the region existed in the birth year (see test_checksums): check characters only.
    ids = _clean("provident_fund_transfer").column("person_id").to_pylist()
    assert all(ric.calc_check_digit(i) == i[-1] for i in ids)


# --- provident fund transfer --------------------------------------------------------------------------


def _completed(days_after_applied: int) -> Edit:
    return _both(_set(status="completed"), _shift("completed_on", days_after_applied, base="applied_on"))


TRANSFER_CASES: list[tuple[str, Edit, list[str]]] = [
    ("clean", _set(), []),
    ("transfer_id missing", _set(transfer_id=None), ["transfer_id.not_null"]),
    ("name missing", _set(person_name=None), ["person_name.not_null"]),
    ("person_id missing", _set(person_id=None), ["person_id.not_null"]),
    ("person_id checksum", _bad_check_char("person_id"), ["person_id.resident_id_checksum"]),
    ("person_id 17 chars", _set(person_id="11010519491231002"), ["person_id.resident_id_checksum"]),
    ("from_center missing", _set(from_center=None), ["from_center.not_null"]),
    ("to_center missing", _set(to_center=None), ["to_center.not_null"]),
    ("region missing", _set(region_code=None), ["region_code.not_null"]),
    ("region of Anhui", _set(region_code="340102"), ["region_code.in_province"]),
    ("to_region missing", _set(to_region_code=None), ["to_region_code.not_null"]),
    ("to_region letters", _set(to_region_code="32O102"), ["to_region_code.six_digits"]),
    ("to_region in Shanghai", _set(to_region_code="310101"), []),
    ("amount missing", _set(transfer_amount=None), ["transfer_amount.not_null"]),
    ("amount negative", _set(transfer_amount=-1.0), ["transfer_amount.within_bounds"]),
    ("amount above 1e7", _set(transfer_amount=1e7 + 0.01), ["transfer_amount.within_bounds"]),
    ("amount exactly 1e7", _set(transfer_amount=1e7), []),
    ("applied missing", _set(applied_on=None), ["applied_on.not_null"]),
    ("applied tomorrow", _both(_today_plus("applied_on", 1), _set(completed_on=None)), ["applied_on.not_in_future"]),
    ("applied today", _both(_today_plus("applied_on", 0), _set(completed_on=None)), []),
    ("not completed yet", _set(completed_on=None, status="in_progress"), []),
    ("completed same day", _completed(0), []),
    ("completed before applied", _completed(-1), ["completed_on.not_before_applied_on"]),
    (
        "completed tomorrow",
        _both(_set(status="completed"), _today_plus("completed_on", 1)),
        ["completed_on.not_in_future"],
    ),
    ("status missing", _set(status=None), ["status.not_null"]),
    ("status unknown", _set(status="done"), ["status.in_enum"]),
    ("updated missing", _set(updated_at=None), ["updated_at.not_null"]),
]


@pytest.mark.parametrize(("case", "edit", "expected"), TRANSFER_CASES, ids=[c[0] for c in TRANSFER_CASES])
def test_transfer_rule(case: str, edit: Edit, expected: list[str]) -> None:
    _check("provident_fund_transfer", edit, expected, TableLake({}))


def test_transfer_out_of_the_delta_is_kept_and_flagged() -> None:
    outcome = _check("provident_fund_transfer", _set(to_region_code="110101"), [], TableLake({}),
                     warnings=["to_region_code.in_delta"])
    assert outcome.accepted_count == N


def test_transfer_duplicate_id_keeps_the_first() -> None:
    clean = _clean("provident_fund_transfer")
    rows = clean.to_pylist()
    rows[ROW]["transfer_id"] = rows[3]["transfer_id"]
    table = pa.Table.from_pylist(rows, schema=clean.schema)
    outcome = validate(table, load_contract("provident_fund_transfer"), province="jiangsu", batch_id="b",
                       today=TODAY)
    assert outcome.quarantined.column("rule_id").to_pylist() == ["transfer_id.unique_in_batch"]
    assert pc.sum(pc.equal(outcome.accepted.column("transfer_id"), rows[3]["transfer_id"])).as_py() == 1


def test_today_defaults_to_the_date_in_shanghai() -> None:
    from exchange.contracts import validate as validate_module

    clean = _clean("provident_fund_transfer")
    parameters = validate_module.run_parameters(load_contract("provident_fund_transfer"), clean, province="jiangsu")
    assert parameters["today"] == datetime.now(validate_module.RUN_TIMEZONE).date()
    assert parameters["lake_stale:provident_fund_transfer.transfer_id"] == []
