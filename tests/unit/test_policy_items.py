"""The catalogue-item decisions of exchange/access/policy.py in exact words: each refusal's reason code and the
message the requesting department and the provenance log get (found unpinned by the mutation run, issue 21)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from exchange.access.models import Grant, RowCondition
from exchange.access.policy import (
    Denial,
    ItemTerms,
    item_grant_denial,
    item_scope_denial,
    onward_denial,
    without_review,
)

TODAY = date(2026, 12, 7)
ITEM = ItemTerms(code="JS-EL-01", dataset="e_license", attribute="conditional", columns=("license_id", "status"),
                 max_period_days=30, methods=("api", "extract"), provider_office="jiangsu.data_office")


def _scope(item: ItemTerms = ITEM, columns: tuple[str, ...] = ("license_id",), rows: tuple[str, ...] = (),
           purpose: str = "licence checks", basis: str = "国办发〔2025〕1号", until: date = date(2026, 12, 20),
           method: str = "api") -> Denial | None:
    return item_scope_denial(item, columns, rows, purpose, basis, until, method, TODAY)


def test_a_request_inside_the_item_is_admitted_up_to_its_last_allowed_day() -> None:
    assert _scope() is None
    assert _scope(until=TODAY) is None and _scope(until=date(2027, 1, 6)) is None  # today + 30 days
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
    ({"until": date(2026, 12, 6)}, Denial("beyond_item", "JS-EL-01: the period ends 2026-12-06, before today "
                                                         "(2026-12-07)")),
    ({"until": date(2027, 1, 7)}, Denial("beyond_item", "JS-EL-01: the period may run 30 days at most "
                                                        "(until 2027-01-06), not until 2027-01-07")),
])
def test_each_way_out_of_the_item_is_refused_in_words_naming_it(change: dict[str, object], expected: Denial) -> None:
    assert _scope(**change) == expected  # type: ignore[arg-type]


def _grant(**change: object) -> Grant:
    fields: dict[str, object] = {
        "id": "g-1", "department": "sh.market_regulation", "dataset": "e_license", "columns": ["license_id"],
        "row_filter": [RowCondition(column="status", op="in", values=["有效"])], "purpose": "licence checks",
        "legal_basis": "国办发〔2025〕1号", "approved_by": "jiangsu.data_office", "expires_on": date(2026, 12, 20),
        "issued_at": datetime(2026, 12, 7, 9, tzinfo=UTC)}
    return Grant.model_validate({**fields, **change})


def test_a_grant_is_held_to_its_item_dataset_office_and_terms() -> None:
    assert item_grant_denial(_grant(), ITEM) is None
    assert item_grant_denial(_grant(dataset="enterprise_registration"), ITEM) == Denial(
        "beyond_item", "grant g-1 is on enterprise_registration, item JS-EL-01 on e_license")
    assert item_grant_denial(_grant(approved_by="zhejiang.data_office"), ITEM) == Denial(
        "beyond_item", "grant g-1: only jiangsu.data_office grants JS-EL-01, not zhejiang.data_office")
    # The grant's own row-scope columns, period (from the day it was issued) and purpose are the item's to bound.
    assert item_grant_denial(_grant(row_filter=[RowCondition(column="holder_id", op="in", values=["x"])]),
                             ITEM) == Denial("beyond_item", "JS-EL-01 has no column(s) holder_id; it offers "
                                                            "license_id, status")
    assert item_grant_denial(_grant(expires_on=date(2027, 1, 7)), ITEM) == Denial(
        "beyond_item", "JS-EL-01: the period may run 30 days at most (until 2027-01-06), not until 2027-01-07")
    assert item_grant_denial(_grant(purpose=""), ITEM) == Denial(
        "no_purpose", "JS-EL-01: a request needs a purpose and a legal basis")


def test_a_grant_is_checked_against_the_method_requested_or_else_the_items_first() -> None:
    assert item_grant_denial(_grant(), ITEM, "file") == Denial(
        "beyond_item", "JS-EL-01 is not shared by file; allowed: api, extract")
    assert item_grant_denial(_grant(), ITEM, "extract") is None
    assert item_grant_denial(_grant(), ITEM, None) is None  # by hand: the item's first method, api
    assert item_grant_denial(_grant(), replace(ITEM, methods=("extract",))) is None
    no_method = replace(ITEM, methods=())
    assert item_grant_denial(_grant(), no_method) == Denial("beyond_item", "JS-EL-01 is not shared by ; allowed: ")


def test_only_unconditional_items_skip_review() -> None:
    unconditional = replace(ITEM, attribute="unconditional")
    assert without_review([unconditional, unconditional])
    assert not without_review([unconditional, ITEM]) and not without_review([ITEM]) and not without_review([])


def test_onward_sharing_needs_the_consent_recorded_for_that_grant_and_department() -> None:
    grant = _grant()
    assert onward_denial(grant, "zj.public_security", {("g-1", "zj.public_security")}) is None
    refused = Denial("onward_sharing", "grant g-1: passing e_license on to zj.public_security needs the consent of "
                                       "jiangsu.data_office, and none is recorded")
    assert onward_denial(grant, "zj.public_security", {("g-1", "ah.public_security"), ("g-2", "zj.public_security")}) \
        == refused
