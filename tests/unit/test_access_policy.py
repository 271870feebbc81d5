"""The access policy's decisions, table by table: grant x catalogue terms x masking x row scope.

Every row states the inputs and the decision expected (the thing allowed, or the denial's reason); masks
and row filters are checked by running the SQL the policy produced in DuckDB, not by reading it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.access import policy
from exchange.access.models import Grant, GrantRevocation, RowCondition, SignedGrant
from exchange.access.policy import Denial, MaskedColumn, RowFilter, Terms, View
from exchange.datasets import dataset
from exchange.errors import AccessDenied
from exchange.signing.signers import Signature

SCHEMA = dataset("e_license").schema
MASKING = {"license_id": "none", "holder_name": "name", "holder_id": "resident_id", "region_code": "none",
           "issued_on": "none", "status": "none", "phone": "mobile", "secret": "withhold", "odd": "rot13"}
SHARED = Terms("e_license", "unconditional", MASKING)
CONDITIONAL = Terms("e_license", "conditional", MASKING)
CLOSED = Terms("e_license", "not_shared", MASKING)
TODAY = date(2026, 12, 6)


def grant(gid: str = "g1", *, department: str = "js.public_security", columns: tuple[str, ...] = ("license_id",),
          row_filter: tuple[RowCondition, ...] = (), purpose: str = "verify licences", legal_basis: str = "art. 12",
          expires_on: date = date(2027, 1, 1), unmasked: tuple[str, ...] = (), justification: str = "") -> Grant:
    return Grant(id=gid, department=department, dataset="e_license", columns=list(columns),
                 row_filter=list(row_filter), purpose=purpose, legal_basis=legal_basis,
                 approved_by="jiangsu.data_office", expires_on=expires_on, unmasked=list(unmasked),
                 justification=justification, issued_at=datetime(2026, 11, 1, tzinfo=UTC))


def signed(g: Grant) -> SignedGrant:
    return SignedGrant(grant=g, signature=Signature(key_id="ed25519:test", algorithm="ed25519", value=""))


def reason(decision: object) -> str | None:
    return decision.reason if isinstance(decision, Denial) else None


# --- issuing a grant: (grant, terms, revoked ids) -> denial reason or None ---------------------------------

REVIEW = [
    ("plain grant, unconditional", grant(), SHARED, [], None),
    ("conditional with purpose and basis", grant(), CONDITIONAL, [], None),
    ("conditional without purpose", grant(purpose="  "), CONDITIONAL, [], "conditions_unmet"),
    ("conditional without legal basis", grant(legal_basis=""), CONDITIONAL, [], "conditions_unmet"),
    ("unconditional needs neither", grant(purpose="", legal_basis=""), SHARED, [], None),
    ("not shared", grant(), CLOSED, [], "not_shared"),
    ("unknown column beats everything", grant(columns=("license_id", "nope")), CLOSED, [], "unknown_column"),
    ("unknown filter column", grant(row_filter=(RowCondition(column='x" OR 1=1 --', op="in", values=["a"]),)),
     SHARED, [], "unknown_column"),
    ("unmasked without justification", grant(columns=("holder_id",), unmasked=("holder_id",)), SHARED, [],
     "unjustified_unmasked"),
    ("unmasked with justification", grant(columns=("holder_id",), unmasked=("holder_id",), justification="court order"),
     SHARED, [], None),
    ("a revoked id reused", grant("old"), SHARED, ["old"], "grant_id_revoked"),
]


@pytest.mark.parametrize(("case", "g", "terms", "revoked", "expected"), REVIEW, ids=[r[0] for r in REVIEW])
def test_review_grant(case: str, g: Grant, terms: Terms, revoked: list[str], expected: str | None) -> None:
    assert reason(policy.review_grant(g, terms, SCHEMA.names, revoked)) == expected


# --- using one: (grants held, revocations, terms, today) -> the grant chosen or the denial -----------------

REVOKED = {"r1": GrantRevocation(grant_id="r1", revoked_at=datetime(2026, 12, 1, tzinfo=UTC), revoked_by="office",
                                 reason="misuse")}
USABLE = [
    ("none held", [], {}, SHARED, "no_grant"),
    ("another department's", [grant(department="sh.x")], {}, SHARED, "no_grant"),
    ("live", [grant("g1")], {}, SHARED, "g1"),
    ("the latest live wins", [grant("g1"), grant("g2")], {}, SHARED, "g2"),
    ("revoked", [grant("r1")], REVOKED, SHARED, "grant_revoked"),
    ("revoked beside a live one", [grant("g1"), grant("r1")], REVOKED, SHARED, "g1"),
    ("expired yesterday", [grant(expires_on=date(2026, 12, 5))], {}, SHARED, "grant_expired"),
    ("last day today", [grant(expires_on=TODAY)], {}, SHARED, "g1"),
    ("contract tightened after approval", [grant()], {}, CLOSED, "not_shared"),
    ("revocation is reported before the contract", [grant("r1")], REVOKED, CLOSED, "grant_revoked"),
]


@pytest.mark.parametrize(("case", "held", "revoked", "terms", "expected"), USABLE, ids=[r[0] for r in USABLE])
def test_usable_grant(case: str, held: list[Grant], revoked: dict[str, GrantRevocation], terms: Terms,
                      expected: str) -> None:
    decision = policy.usable_grant("js.public_security", "e_license", [signed(g) for g in held], revoked, terms, TODAY)
    assert (decision.reason if isinstance(decision, Denial) else decision.grant.id) == expected
    if isinstance(decision, Denial):
        assert decision.message  # a reason a department can read
        with pytest.raises(AccessDenied, match=decision.message.split(";")[0][:30]):
            policy.require(decision)


STATUS = [
    ("in force", grant(), [], "active"),
    ("on its last day", grant(expires_on=TODAY), [], "active"),
    ("the day after", grant(expires_on=date(2026, 12, 5)), [], "expired"),
    ("revoked", grant("r1"), ["r1"], "revoked"),
    ("revoked beats expired", grant("r1", expires_on=date(2020, 1, 1)), ["r1"], "revoked"),
    ("another grant revoked", grant("g1"), ["r1"], "active"),
]


@pytest.mark.parametrize(("case", "g", "revoked", "expected"), STATUS, ids=[r[0] for r in STATUS])
def test_grant_status(case: str, g: Grant, revoked: list[str], expected: str) -> None:
    """The one status that usable_grant, standing extracts and `grants list` all go by."""
    assert policy.grant_status(g, revoked, TODAY) == expected


# --- masks per classification: each rule run in DuckDB over real-looking values -----------------------------

MASKED = [
    ("none", "京A12345", "京A12345"),
    ("resident_id", "11010119900307777X", "110101********777X"),
    ("name", "欧阳娜娜", "欧***"),
    ("mobile", "13812345678", "138****5678"),
    ("resident_id", None, None),
    ("name", None, None),
]


@pytest.mark.parametrize(("mask", "value", "shown"), MASKED)
def test_each_mask_hides_what_its_classification_requires(mask: str, value: str | None, shown: str | None) -> None:
    column = policy.masked_column("v", mask)
    assert isinstance(column, MaskedColumn) and column.mask == mask
    table = pa.table({"v": pa.array([value], pa.string())})
    with duckdb.connect() as con:
        con.register("t", table)
        assert con.execute(f"SELECT {column.sql} FROM t").fetchall() == [(shown,)]


@pytest.mark.parametrize(("mask", "expected"), [("withhold", "column_withheld"), ("rot13", "unknown_mask"),
                                                ("", "unknown_mask")])
def test_a_mask_that_cannot_apply_denies_instead_of_leaking(mask: str, expected: str) -> None:
    assert reason(policy.masked_column("v", mask)) == expected


COLUMNS = [
    ("masked by classification", grant(columns=("license_id", "holder_name", "holder_id")),
     {"license_id": "none", "holder_name": "name", "holder_id": "resident_id"}),
    ("granted unmasked", grant(columns=("holder_id",), unmasked=("holder_id",), justification="j"),
     {"holder_id": "none"}),
    ("withheld unless named", grant(columns=("secret",)), {"secret": "withhold"}),
    ("withheld column granted unmasked", grant(columns=("secret",), unmasked=("secret",), justification="j"),
     {"secret": "none"}),
    ("not in the contract: withheld", grant(columns=("valid_until",)), {"valid_until": "withhold"}),
]


@pytest.mark.parametrize(("case", "g", "masks"), COLUMNS, ids=[r[0] for r in COLUMNS])
def test_column_masks(case: str, g: Grant, masks: dict[str, str]) -> None:
    assert policy.column_masks(g, SHARED) == masks


# --- whole views ----------------------------------------------------------------------------------------

VIEWS = [
    ("masked columns in grant order", grant(columns=("holder_id", "license_id")), SHARED,
     {"holder_id": "resident_id", "license_id": "none"}),
    ("not shared any more", grant(), CLOSED, "not_shared"),
    ("a withheld column", grant(columns=("license_id", "status"), unmasked=()),
     Terms("e_license", "unconditional", {**MASKING, "status": "withhold"}), "column_withheld"),
    ("a column outside the dataset", grant(columns=("license_id", "phone")), SHARED, "unknown_column"),
    ("an unknown mask", grant(columns=("status",)), Terms("e_license", "conditional", {"status": "rot13"}),
     "unknown_mask"),
    ("a between with one value", grant(row_filter=(RowCondition(column="issued_on", op="between", values=["x"]),)),
     SHARED, "bad_row_filter"),
]


@pytest.mark.parametrize(("case", "g", "terms", "expected"), VIEWS, ids=[r[0] for r in VIEWS])
def test_view(case: str, g: Grant, terms: Terms, expected: dict[str, str] | str) -> None:
    decision = policy.view(g, terms, SCHEMA)
    if isinstance(expected, str):
        assert reason(decision) == expected
    else:
        assert isinstance(decision, View) and decision.masking == expected
        assert list(decision.masking) == g.columns


# --- row filters: run over a small table, values (however SQL-looking) only ever parameters ---------------

ROWS = pa.table({
    "license_id": ["L1", "L2", "L3", "L4", "x' OR '1'='1"],
    "region_code": ["320102", "320506", "310101", "330106", "320102"],
    "issued_on": pa.array([date(2026, 1, 1), date(2026, 6, 1), date(2026, 12, 31), None, date(2026, 3, 3)]),
    "status": ["valid", "revoked", "valid", "expired", "valid"],
})
INJECTION = ["x' OR '1'='1", "'); DROP TABLE t; --", "\" OR TRUE --", "%", "_", "3201%", "L1' --"]
FILTERS: list[tuple[str, list[RowCondition], list[str] | str]] = [
    ("no condition keeps all", [], ["L1", "L2", "L3", "L4", "x' OR '1'='1"]),
    ("in", [RowCondition(column="status", op="in", values=["valid"])], ["L1", "L3", "x' OR '1'='1"]),
    ("in none keeps none", [RowCondition(column="status", op="in", values=[])], []),
    ("prefix_in", [RowCondition(column="region_code", op="prefix_in", values=["3201", "31"])],
     ["L1", "L3", "x' OR '1'='1"]),
    ("prefix_in none keeps none", [RowCondition(column="region_code", op="prefix_in", values=[])], []),
    ("between dates, inclusive, nulls out", [RowCondition(column="issued_on", op="between",
                                                          values=["2026-01-01", "2026-06-01"])],
     ["L1", "L2", "x' OR '1'='1"]),
    ("conjunction", [RowCondition(column="status", op="in", values=["valid"]),
                     RowCondition(column="region_code", op="prefix_in", values=["32"])], ["L1", "x' OR '1'='1"]),
    ("an injection-looking value matches only itself",
     [RowCondition(column="license_id", op="in", values=["x' OR '1'='1"])], ["x' OR '1'='1"]),
    ("LIKE wildcards are literal in a prefix", [RowCondition(column="region_code", op="prefix_in", values=["%", "_"])],
     []),
    ("an injection-looking column is denied",
     [RowCondition(column="status\" OR 1=1 --", op="in", values=["valid"])], "unknown_column"),
    ("between needs two values",
     [RowCondition(column="issued_on", op="between", values=["2026-01-01", "2026-02-01", "2026-03-01"])],
     "bad_row_filter"),
]


def _kept(rows: RowFilter) -> list[str]:
    with duckdb.connect() as con:
        con.register("t", ROWS)
        return [r[0] for r in con.execute(f"SELECT license_id FROM t WHERE {rows.sql} ORDER BY license_id",
                                          list(rows.params)).fetchall()]


@pytest.mark.parametrize(("case", "conditions", "expected"), FILTERS, ids=[r[0] for r in FILTERS])
def test_row_filter(case: str, conditions: list[RowCondition], expected: list[str] | str) -> None:
    decision = policy.row_filter(conditions, SCHEMA)
    if isinstance(expected, str):
        assert reason(decision) == expected
        return
    assert isinstance(decision, RowFilter)
    assert _kept(decision) == sorted(expected)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.sampled_from(INJECTION), st.text()), max_size=4),
       op=st.sampled_from(["in", "prefix_in"]), column=st.sampled_from(["license_id", "region_code", "status"]))
def test_no_value_ever_enters_the_sql_text(values: list[str], op: Any, column: str) -> None:
    """Whatever the values, the SQL text is the same for the same shape, and the values are the parameters."""
    rows = policy.row_filter([RowCondition(column=column, op=op, values=values)], SCHEMA)
    shape = policy.row_filter([RowCondition(column=column, op=op, values=["v"] * len(values))], SCHEMA)
    assert isinstance(rows, RowFilter) and isinstance(shape, RowFilter)
    assert rows.sql == shape.sql and rows.params == tuple(values)
    kept = _kept(rows)  # runs: no value can break the statement
    column_values = ROWS.column(column).to_pylist()
    ids = ROWS.column("license_id").to_pylist()
    if op == "in":
        assert kept == sorted(i for i, v in zip(ids, column_values, strict=True) if v in values)
    else:
        assert kept == sorted(i for i, v in zip(ids, column_values, strict=True)
                              if any(v.startswith(p) for p in values))


# --- the other decisions ---------------------------------------------------------------------------------

# Decided inside the test, not at import: a decision computed while collecting would not see a changed policy
# (mutation testing, `make mutation`, imports this module once and runs the tests under each mutant).
OTHERS: list[tuple[str, Callable[[], object], str | None]] = [
    ("licence check, shared", lambda: policy.licence_check(CONDITIONAL), None),
    ("licence check, not shared", lambda: policy.licence_check(CLOSED), "not_shared"),
    ("query with a usable grant", lambda: policy.query_scope("d", [signed(grant())], []), None),
    ("query with none", lambda: policy.query_scope("d", [], ["d's grant g1 on e_license expired on 2026-01-01"]),
     "no_usable_grant"),
    ("extract key registered", lambda: policy.extract_key("d", "a2V5"), None),
    ("no extract key", lambda: policy.extract_key("d", None), "no_extract_key"),
]


@pytest.mark.parametrize(("case", "decide", "expected"), OTHERS, ids=[r[0] for r in OTHERS])
def test_other_decisions(case: str, decide: Callable[[], object], expected: str | None) -> None:
    assert reason(decide()) == expected


def test_an_extract_is_sealed_to_the_registered_key_itself() -> None:
    assert policy.extract_key("d", "a2V5") == "a2V5"


def test_a_query_denial_says_why_each_grant_is_unusable() -> None:
    why = "d's grant g1 on e_license expired on 2026-01-01"
    denial = policy.query_scope("d", [], [why])
    assert isinstance(denial, Denial) and why in denial.message


# --- what a licence check may add to valid / not valid: (grant or none, terms) -> details, rows kept ---------

CITY = RowCondition(column="region_code", op="prefix_in", values=["3201"])
DISCLOSURE = [
    ("no grant: nothing", None, SHARED, (), []),
    ("a grant without detail columns", grant(columns=("license_id", "holder_id")), SHARED, (), []),
    ("clear detail columns it grants, all rows", grant(columns=("license_id", "status", "issued_on")), SHARED,
     ("status", "issued_on"), ["320101", "330101"]),
    ("inside its row filter only", grant(columns=("status",), row_filter=(CITY,)), SHARED, ("status",), ["320101"]),
    ("a detail column the contract masks is not disclosed", grant(columns=("status", "issued_on")),
     Terms("e_license", "unconditional", {**MASKING, "status": "name"}), ("issued_on",), ["320101", "330101"]),
    ("a grant whose view is refused (a column the dataset lacks): nothing", grant(columns=("status", "secret")),
     SHARED, (), []),
    ("the contract no longer shares the dataset", grant(columns=("status",)), CLOSED, (), []),
]


@pytest.mark.parametrize(("case", "g", "terms", "details", "kept"), DISCLOSURE, ids=[d[0] for d in DISCLOSURE])
def test_check_disclosure(case: str, g: Grant | None, terms: Terms, details: tuple[str, ...],
                          kept: list[str]) -> None:
    decided = policy.check_disclosure(g, terms, SCHEMA)
    assert decided.details == details
    con = duckdb.connect()
    con.execute("CREATE TABLE licences AS SELECT * FROM (VALUES ('320101'), ('330101')) t(region_code)")
    found = con.execute(f"SELECT region_code FROM licences WHERE coalesce({decided.rows.sql}, FALSE) "
                        "ORDER BY 1", list(decided.rows.params)).fetchall()
    assert [r[0] for r in found] == kept


# --- catalogue items: a request or a grant inside the item's published terms --------------------------------

ITEM = policy.ItemTerms(code="JS-EL-01", dataset="e_license", attribute="conditional",
                        columns=("license_id", "status"), max_period_days=30, methods=("api", "extract"),
                        provider_office="jiangsu.data_office")


def _scope(item: policy.ItemTerms = ITEM, columns: tuple[str, ...] = ("license_id",), rows: tuple[str, ...] = (),
           purpose: str = "licence checks", basis: str = "国办发〔2025〕1号", until: date = date(2026, 12, 20),
           method: str = "api") -> Denial | None:
    return policy.item_scope_denial(item, columns, rows, purpose, basis, until, method, TODAY)


def test_a_request_inside_the_item_is_admitted_up_to_its_last_allowed_day() -> None:
    assert _scope() is None
    assert _scope(until=TODAY) is None and _scope(until=date(2027, 1, 5)) is None  # today + 30 days
    assert _scope(columns=("license_id", "status"), rows=("status",), method="extract") is None


@pytest.mark.parametrize(("change", "expected"), [
    ({"item": replace(ITEM, attribute="not_shared", basis="《保守国家秘密法》")},
     Denial("item_not_shared", "JS-EL-01 is 不予共享 (not shared): 《保守国家秘密法》")),
    ({"item": replace(ITEM, attribute="not_shared")},
     Denial("item_not_shared", "JS-EL-01 is 不予共享 (not shared): no basis given")),
    ({"purpose": " "}, Denial("no_purpose", "JS-EL-01: a request needs a purpose and a legal basis")),
    ({"basis": ""}, Denial("no_purpose", "JS-EL-01: a request needs a purpose and a legal basis")),
    ({"columns": ("license_id", "holder_id"), "rows": ("region_code", "holder_id")},
     Denial("beyond_item", "JS-EL-01 has no column(s) holder_id, region_code; it offers license_id, status")),
    ({"method": "file"}, Denial("beyond_item", "JS-EL-01 is not shared by file; allowed: api, extract")),
    ({"until": date(2026, 12, 5)}, Denial("beyond_item", "JS-EL-01: the period ends 2026-12-05, before today "
                                                         "(2026-12-06)")),
    ({"until": date(2027, 1, 6)}, Denial("beyond_item", "JS-EL-01: the period may run 30 days at most "
                                                        "(until 2027-01-05), not until 2027-01-06")),
])
def test_each_way_out_of_the_item_is_refused_in_words_naming_it(change: dict[str, object], expected: Denial) -> None:
    assert _scope(**change) == expected  # type: ignore[arg-type]


def _item_grant(**change: object) -> Grant:
    """A grant inside ITEM, issued today (the item bounds its period from that day)."""
    issued = datetime(2026, 12, 6, 9, tzinfo=UTC)
    inside = grant(row_filter=(RowCondition(column="status", op="in", values=["有效"]),), expires_on=date(2026, 12, 20))
    return inside.model_copy(update={"issued_at": issued, **change})


def test_a_grant_is_held_to_its_item_dataset_office_and_terms() -> None:
    assert policy.item_grant_denial(_item_grant(), ITEM) is None
    assert policy.item_grant_denial(_item_grant(dataset="enterprise_registration"), ITEM) == Denial(
        "beyond_item", "grant g1 is on enterprise_registration, item JS-EL-01 on e_license")
    assert policy.item_grant_denial(_item_grant(approved_by="zhejiang.data_office"), ITEM) == Denial(
        "beyond_item", "grant g1: only jiangsu.data_office grants JS-EL-01, not zhejiang.data_office")
    # The grant's own row-scope columns, period (from the day it was issued) and purpose are the item's to bound.
    holder_rows = [RowCondition(column="holder_id", op="in", values=["x"])]
    assert policy.item_grant_denial(_item_grant(row_filter=holder_rows), ITEM) == Denial(
        "beyond_item", "JS-EL-01 has no column(s) holder_id; it offers license_id, status")
    assert policy.item_grant_denial(_item_grant(expires_on=date(2027, 1, 6)), ITEM) == Denial(
        "beyond_item", "JS-EL-01: the period may run 30 days at most (until 2027-01-05), not until 2027-01-06")
    assert policy.item_grant_denial(_item_grant(purpose=""), ITEM) == Denial(
        "no_purpose", "JS-EL-01: a request needs a purpose and a legal basis")


def test_a_grant_is_checked_against_the_method_requested_or_else_the_items_first() -> None:
    assert policy.item_grant_denial(_item_grant(), ITEM, "file") == Denial(
        "beyond_item", "JS-EL-01 is not shared by file; allowed: api, extract")
    assert policy.item_grant_denial(_item_grant(), ITEM, "extract") is None
    assert policy.item_grant_denial(_item_grant(), ITEM, None) is None  # by hand: the item's first method, api
    assert policy.item_grant_denial(_item_grant(), replace(ITEM, methods=("extract",))) is None
    no_method = replace(ITEM, methods=())
    for method in (None, "api"):
        assert policy.item_grant_denial(_item_grant(), no_method, method) == Denial(
            "beyond_item", f"JS-EL-01 names no sharing method: nothing can be granted on it until "
            f"{ITEM.provider_office} republishes it with one")


def test_only_unconditional_items_skip_review() -> None:
    unconditional = replace(ITEM, attribute="unconditional")
    assert policy.without_review([unconditional, unconditional])
    assert not policy.without_review([unconditional, ITEM])
    assert not policy.without_review([ITEM]) and not policy.without_review([])


def test_onward_sharing_needs_the_consent_recorded_for_that_grant_and_department() -> None:
    onward = _item_grant()
    assert policy.onward_denial(onward, "zj.public_security", {("g1", "zj.public_security")}) is None
    refused = Denial("onward_sharing", "grant g1: passing e_license on to zj.public_security needs the consent of "
                                       "jiangsu.data_office, and none is recorded")
    other_consents = {("g1", "ah.public_security"), ("g2", "zj.public_security")}
    assert policy.onward_denial(onward, "zj.public_security", other_consents) == refused
