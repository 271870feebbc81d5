"""The sharing web pages as each party uses them: Debian's Chromium, driven by Playwright, against the hub's
API under a real uvicorn server on a loopback port. File, return, resubmit, approve, refuse, dispute: each
step is taken by clicking through the pages, and checked both on the page and in the provenance log."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange.access.models import Department
from exchange.access.registry import Registry
from exchange.catalogue.store import Catalogue
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.provenance.log import ProvenanceEntry
from exchange.sharing.models import ItemScope, RequestForm
from exchange.sharing.parties import issue
from exchange.sharing.service import SharingService, catalogue_dir, sharing_dir
from exchange.sharing.store import SharingStore
from tests.integration.serving import serving
from tests.integration.test_report_in_chromium import CHROMIUM, CHROMIUM_ARGS, OVERFLOWING, assert_drawn_in_a_cjk_font

pytestmark = pytest.mark.integration

DEPARTMENT = "js.public_security"
ITEM = "YRD-DZZZ-000101-SH"
OFFICE = "shanghai.data_office"
AUTHORITY = "authority"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Site:
    url: str
    hub: Hub
    tokens: dict[str, str]
    requested: list[str]

    def entries(self, subject: str) -> list[ProvenanceEntry]:
        return [e for e in self.hub.log.read() if e.subject == subject]


@pytest.fixture
def site(home: Path) -> Iterator[Site]:
    """A hub with its catalogue published, one department, the providing office, another office and the
    authority (each with its token), served by uvicorn on an ephemeral loopback port."""
    hub = Hub(ExchangeSettings(home=home))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEPARTMENT, name="江苏省公安厅", province="jiangsu"))
    Catalogue(catalogue_dir(hub)).publish(hub.keyring.signer)
    store = SharingStore(sharing_dir(hub))
    tokens = {DEPARTMENT: registry.issue_token(DEPARTMENT)[1], OFFICE: issue(store, OFFICE)[1],
              "anhui.data_office": issue(store, "anhui.data_office")[1], AUTHORITY: issue(store, AUTHORITY)[1]}
    with serving(hub) as url:
        site = Site(url, hub, tokens, [])
        yield site
    # Every page opened only the hub's own addresses (no CDN), and no token ever went into a URL.
    assert site.requested and all(u.startswith(site.url + "/web/") for u in site.requested), site.requested
    assert not any(t.split(".", 1)[1] in u for t in tokens.values() for u in site.requested)


def as_party(browser: Any, site: Site, party: str) -> Any:
    """A fresh browser context (its own cookies) logged in through the login form as `party`."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.on("request", lambda r: site.requested.append(r.url))
    page.goto(site.url + "/web/")
    assert page.url == site.url + "/web/login"
    page.fill("#token", site.tokens[party])
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state()
    assert party in page.locator("#who").inner_text()
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "exchange_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert site.tokens[party].split(".", 1)[1] not in session["value"]
    return page


def state(page: Any) -> str:
    return str(page.locator("#state").get_attribute("data-state"))


def file_request(page: Any, site: Site, purpose: str = "跨省通办身份核验") -> str:
    """The department files a request through the form; the new request's id."""
    page.click("#nav-requests")
    page.click("#new-request")
    page.select_option("#choose", ITEM)
    page.click("#choose-item button")
    page.check('#columns input[value="license_id"]')
    page.check('#columns input[value="status"]')
    page.fill("#purpose", purpose)
    page.fill("#legal_basis", "《政务数据共享条例》第十五条")
    page.fill("#period_until", (date.today() + timedelta(days=60)).isoformat())
    page.select_option("#sharing_method", "online_query")
    page.fill("#contact", "张三 025-12345678")
    page.fill("#materials", "共享申请函")
    page.click("#file")
    page.wait_for_load_state()
    assert "/web/requests/req-" in page.url, page.content()
    assert state(page) == "submitted" and page.locator("#state").inner_text() == "待审核 / submitted"
    assert page.locator("#purpose").inner_text() == purpose
    rid = page.url.rsplit("/", 1)[1]
    assert [(e.action, e.actor) for e in site.entries(rid)] == [("request_file", DEPARTMENT)]
    return rid


def open_from_list(page: Any, nav: str, table: str, rid: str) -> None:
    page.click(nav)
    row = page.locator(f'#{table} tr[data-request="{rid}"]')
    assert row.is_visible(), f"{rid} is not listed in #{table}"
    row.locator("a").first.click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/web/requests/{rid}")


def test_file_return_resubmit_approve(browser: Any, site: Site) -> None:
    department = as_party(browser, site, DEPARTMENT)
    rid = file_request(department, site)

    office = as_party(browser, site, OFFICE)
    open_from_list(office, "#nav-review", "waiting", rid)
    assert office.locator("#review-deadline").inner_text() <= office.locator("#reply-deadline").inner_text()[:10]
    office.check("#outcome-return")
    office.fill("#missing-list", "加盖公章的授权书\n数据安全承诺书")
    office.click("#decide")
    office.wait_for_load_state()
    assert state(office) == "returned"
    assert office.locator("#missing li").all_inner_texts() == ["加盖公章的授权书", "数据安全承诺书"]
    assert office.locator("#outcome-return").count() == 0, "returned once: the page offers no second return"
    returned = site.entries(rid)[-1]
    assert (returned.action, returned.actor, returned.details["outcome"]) == ("request_decision", OFFICE, "return")
    assert returned.details["missing"] == ["加盖公章的授权书", "数据安全承诺书"] and returned.digests["decision"]

    department.reload()
    assert state(department) == "returned" and department.locator("#resubmit-form").is_visible()
    department.fill("#materials", "加盖公章的授权书\n数据安全承诺书")
    department.click("#resubmit")
    department.wait_for_load_state()
    assert state(department) == "submitted"
    assert site.entries(rid)[-1].action == "request_resubmit" and site.entries(rid)[-1].actor == DEPARTMENT

    office.reload()
    office.check("#outcome-approve")
    office.check('#approved-columns input[value="status"]')  # narrowed: only one of the two columns asked for
    office.click("#decide")
    office.wait_for_load_state()
    assert state(office) == "approved" and office.locator("#grants").inner_text() == f"{rid}.1"
    assert "license_id" not in office.locator("#approved").inner_text()
    approved = site.entries(rid)
    decision = next(e for e in reversed(approved) if e.action == "request_decision")
    assert (decision.actor, decision.details["outcome"]) == (OFFICE, "approve")
    assert decision.details["grants"] == [f"{rid}.1"]
    assert [e.action for e in site.hub.log.read() if e.subject == f"{rid}.1"] == ["grant"]

    # The decisions were signed by the office's key, as the CLI's and the API's are.
    service = SharingService(site.hub)
    owners = {k.key_id: k.owner for k in site.hub.keyring.trust_bundle().keys}
    signed = service.decisions(service.get(rid))
    assert [(s.decision.outcome, owners[s.signature.key_id]) for s in signed] == [("return", OFFICE),
                                                                                  ("approve", OFFICE)]

    department.click("#nav-requests")
    row = department.locator(f'#my-requests tr[data-request="{rid}"]')
    assert row.get_attribute("data-state") == "approved" and "已批准 / approved" in row.inner_text()

    # Purpose met: the department closes the request and its grant ends at once.
    row.locator("a").first.click()
    department.fill("#close-note", "核验工作已完成")
    department.click("#close")
    department.wait_for_load_state()
    assert state(department) == "closed"
    closed = site.entries(rid)[-1]
    assert (closed.action, closed.actor, closed.details["grants"]) == ("grant_close", DEPARTMENT, [f"{rid}.1"])
    assert f"{rid}.1" in Registry(site.hub.layout.access).revoked_grants()


def test_chinese_headings_render_in_a_cjk_font(browser: Any, site: Site) -> None:
    """What Chromium says it drew the page's Chinese with: a CJK font from the page's own stack (no tofu)."""
    page = as_party(browser, site, DEPARTMENT)
    page.click("#nav-catalogue")
    heading = page.locator('h1 span[lang="zh-CN"]')
    text = heading.inner_text()
    assert text == "政务数据目录" and page.locator("html").get_attribute("lang") == "zh-CN"
    assert_drawn_in_a_cjk_font(page, 'h1 span[lang="zh-CN"]')


def test_refuse_dispute_and_the_authority_decides(browser: Any, site: Site) -> None:
    department = as_party(browser, site, DEPARTMENT)
    rid = file_request(department, site, purpose="<b>核验</b> & 统计")
    assert department.locator("#purpose b").count() == 0, "typed markup is shown as text"

    office = as_party(browser, site, OFFICE)
    open_from_list(office, "#nav-review", "waiting", rid)
    office.check("#outcome-refuse")
    office.click("#decide")  # no reason: refused, the page again with one bilingual line naming the field
    office.wait_for_load_state()
    assert office.locator("#error").inner_text() == "理由（reason）：必填 / reason: is required"
    assert state(office) == "submitted"
    assert site.entries(rid)[-1].action == "request_refused" and site.entries(rid)[-1].details["attempt"] == "refuse"
    office.check("#outcome-refuse")
    office.fill("#reason", "申请用途与所需字段不相符")
    office.click("#decide")
    office.wait_for_load_state()
    assert state(office) == "refused" and office.locator("#refusal-reason").inner_text() == "申请用途与所需字段不相符"
    refusal = site.entries(rid)[-1]
    assert (refusal.action, refusal.actor) == ("request_decision", OFFICE)
    assert refusal.details == {"outcome": "refuse", "reason": "申请用途与所需字段不相符"}

    department.reload()
    department.fill("#statement", "字段均为核验所必需")
    department.click("#dispute")
    department.wait_for_load_state()
    assert state(department) == "disputed"
    assert department.locator("#department-statement").inner_text() == "字段均为核验所必需"
    raised = site.entries(rid)[-1]
    assert (raised.action, raised.actor, raised.details["statement"]) == ("dispute_raise", DEPARTMENT,
                                                                          "字段均为核验所必需")

    office.click("#nav-review")
    office.locator(f'#disputed tr[data-request="{rid}"] a').click()
    office.fill("#office-statement", "状态字段之外无需其他字段")
    office.click("#state-side")
    office.wait_for_load_state()
    assert site.entries(rid)[-1].action == "dispute_statement"

    authority = as_party(browser, site, AUTHORITY)
    open_from_list(authority, "#nav-authority", "disputes", rid)
    assert authority.locator("#department-statement").inner_text() == "字段均为核验所必需"
    assert authority.locator("#office-statement-text").inner_text() == "状态字段之外无需其他字段"
    logged = authority.locator("#evidence-log tbody tr td:nth-child(3)").all_inner_texts()
    assert logged[:2] == ["request_file", "request_refused"] and "dispute_statement" in logged
    assert authority.locator("#evidence-decisions tbody tr").count() == 1
    authority.check("#overturn")
    authority.fill("#reasoning", "拒绝理由不足，应重新审核")
    authority.click("#decide-dispute")
    authority.wait_for_load_state()
    assert state(authority) == "submitted", "overturned: back to the office for review"
    assert "撤销拒绝 / overturn" in authority.locator("#dispute-decision").inner_text()
    decided = site.entries(rid)[-1]
    assert (decided.action, decided.actor, decided.details["outcome"]) == ("dispute_decide", AUTHORITY, "overturn")
    assert decided.digests["evidence"] and decided.digests["decision"]

    office.click("#nav-review")
    assert office.locator(f'#waiting tr[data-request="{rid}"]').is_visible(), "in the office's queue again"


def test_overdue_wrong_party_and_forged_forms(browser: Any, site: Site) -> None:
    # A request filed 30 days ago and never answered (the clock set back, as the demo does).
    earlier = datetime.now(UTC) - timedelta(days=30)
    late = SharingService(site.hub, clock=lambda: earlier).file(RequestForm(
        department=DEPARTMENT, items=[ItemScope(item=ITEM, columns=["status"])], purpose="统计", legal_basis="条例",
        period_until=date.today() + timedelta(days=30), sharing_method="online_query", contact="李四"))
    authority = as_party(browser, site, AUTHORITY)
    authority.click("#nav-authority")
    row = authority.locator(f'#overdue tr[data-request="{late.id}"]')
    assert row.is_visible() and any(m in row.inner_text() for m in ("审核 / review", "答复 / reply"))
    office = as_party(browser, site, OFFICE)
    office.click("#nav-review")
    assert "已逾期 / overdue" in office.locator(f'#waiting tr[data-request="{late.id}"]').inner_text()

    # Another office may neither see the request nor its queue entry: a 403 page, logged.
    other = as_party(browser, site, "anhui.data_office")
    answer = other.goto(f"{site.url}/web/requests/{late.id}")
    assert answer.status == 403 and "无权访问 / Forbidden" in other.locator("#error-title").inner_text()
    assert (site.entries(late.id)[-1].action, site.entries(late.id)[-1].actor) == ("request_refused",
                                                                                   "anhui.data_office")
    assert other.goto(f"{site.url}/web/authority").status == 403

    # A form whose CSRF token was tampered with is refused and logged; the request does not move.
    office.goto(f"{site.url}/web/requests/{late.id}")
    office.evaluate("() => { for (const e of document.querySelectorAll('input[name=csrf]')) e.value = 'f'.repeat(64) }")
    office.check("#outcome-approve")
    office.click("#decide")
    office.wait_for_load_state()
    assert "表单已失效 / Form refused" in office.locator("#error-title").inner_text()
    refused = site.entries(late.id)[-1]
    assert (refused.action, refused.actor, refused.details["attempt"]) == (
        "request_refused", OFFICE, "web form /web/requests/{request_id}/decision")
    assert SharingService(site.hub).get(late.id).state == "submitted"

    # A page on another site posting to the hub: SameSite=Strict keeps the session cookie away, so nothing happens.
    attacker = office.context.new_page()
    attacker.set_content(f'<form id="f" method="post" action="{site.url}/web/requests/{late.id}/decision">'
                         '<input name="outcome" value="approve"></form>')
    with attacker.expect_navigation():
        attacker.evaluate("() => document.getElementById('f').submit()")
    assert attacker.url == f"{site.url}/web/login"
    assert SharingService(site.hub).get(late.id).state == "submitted"


@pytest.mark.parametrize("width", [1280, 760])
def test_no_page_scrolls_sideways(browser: Any, site: Site, width: int) -> None:
    department = as_party(browser, site, DEPARTMENT)
    rid = file_request(department, site)
    office = as_party(browser, site, OFFICE)
    for page, path in [(department, "/web/requests"), (department, f"/web/requests/{rid}"),
                       (department, f"/web/requests/new?item={ITEM}"), (office, "/web/review"),
                       (office, f"/web/requests/{rid}"), (office, f"/web/catalogue/{ITEM}")]:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(site.url + path)
        result = page.evaluate(OVERFLOWING)
        assert result["out"] == [] and result["scroll"] <= result["width"], (path, width, result["out"][:10])
