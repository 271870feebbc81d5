"""The request state machine: Hypothesis drives random steps by random parties; no sequence reaches an illegal
state, and every refused step leaves the request as it was."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from exchange.errors import BadInput, Refused
from exchange.sharing import machine
from exchange.sharing.models import (
    Decision,
    DisputeDecision,
    ItemScope,
    RequestForm,
    Resubmission,
    SharingRequest,
)
from exchange.sharing.workdays import add_workdays, local_date, workdays_between

DEPARTMENT, OFFICE, OTHER_OFFICE, AUTHORITY = "js.public_security", "shanghai.data_office", "anhui.data_office", \
    "authority"
ACTORS = st.sampled_from([DEPARTMENT, OFFICE, OTHER_OFFICE, AUTHORITY, "hub", "zj.other_department"])
TEXT = st.sampled_from(["", "  ", "授权书", "the purpose is unclear"])
FORM = RequestForm(department=DEPARTMENT,
                   items=[ItemScope(item="YRD-DZZZ-000101-SH", columns=["license_id", "status"])],
                   purpose="核验证照", legal_basis="条例第十条", period_until=date(2026, 12, 1),
                   sharing_method="online_query", contact="张三")

# Which state may follow which (the diagram in exchange/sharing/machine.py), plus staying put (statements, escalation).
EDGES = {("submitted", "returned"), ("returned", "submitted"), ("submitted", "approved"), ("submitted", "refused"),
         ("submitted", "withdrawn"), ("returned", "withdrawn"), ("refused", "disputed"), ("disputed", "refused"),
         ("disputed", "submitted"), ("approved", "closed")}


def _new(filed: datetime) -> SharingRequest:
    return machine.new_request("req-20260105-abcdef", FORM, OFFICE, filed, local_date(filed), 3, 10)


class Requests(RuleBasedStateMachine):
    """One request, many parties, many attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2026, 1, 5, 2, tzinfo=UTC)
        self.req = _new(self.now)
        self.steps = 1
        self.terminal_seen = False

    def _try(self, step: object) -> None:
        before = self.req
        try:
            after = step() if callable(step) else None
        except (Refused, BadInput):
            assert self.req == before  # a refused step changes nothing
            return
        assert isinstance(after, SharingRequest)
        assert (before.state, after.state) in EDGES or before.state == after.state, (before.state, after.state)
        assert not self.terminal_seen, f"a step succeeded on a {before.state} request"
        assert len(after.history) == len(before.history) + 1
        self.req = after

    @rule(days=st.integers(min_value=0, max_value=3))
    def time_passes(self, days: int) -> None:
        self.now += timedelta(days=days)

    @rule(office=ACTORS, outcome=st.sampled_from(["approve", "refuse", "return"]), reason=TEXT,
          missing=st.lists(TEXT, max_size=2), stale=st.booleans())
    def decide(self, office: str, outcome: str, reason: str, missing: list[str], stale: bool) -> None:
        seq = len(self.req.history) - (1 if stale else 0)
        decision = Decision(request_id=self.req.id, seq=max(seq, 1), office=office, outcome=outcome,  # type: ignore[arg-type]
                            reason=reason, missing=missing, decided_at=self.now, nonce="n")
        self._try(lambda: machine.apply_decision(self.req, decision, "d"))

    @rule(actor=ACTORS)
    def resubmit(self, actor: str) -> None:
        due = machine.deadlines(self.req, local_date(self.now)) if self.req.state == "returned" else None
        self._try(lambda: machine.resubmit(self.req, actor, Resubmission(materials=["授权书"]), self.now))
        if due is not None and self.req.state == "submitted" and self.req.history[-1].action == "resubmit":
            # The clock resumed with exactly the working days it had left.
            assert machine.deadlines(self.req).reply == due.reply

    @rule(actor=ACTORS)
    def withdraw(self, actor: str) -> None:
        self._try(lambda: machine.withdraw(self.req, actor, self.now))

    @rule(actor=ACTORS, statement=TEXT)
    def dispute(self, actor: str, statement: str) -> None:
        self._try(lambda: machine.raise_dispute(self.req, actor, statement, self.now))

    @rule(actor=ACTORS, statement=TEXT)
    def statement(self, actor: str, statement: str) -> None:
        self._try(lambda: machine.office_statement(self.req, actor, statement, self.now))

    @rule(actor=ACTORS, outcome=st.sampled_from(["uphold", "overturn"]), reasoning=TEXT, stale=st.booleans())
    def decide_dispute(self, actor: str, outcome: str, reasoning: str, stale: bool) -> None:
        d = DisputeDecision(request_id=self.req.id, seq=max(len(self.req.history) - stale, 1), authority=actor,
                            outcome=outcome, reasoning=reasoning, evidence_sha256="e", decided_at=self.now,  # type: ignore[arg-type]
                            nonce="n")
        self._try(lambda: machine.decide_dispute(self.req, d, "d", None))

    @rule(actor=ACTORS, reason=st.sampled_from(["purpose_met", "period_ended", "revoked"]))
    def close(self, actor: str, reason: str) -> None:
        self._try(lambda: machine.close(self.req, actor, reason, self.now))  # type: ignore[arg-type]

    @rule()
    def escalate(self) -> None:
        self._try(lambda: machine.escalate(self.req, local_date(self.now), self.now))

    @invariant()
    def only_legal_states(self) -> None:
        r = self.req
        assert r.state in {"submitted", "returned", "approved", "refused", "withdrawn", "disputed", "closed"}
        assert [h.seq for h in r.history] == list(range(1, len(r.history) + 1))
        actions = [h.action for h in r.history]
        assert actions[0] == "file" and actions.count("file") == 1
        assert actions.count("return") <= 1 and r.returned_once == ("return" in actions)
        assert actions.count("dispute") <= 1 and actions.count("escalate") <= 1
        if r.state == "refused":
            assert r.refusal_reason and r.refusal_reason.strip()
        if r.state == "returned":
            assert r.returned_on is not None and r.missing
        if r.state in ("approved", "closed"):
            assert r.approved_scope and r.approved_until is not None and r.approved_until <= r.form.period_until
        if r.state == "disputed":
            assert r.dispute is not None and r.dispute.department_statement.strip()
        for h in r.history:  # every step was taken by the party allowed to take it
            if h.action in ("resubmit", "withdraw", "dispute"):
                assert h.actor == DEPARTMENT
            if h.action in ("return", "refuse", "office_statement") or (h.action == "approve" and h.actor != "hub"):
                assert h.actor == OFFICE
            if h.action == "decide_dispute":
                assert h.actor == AUTHORITY
        assert r.paused_workdays >= 0
        self.terminal_seen = r.state in ("withdrawn", "closed")


TestRequests = Requests.TestCase
TestRequests.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_a_returned_request_resumes_with_the_working_days_it_had_left() -> None:
    filed = datetime(2026, 11, 2, 2, tzinfo=UTC)  # a Monday
    req = _new(filed)
    before = machine.deadlines(req)
    returned = machine.apply_decision(req, Decision(request_id=req.id, seq=1, office=OFFICE, outcome="return",
                                                    missing=["授权书"], decided_at=filed + timedelta(days=1),
                                                    nonce="n"), "d")
    back = filed + timedelta(days=8)
    resumed = machine.resubmit(returned, DEPARTMENT, Resubmission(materials=["授权书"]), back)
    paused = workdays_between(local_date(filed + timedelta(days=1)), local_date(back))
    assert resumed.paused_workdays == paused == 5  # Wed 4 .. Tue 10 November
    assert machine.deadlines(resumed).reply == add_workdays(before.reply, paused)


def test_a_second_return_a_replay_and_a_decision_on_a_withdrawn_request_are_refused() -> None:
    at = datetime(2026, 11, 2, 2, tzinfo=UTC)
    req = _new(at)
    first = Decision(request_id=req.id, seq=1, office=OFFICE, outcome="return", missing=["a"], decided_at=at, nonce="1")
    returned = machine.apply_decision(req, first, "d")
    again = machine.resubmit(returned, DEPARTMENT, Resubmission(materials=["a"]), at)
    with pytest.raises(machine.IllegalStep, match="already returned once"):
        machine.apply_decision(again, first.model_copy(update={"seq": 3}), "d")
    with pytest.raises(machine.IllegalStep, match="replayed or stale"):
        machine.apply_decision(again, first.model_copy(update={"outcome": "approve"}), "d")
    gone = machine.withdraw(again, DEPARTMENT, at)
    with pytest.raises(machine.IllegalStep, match="withdrawn"):
        machine.apply_decision(gone, first.model_copy(update={"seq": 4, "outcome": "approve"}), "d")
