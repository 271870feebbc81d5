"""The web forms' parsing: whatever a browser posts, the answer is a typed input or one FieldError naming a
field the form has - never another exception (which would be a 500 page)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exchange.sharing.models import ItemScope, RequestForm
from exchange.web import forms

NAMES = ["item", "columns", "scope_column", "scope_op", "scope_values", "purpose", "legal_basis", "period_until",
         "sharing_method", "contact", "materials", "outcome", "reason", "missing", "approved_columns", "statement",
         "reasoning", "note", "csrf"]
VALUES = st.one_of(st.text(max_size=30), st.sampled_from(["in", "between", "approve", "refuse", "return", "uphold",
                                                          "2027-01-01", "online_query", "status", "a,b"]))
POSTED = st.dictionaries(st.sampled_from(NAMES), st.lists(VALUES, max_size=3), max_size=len(NAMES))
ASKED = [ItemScope(item="YRD-DZZZ-000101-SH", columns=["license_id", "status"])]


@given(POSTED)
def test_any_posted_request_form_parses_or_names_a_field(posted: dict[str, list[str]]) -> None:
    try:
        form = forms.request_form("js.public_security", posted)
    except forms.FieldError as bad:
        assert bad.field in forms.LABELS and "\n" not in str(bad) and f"{bad.field}:" in str(bad)
    else:
        assert isinstance(form, RequestForm) and form.department == "js.public_security"


@given(POSTED)
def test_any_posted_decision_parses_or_names_a_field(posted: dict[str, list[str]]) -> None:
    try:
        decision = forms.decision(posted, ASKED)
    except forms.FieldError as bad:
        assert bad.field in forms.LABELS and "\n" not in str(bad)
    else:
        assert decision.outcome in ("approve", "refuse", "return")
        assert decision.outcome != "refuse" or decision.reason, "a refusal always has its reason"
        assert decision.outcome != "return" or decision.missing, "a return always lists what is missing"
        for scope in decision.narrowed or []:
            assert scope.columns and set(scope.columns) <= {"license_id", "status"}, "never wider than asked"


@given(POSTED)
def test_any_posted_resubmission_or_dispute_decision_parses_or_names_a_field(posted: dict[str, list[str]]) -> None:
    for parse in (forms.resubmission, forms.dispute_decision, forms.statement):
        try:
            parse(posted)
        except forms.FieldError as bad:
            assert bad.field in forms.LABELS
