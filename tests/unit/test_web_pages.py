"""The web pages over FastAPI's TestClient: login and sessions, CSRF, wrong parties, escaping, bad input."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.access.models import Department
from exchange.access.registry import Registry
from exchange.api.app import create_app
from exchange.catalogue.store import Catalogue
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.provenance.log import ProvenanceEntry
from exchange.sharing.models import HistoryEntry, ItemScope, RequestForm, SharingRequest
from exchange.sharing.parties import issue
from exchange.sharing.service import SharingService, catalogue_dir, sharing_dir
from exchange.sharing.store import SharingStore
from exchange.web import forms
from exchange.web.pages import TEMPLATES
from exchange.web.session import SESSION_COOKIE, decode_session, encode_session, session_key

DEPARTMENT = "js.public_security"
ITEM = "YRD-DZZZ-000101-SH"
OFFICE = "shanghai.data_office"
Page = Any  # what TestClient answers (httpx2's Response in this Starlette)
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Parties:
    """A hub with a published catalogue, one department, two offices and the authority, each with a token."""

    def __init__(self, home: Path) -> None:
        self.hub = Hub(ExchangeSettings(home=home))
        registry = Registry(self.hub.layout.access)
        registry.add_department(Department(id=DEPARTMENT, name="江苏省公安厅", province="jiangsu"))
        Catalogue(catalogue_dir(self.hub)).publish(self.hub.keyring.signer)
        store = SharingStore(sharing_dir(self.hub))
        department = registry.issue_token(DEPARTMENT)[1]
        self.tokens = {"department": department, "office": issue(store, OFFICE)[1],
                       "other_office": issue(store, "anhui.data_office")[1], "authority": issue(store, "authority")[1]}
        self.app = create_app(self.hub)

    def client(self, who: str | None = None) -> TestClient:
        """A browser; logged in as `who` unless None."""
        client = TestClient(self.app, follow_redirects=False)
        if who is not None:
            answer = login(client, self.tokens[who])
            assert answer.status_code == 303, answer.text
        return client

    def log(self, action: str) -> list[ProvenanceEntry]:
        return [e for e in self.hub.log.read() if e.action == action]


def login(client: TestClient, token: str) -> Page:
    page = client.get("/web/login")
    assert page.status_code == 200
    match = CSRF.search(page.text)
    assert match is not None
    return client.post("/web/login", data={"token": token, "csrf": match[1]})


def csrf_of(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match is not None, path
    return match[1]


def request_fields(**override: str | list[str]) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {
        "item": ITEM, "columns": ["license_id", "status"], "purpose": "跨省通办核验",
        "legal_basis": "《政务数据共享条例》",
        "period_until": (date.today() + timedelta(days=90)).isoformat(), "sharing_method": "online_query",
        "contact": "张三 021-12345678", "materials": "申请函\n授权书"}
    return {**fields, **override}


def file(client: TestClient, **override: str | list[str]) -> Page:
    csrf = csrf_of(client, f"/web/requests/new?item={ITEM}")
    return client.post("/web/requests", data={**request_fields(**override), "csrf": csrf})


@pytest.fixture
def parties(home: Path) -> Parties:
    return Parties(home)


def test_login_sets_a_strict_httponly_session_cookie_without_the_token(parties: Parties) -> None:
    client = TestClient(parties.app, follow_redirects=False)
    assert client.get("/web/requests").headers["location"] == "/web/login"
    answer = login(client, parties.tokens["department"])
    assert answer.status_code == 303 and answer.headers["location"] == "/web/requests"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/web" in cookie
    secret = parties.tokens["department"].split(".", 1)[1]
    assert secret not in cookie and parties.tokens["department"] not in cookie
    page = client.get("/web/requests")
    assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
    assert "我的申请" in page.text and "My requests" in page.text and DEPARTMENT in page.text
    assert secret not in page.text


def test_each_party_lands_on_its_own_page_and_other_pages_are_403(parties: Parties) -> None:
    for who, home in [("office", "/web/review"), ("authority", "/web/authority"), ("department", "/web/requests")]:
        client = parties.client(who)
        assert client.get("/web/").headers["location"] == home
        assert client.get(home).status_code == 200
        for other in {"/web/review", "/web/authority", "/web/requests"} - {home}:
            refused = client.get(other)
            assert refused.status_code == 403, (who, other)
            assert "无权访问" in refused.text and "Forbidden" in refused.text
    logged = parties.log("request_refused")
    assert len(logged) == 6 and all(e.details["attempt"].startswith("open ") for e in logged)


def test_a_wrong_token_is_refused_and_counted_in_the_log(parties: Parties) -> None:
    client = TestClient(parties.app, follow_redirects=False)
    answer = login(client, parties.tokens["office"][:-2] + "xx")
    assert answer.status_code == 401 and "令牌无效" in answer.text
    assert SESSION_COOKIE not in client.cookies
    denied = parties.log("access_denied")
    assert [e.actor for e in denied] == ["anonymous"] and "secret is wrong" in denied[0].details["reason"]


def test_a_login_post_without_the_forms_csrf_token_is_refused(parties: Parties) -> None:
    client = TestClient(parties.app, follow_redirects=False)
    client.get("/web/login")
    answer = client.post("/web/login", data={"token": parties.tokens["department"], "csrf": "0" * 64})
    assert answer.status_code == 401 and SESSION_COOKIE not in client.cookies
    assert "CSRF" in parties.log("access_denied")[0].details["reason"]


def test_tampered_expired_or_revoked_sessions_go_back_to_login(parties: Parties) -> None:
    client = parties.client("department")
    value = client.cookies[SESSION_COOKIE]
    key = session_key(parties.hub.layout.home)
    session = decode_session(key, value)
    assert session is not None and session.actor == DEPARTMENT
    assert decode_session(key, value, now=session.expires_at + timedelta(seconds=1)) is None
    other = session.model_copy(update={"actor": "zj.health"})
    forgeries = [encode_session(b"not the server's key" * 2, other),  # signed with another key
                 encode_session(key, other).split(".")[0] + "." + value.split(".")[1],  # payload swapped
                 value + "0", "garbage", ""]
    browser = TestClient(parties.app, follow_redirects=False)
    for forged in forgeries:
        answer = browser.get("/web/requests", headers={"cookie": f"{SESSION_COOKIE}={forged}"})
        assert answer.status_code == 303 and answer.headers["location"] == "/web/login", forged
    assert browser.get("/web/requests", headers={"cookie": f"{SESSION_COOKIE}={value}"}).status_code == 200
    assert client.get("/web/requests").status_code == 200
    Registry(parties.hub.layout.access).revoke_token(session.token_id)
    assert client.get("/web/requests").headers["location"] == "/web/login"


@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "非ASCII令牌", "other-session"])
def test_a_post_without_the_sessions_csrf_token_is_refused_and_logged(parties: Parties, csrf: str | None) -> None:
    client = parties.client("department")
    if csrf == "other-session":
        csrf = csrf_of(parties.client("department"), "/web/requests")
    data = request_fields()
    if csrf is not None:
        data["csrf"] = csrf
    answer = client.post("/web/requests", data=data)
    assert answer.status_code == 403 and "CSRF" in answer.text
    refused = parties.log("request_refused")
    assert [(e.actor, e.details["attempt"]) for e in refused] == [(DEPARTMENT, "web form /web/requests")]
    assert SharingService(parties.hub).requests() == [], "nothing was filed"


def test_file_return_resubmit_approve_through_the_pages(parties: Parties) -> None:
    department, office = parties.client("department"), parties.client("office")
    filed = file(department)
    assert filed.status_code == 303
    path = filed.headers["location"]
    rid = path.rsplit("/", 1)[1]
    page = department.get(path)
    assert 'data-state="submitted"' in page.text and "跨省通办核验" in page.text
    queue = office.get("/web/review")
    assert rid in queue.text and "Awaiting your decision" in queue.text
    assert parties.client("other_office").get(path).status_code == 403

    csrf = csrf_of(office, path)
    returned = office.post(f"{path}/decision",
                           data={"csrf": csrf, "outcome": "return", "missing": "授权书原件\n盖章页"})
    assert returned.status_code == 303
    page = department.get(path)
    assert 'data-state="returned"' in page.text and "授权书原件" in page.text and 'id="resubmit-form"' in page.text
    resubmitted = department.post(f"{path}/resubmit",
                                  data={"csrf": csrf_of(department, path), "materials": "授权书原件\n盖章页"})
    assert resubmitted.status_code == 303
    approved = office.post(f"{path}/decision", data={"csrf": csrf_of(office, path), "outcome": "approve",
                                                      "approved_columns": ["status"]})
    assert approved.status_code == 303
    page = department.get(path)
    assert 'data-state="approved"' in page.text and f"{rid}.1" in page.text

    service = SharingService(parties.hub)
    req = service.get(rid)
    assert req.approved_scope is not None and req.approved_scope[0].columns == ["status"]
    decisions = service.decisions(req)
    assert [d.decision.outcome for d in decisions] == ["return", "approve"]
    owners = {k.key_id: k.owner for k in parties.hub.keyring.trust_bundle().keys}
    assert {owners[d.signature.key_id] for d in decisions} == {OFFICE}
    logged = [(e.action, e.actor) for e in parties.hub.log.read() if e.subject == rid]
    assert logged == [("request_file", DEPARTMENT), ("request_refused", "anhui.data_office"),
                      ("request_decision", OFFICE), ("request_resubmit", DEPARTMENT), ("request_decision", OFFICE)]


def test_refuse_needs_a_reason_then_dispute_and_the_authority_decides(parties: Parties) -> None:
    department, office, authority = (parties.client(w) for w in ("department", "office", "authority"))
    path = file(department).headers["location"]
    rid = path.rsplit("/", 1)[1]
    no_reason = office.post(f"{path}/decision", data={"csrf": csrf_of(office, path), "outcome": "refuse"})
    assert no_reason.status_code == 400 and "理由（reason）：必填 / reason: is required" in no_reason.text
    assert 'id="decision-form"' in no_reason.text, "the page again, with its form"
    office.post(f"{path}/decision",
                data={"csrf": csrf_of(office, path), "outcome": "refuse", "reason": "用途与数据无关"})
    assert department.post(f"{path}/dispute", data={"csrf": csrf_of(department, path), "statement": "用途合法"}
                           ).status_code == 303
    office.post(f"{path}/statement", data={"csrf": csrf_of(office, path), "statement": "目的超出范围"})
    page = authority.get(path)
    assert "用途合法" in page.text and "目的超出范围" in page.text and 'id="evidence-log"' in page.text
    assert rid in authority.get("/web/authority").text
    decided = authority.post(f"{path}/dispute-decision", data={"csrf": csrf_of(authority, path), "outcome": "uphold",
                                                                 "reasoning": "拒绝理由成立"})
    assert decided.status_code == 303
    assert 'data-state="refused"' in department.get(path).text
    assert [e.actor for e in parties.log("dispute_decide")] == ["authority"]


def test_bad_form_input_shows_the_form_again_with_one_bilingual_line(parties: Parties) -> None:
    department = parties.client("department")
    cases: list[tuple[dict[str, str | list[str]], int, str]] = [
        ({"purpose": "  "}, 400, "用途（purpose）：必填 / purpose: is required"),
        ({"columns": []}, 400, "字段（columns）：至少选择一个字段 / columns: choose at least one column"),
        ({"period_until": "next year"}, 400, "使用期限（period_until）：日期格式应为 YYYY-MM-DD"),
        ({"scope_column": "status", "scope_op": "between", "scope_values": "x"}, 400, "scope_values: between needs"),
        ({"columns": ["license_id", "no_such_column"]}, 403, "未通过 / Refused:")]  # the policy's refusal
    for override, status, line in cases:
        answer = file(department, **override)
        text = answer.text
        assert answer.status_code == status, (override, text)
        errors = re.findall(r'<p class="error" id="error" role="alert">(.*?)</p>', text, re.S)
        assert len(errors) == 1 and "\n" not in errors[0] and line in errors[0], (override, errors)
        assert 'id="request-form"' in text and 'value="张三 021-12345678"' in text, "the form again, as filled in"
    assert len(parties.log("request_refused")) == len(cases)
    assert SharingService(parties.hub).requests() == []


def test_values_are_escaped_on_every_page(parties: Parties) -> None:
    department, office = parties.client("department"), parties.client("office")
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    path = file(department, purpose=evil, contact=evil).headers["location"]
    for client in (department, office):
        for page in (path, "/web/review" if client is office else "/web/requests"):
            text = client.get(page).text
            assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;" in department.get(path).text


class _Text(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.id, self.depth, self.text = element_id, 0, ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth or ("id", self.id) in attrs:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        self.depth = max(0, self.depth - 1)

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text += data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80))
def test_any_purpose_renders_as_exactly_that_text(purpose: str) -> None:
    """Whatever a department types, the page shows it as text: no markup of its own survives."""
    at = datetime(2026, 12, 1, tzinfo=UTC)
    form = RequestForm.model_construct(department=DEPARTMENT, items=[ItemScope(item=ITEM, columns=["status"])],
                                       purpose=purpose, legal_basis="x", period_until=date(2027, 1, 1),
                                       sharing_method="online_query", contact="c", materials=[])
    req = SharingRequest(id="req-1", form=form, provider_office=OFFICE, state="submitted", filed_at=at,
                         clock_from=at.date(), filed_on_workday=True, review_days=3, reply_days=10,
                         history=[HistoryEntry(seq=1, action="file", actor=DEPARTMENT, at=at)])
    html = TEMPLATES.env.get_template("request.html").render(
        session=None, csrf="", req=req, review=date(2026, 12, 4), reply=date(2026, 12, 15), overdue=None,
        state_zh={"submitted": "待审核"}, action_zh={"file": "提交"}, method_zh={"online_query": "联机查询"},
        attribute_zh={}, role_zh={}, Role=None, evidence=None, items={}, error="")
    parser = _Text("purpose")
    parser.feed(html)
    assert parser.text == purpose


def test_field_errors_name_the_field_in_both_languages() -> None:
    with pytest.raises(forms.FieldError) as bad:
        forms.decision({"outcome": ["return"]}, [])
    assert str(bad.value) == ("缺少的材料（missing）：一次性逐行列出全部缺少的材料 / "
                              "missing: list everything missing, one a line, at once")
    assert bad.value.field == "missing"
    with pytest.raises(forms.FieldError, match="outcome"):
        forms.dispute_decision({"outcome": ["maybe"], "reasoning": ["r"]})
    asked = [ItemScope(item=ITEM, columns=["license_id", "status"])]
    narrowed = forms.decision({"outcome": ["approve"], "approved_columns": ["status", "injected"]}, asked)
    assert narrowed.narrowed == [ItemScope(item=ITEM, columns=["status"])], "only columns asked for can be approved"


def test_pages_forbid_framing_scripts_and_caching_and_unknown_things_are_404_pages(parties: Parties) -> None:
    department = parties.client("department")
    for path in ("/web/requests", "/web/catalogue", f"/web/catalogue/{ITEM}", "/web/requests/new"):
        page = department.get(path)
        assert page.status_code == 200, path
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"] and "script-src" not in \
            page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text and "http://" not in page.text and "https://" not in page.text, path
    missing = department.get("/web/requests/req-20260101-deadbeef")
    assert missing.status_code == 404 and "未找到 / Not found" in missing.text.replace("</span> / <span lang=\"en\">",
                                                                                      " / ")
    assert department.get("/web/catalogue/NO-SUCH-ITEM").status_code == 404
    no_page = department.get("/web/no-such-page")
    assert no_page.status_code == 404 and no_page.headers["content-type"].startswith("text/html")
    assert department.get("/v1/no-such-endpoint").json()["error"] == "not_found"
    assert department.get("/v1/requests/req-20260101-deadbeef").headers["content-type"] == "application/json", \
        "the API keeps answering JSON"


def test_after_log_out_a_copy_of_the_cookie_is_refused(parties: Parties) -> None:
    client = parties.client("office")
    copied = client.cookies[SESSION_COOKIE]
    answer = client.post("/web/logout", data={"csrf": csrf_of(client, "/web/review")})
    assert answer.status_code == 303 and answer.headers["location"] == "/web/login"
    other = TestClient(parties.app, follow_redirects=False)
    assert other.get("/web/review", headers={"cookie": f"{SESSION_COOKIE}={copied}"}).headers["location"] == \
        "/web/login"
    assert parties.client("office").get("/web/review").status_code == 200, "a new login works"


def test_repeated_wrong_logins_from_one_address_are_limited(parties: Parties) -> None:
    from exchange.api.ratelimit import Rate, RejectedClients

    app = create_app(parties.hub, rejected=RejectedClients(Rate(0.001, 2), interval=60))
    client = TestClient(app, follow_redirects=False)
    answers = [login(client, parties.tokens["department"][:-3] + "xyz") for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 429, 429]
    assert int(answers[-1].headers["retry-after"]) > 0 and "令牌无效" in answers[-1].text
    assert len(parties.log("access_denied")) == 1, "the first at once; the rest aggregated, not one entry each"
