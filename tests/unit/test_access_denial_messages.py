"""What each access denial tells the department: the message names the grant, column or dataset concerned and
what is refused, exactly (mutation testing, `make mutation`, found the reasons checked but the messages not)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from exchange.access import policy
from exchange.access.models import RowCondition
from exchange.access.policy import Denial, View
from tests.unit.test_access_policy import CLOSED, CONDITIONAL, SCHEMA, SHARED, TODAY, grant, signed


def _message(decision: object) -> str:
    assert isinstance(decision, Denial), decision
    return decision.message


CASES: list[tuple[str, Callable[[], object], str]] = [
    ("unknown columns, all named", lambda: policy.review_grant(grant(columns=("license_id", "nope", "nada")), SHARED,
                                                              SCHEMA.names, ()),
     "grant g1: unknown column(s) nope, nada in e_license"),
    ("not shared: no grant possible", lambda: policy.review_grant(grant(), CLOSED, SCHEMA.names, ()),
     "e_license is not shared under its contract; no grant is possible"),
    ("conditional without a purpose", lambda: policy.review_grant(grant(purpose=" "), CONDITIONAL, SCHEMA.names, ()),
     "e_license is conditionally shared: a grant needs a purpose and a legal basis"),
    ("unmasked without a justification", lambda: policy.review_grant(grant(unmasked=("license_id",)), SHARED,
                                                                    SCHEMA.names, ()),
     "grant g1: unmasked columns need an explicit justification"),
    ("a revoked grant id reused", lambda: policy.review_grant(grant(), SHARED, SCHEMA.names, {"g1"}),
     "grant id g1 was revoked and cannot be reused; choose a new id"),
    ("a usable grant on a dataset no longer shared",
     lambda: policy.usable_grant("js.public_security", "e_license", [signed(grant())], {}, CLOSED, TODAY),
     "e_license is not shared under its current contract; grant g1 cannot be used"),
    ("a withheld column", lambda: policy.masked_column("secret", "withhold"),
     "column secret is withheld unless a grant names it with a justification"),
    ("an unknown mask", lambda: policy.masked_column("odd", "rot13"), "column odd: unknown masking rule 'rot13'"),
    ("a view under a closed contract", lambda: policy.view(grant(), CLOSED, SCHEMA),
     "e_license is not shared under its current contract; grant g1 cannot be used"),
    ("a view naming an unknown column", lambda: policy.view(grant(columns=("license_id", "nope")), SHARED, SCHEMA),
     "grant g1: unknown column(s) nope in e_license"),
    ("a licence check under a closed contract", lambda: policy.licence_check(CLOSED),
     "e_license is not shared under its current contract; licences cannot be checked"),
    ("a row filter on an unknown column",
     lambda: policy.row_filter([RowCondition(column="nope", op="in", values=["x"])], SCHEMA),
     "row filter: unknown column 'nope'"),
    ("no usable grant, with why", lambda: policy.query_scope("d", [], ["one", "two"]),
     "d holds no usable grant: one; two"),
    ("no usable grant", lambda: policy.query_scope("d", [], []), "d holds no usable grant"),
    ("no extract key", lambda: policy.extract_key("d", None),
     "d has no extract public key to encrypt to; register one with `exchange departments set-key` "
     "(or `departments keygen` for a demo)"),
    ("between with one value",
     lambda: policy.row_filter([RowCondition(column="issued_on", op="between", values=["2026-01-01"])], SCHEMA),
     "between on issued_on needs exactly two values"),
]


@pytest.mark.parametrize(("case", "decide", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_denial_says_exactly_what_is_refused(case: str, decide: Callable[[], object], message: str) -> None:
    assert _message(decide()) == message


def test_a_view_is_the_grants_on_its_dataset() -> None:
    g = grant("g7", columns=("license_id", "status"), row_filter=(RowCondition(column="status", op="in",
                                                                                 values=["valid"]),))
    v = policy.view(g, SHARED, SCHEMA)
    assert isinstance(v, View)
    assert (v.grant_id, v.dataset) == ("g7", "e_license")
    assert [c.name for c in v.columns] == ["license_id", "status"]
    assert v.row_filter.params == ("valid",)


def test_an_expired_grant_names_its_last_day() -> None:
    old = grant(expires_on=date(2026, 1, 1))
    denial = policy.usable_grant("js.public_security", "e_license", [signed(old)], {}, SHARED, TODAY)
    assert _message(denial) == "js.public_security's grant g1 on e_license expired on 2026-01-01"
