"""The web pages for the people who review: catalogue, my requests, review queue, overdue and disputes.

Server-rendered (Jinja2, autoescaped) on the department API's app, no JavaScript. Each party logs in once
with its bearer token (exchange.web.session: a signed HttpOnly, SameSite=Strict cookie; the token is never
kept or put in a URL); every POST carries the session's CSRF token. Every step goes through
exchange.sharing.service.SharingService, exactly as the CLI's and the API's do, so decisions are signed by the
deciding party's key and logged the same way; refusals are logged there as ``request_refused``, and so are
forms refused here (bad input, a missing or wrong CSRF token).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Any, NoReturn, TypeVar, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange.access.registry import Registry
from exchange.api.state import hub_of
from exchange.catalogue.models import ATTRIBUTE_ZH, METHOD_ZH
from exchange.errors import AccessDenied, AuthenticationFailed, ExchangeError, RateLimited, UserError, outcome
from exchange.hub import Hub
from exchange.provenance import events
from exchange.provenance.events import Role, role_of
from exchange.sharing import machine, parties
from exchange.sharing.models import SharingRequest
from exchange.sharing.service import SharingService, sharing_dir
from exchange.sharing.store import SharingStore
from exchange.sharing.workdays import workdays_between
from exchange.web import forms
from exchange.web.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    WebSession,
    csrf_ok,
    csrf_token,
    decode_session,
    encode_session,
    end_session,
    login_nonce,
    new_login_nonce,
    new_session,
    session_ended,
    session_key,
)

router = APIRouter(prefix="/web", include_in_schema=False)
TEMPLATES = Jinja2Templates(env=Environment(loader=PackageLoader("exchange.web", "templates"), autoescape=True))
CSS = resources.files("exchange.web").joinpath("static", "web.css").read_text(encoding="utf-8")

STATE_ZH = {"submitted": "待审核", "returned": "退回补正", "approved": "已批准", "refused": "已拒绝",
            "withdrawn": "已撤回", "disputed": "争议处理中", "closed": "已关闭"}
ACTION_ZH = {"file": "提交", "return": "退回补正", "resubmit": "补正后重新提交", "approve": "批准", "refuse": "拒绝",
             "withdraw": "撤回", "dispute": "提出争议", "office_statement": "提供方陈述", "decide_dispute": "争议裁决",
             "close": "关闭", "escalate": "逾期上报"}
ROLE_ZH = {Role.DEPARTMENT: "使用部门", Role.PROVINCE_OFFICE: "省数据主管部门", Role.AUTHORITY: "协调主管部门"}
HOME = {Role.DEPARTMENT: "/web/requests", Role.PROVINCE_OFFICE: "/web/review", Role.AUTHORITY: "/web/authority"}
T = TypeVar("T")
REQUEST_ID = re.compile(r"req-[0-9]{8}-[0-9a-f]{1,32}")  # the service's ids (SharingService.file)
# No script runs on these pages and nothing is loaded from elsewhere; they may not be framed (clickjacking), and
# forms post only to the hub itself. Pages hold personal details: never cached.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""


class FormRefused(Exception):
    """A POST without the session's CSRF token (already logged)."""



def _key(request: Request) -> bytes:
    key: bytes | None = getattr(request.app.state, "web_session_key", None)
    if key is None:
        key = request.app.state.web_session_key = session_key(hub_of(request).layout.home)
    return key


def _token_still_valid(hub: Hub, session: WebSession, now: datetime) -> bool:
    """The session's token is still the party's, unrevoked and unexpired (revoking a token ends its sessions)."""
    if session.role == Role.DEPARTMENT:
        token = next((t for t in Registry(hub.layout.access).tokens() if t.id == session.token_id), None)
        return (token is not None and token.department == session.actor and token.revoked_at is None
                and token.expires_at > now)
    record = parties.token(SharingStore(sharing_dir(hub)), session.token_id)
    return record is not None and record.party == session.actor and record.expires_at > now


def current(request: Request) -> WebSession:
    """The logged-in party, or LoginRequired."""
    now = datetime.now(UTC)
    session = decode_session(_key(request), request.cookies.get(SESSION_COOKIE), now)
    home = hub_of(request).layout.home
    if session is None or session_ended(home, session) or not _token_still_valid(hub_of(request), session, now):
        raise LoginRequired
    return session


def _service(request: Request) -> SharingService:
    return SharingService(hub_of(request))


def _render(request: Request, name: str, session: WebSession | None, status: int = 200,
            **context: Any) -> Response:
    csrf = csrf_token(_key(request), session.nonce) if session else ""
    return TEMPLATES.TemplateResponse(request, name, {
        "session": session, "csrf": csrf, "role_zh": ROLE_ZH, "state_zh": STATE_ZH, "action_zh": ACTION_ZH,
        "attribute_zh": ATTRIBUTE_ZH, "method_zh": METHOD_ZH, "Role": Role, **context,
    }, status_code=status, headers=PAGE_HEADERS)


def _refuse_page(service: SharingService, who: WebSession, page: str, subject: str, zh: str, en: str) -> NoReturn:
    """A page for another party: logged as request_refused, answered with the 403 page."""
    with service.refusing(who.actor, f"open {page}", subject):
        raise AccessDenied(f"{zh} / {en}")


def _only(service: SharingService, who: WebSession, role: Role, page: str) -> None:
    if who.role != role:
        _refuse_page(service, who, page, "request", f"此页面仅供{ROLE_ZH[role]}使用",
                     f"this page is for the {role.value.replace('_', ' ')} only; you are {who.actor}")


async def _posted(request: Request, who: WebSession, subject: str) -> forms.Fields:
    """The posted form, once its CSRF token is the session's; otherwise refused and logged."""
    data = await request.form()
    fields = {k: [v for v in data.getlist(k) if isinstance(v, str)] for k in data}
    if not csrf_ok(_key(request), who.nonce, next(iter(fields.get("csrf") or []), None)):
        hub = hub_of(request)
        # The route's pattern, not the path: nothing the browser chose goes into the log unchecked.
        route = getattr(request.scope.get("route"), "path", "/web/")
        await run_in_threadpool(hub.log.append, hub.signer, events.RequestRefused(
            attempt=f"web form {route}", reason="the form's CSRF token is missing or not this session's"),
            actor=who.actor, subject=subject if REQUEST_ID.fullmatch(subject) else "request")
        raise FormRefused
    return fields


@contextmanager
def _logged(service: SharingService, who: WebSession, attempt: str, subject: str) -> Iterator[None]:
    """Bad form input is refused and logged like the service's own refusals."""
    with service.refusing(who.actor, attempt, subject):
        yield


def _view(service: SharingService, req: SharingRequest) -> dict[str, Any]:
    """A request with its deadlines and working days left, as of today."""
    today = service.today()
    due = service.deadlines(req)
    return {"req": req, "review": due.review, "reply": due.reply, "overdue": machine.overdue(req, today),
            "review_left": workdays_between(today, due.review) if due.review >= today else -1,
            "reply_left": workdays_between(today, due.reply) if due.reply >= today else -1}


# --- login ---------------------------------------------------------------------------------------------------


@router.get("/web.css")
def stylesheet() -> Response:
    """The pages' one style sheet (served from the package: no CDN)."""
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


def _login_page(request: Request, error: str = "", status: int = 200) -> Response:
    key = _key(request)
    cookie = new_login_nonce(key, datetime.now(UTC))
    nonce = login_nonce(key, cookie)
    assert nonce is not None
    response = _render(request, "login.html", None, status, error=error, login_csrf=csrf_token(key, "login:" + nonce))
    response.set_cookie(LOGIN_COOKIE, cookie, httponly=True, samesite="strict", path="/web/login",
                        secure=request.url.scheme == "https")
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    """The login form: paste the bearer token your operator issued."""
    return _login_page(request)


def _prove(hub: Hub, bearer: str) -> tuple[str, Role, str, datetime]:
    """The party a bearer token proves (a province office, the authority, or a department), or AuthenticationFailed."""
    found = parties.authenticate(SharingStore(sharing_dir(hub)), bearer)
    if found is not None:
        return found.party, role_of(found.party), found.id, found.expires_at
    token = Registry(hub.layout.access).authenticate(bearer)
    return token.department, Role.DEPARTMENT, token.id, token.expires_at


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token once; the browser gets a signed session cookie, never the token."""
    from exchange.api.app import refuse_client, write_tallies

    hub = hub_of(request)
    data = await request.form()
    key = _key(request)
    nonce = login_nonce(key, request.cookies.get(LOGIN_COOKIE))
    submitted = data.get("csrf")
    if nonce is None or not csrf_ok(key, "login:" + nonce, submitted if isinstance(submitted, str) else None):
        # Anonymous: counted per client address and aggregated in the log, like a bad API token.
        refused = await run_in_threadpool(refuse_client, request, AuthenticationFailed(
            "web login form without a valid CSRF token"))
        return _login_page(request, "表单已失效，请重新登录 / The form expired or is not this browser's: log in again",
                           outcome(refused).http_status)
    token = data.get("token")
    bearer = " ".join(token.split()) if isinstance(token, str) else ""
    if not bearer:
        return _login_page(request, str(forms.FieldError("token", "请粘贴令牌", "paste your token")), 400)
    rejected = request.app.state.rejected
    await run_in_threadpool(write_tallies, hub, rejected.due())
    try:
        actor, role, token_id, expires = await run_in_threadpool(_prove, hub, bearer)
    except AuthenticationFailed as failed:
        refused = await run_in_threadpool(refuse_client, request, failed)
        page = _login_page(request, f"令牌无效 / {refused}", outcome(refused).http_status)
        if isinstance(refused, RateLimited):  # too many refused logins from this address: say when to retry
            page.headers["Retry-After"] = refused.retry_after_header
        return page
    if role not in HOME:
        return _login_page(request, "此令牌不能登录网页 / This token's party has no web pages", 403)
    session = new_session(actor, role, token_id, expires, datetime.now(UTC))
    response = RedirectResponse(HOME[role], status_code=303)
    response.set_cookie(SESSION_COOKIE, encode_session(key, session), httponly=True, samesite="strict", path="/web",
                        secure=request.url.scheme == "https",
                        max_age=int((session.expires_at - datetime.now(UTC)).total_seconds()))
    response.delete_cookie(LOGIN_COOKIE, path="/web/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session in this browser."""
    who = current(request)
    await _posted(request, who, "request")
    await run_in_threadpool(end_session, hub_of(request).layout.home, who, datetime.now(UTC))
    response = RedirectResponse("/web/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/web", httponly=True, samesite="strict")
    return response


@router.get("/")
def home(request: Request) -> Response:
    """Each party's own first page."""
    return RedirectResponse(HOME[current(request).role], status_code=303)


# --- catalogue -------------------------------------------------------------------------------------------------


@router.get("/catalogue")
def catalogue(request: Request) -> Response:
    """Every published item with its attribute, provider and methods."""
    who = current(request)
    items = [s.item for s in _service(request).catalogue.current().values()]
    return _render(request, "catalogue.html", who, items=sorted(items, key=lambda i: i.code))


@router.get("/catalogue/{code}")
def catalogue_item(code: str, request: Request) -> Response:
    """One item: its terms and its fields with classification and grade."""
    who = current(request)
    signed = _service(request).catalogue.current().get(code)
    if signed is None:
        _service(request).catalogue.item(code)  # raises NotFound naming the codes
    assert signed is not None
    return _render(request, "item.html", who, item=signed.item, signature=signed.signature)


# --- the department's pages -------------------------------------------------------------------------------


@router.get("/requests")
def my_requests(request: Request) -> Response:
    """My requests (department): their states and deadlines."""
    who = current(request)
    service = _service(request)
    _only(service, who, Role.DEPARTMENT, "my requests")
    found = sorted(service.requests(department=who.actor), key=lambda r: r.filed_at, reverse=True)
    return _render(request, "requests.html", who, views=[_view(service, r) for r in found])


def _new_form(request: Request, who: WebSession, code: str, values: dict[str, list[str]], error: str = "",
              status: int = 200) -> Response:
    service = _service(request)
    items = sorted((s.item for s in service.catalogue.current().values()), key=lambda i: i.code)
    item = next((i for i in items if i.code == code), None)
    return _render(request, "new_request.html", who, status, items=items, item=item, values=values, error=error)


@router.get("/requests/new")
def new_request(request: Request, item: str = "") -> Response:
    """The filing form: first choose the item, then its columns, scope, purpose and basis."""
    who = current(request)
    _only(_service(request), who, Role.DEPARTMENT, "file a request")
    return _new_form(request, who, item, {})


@router.post("/requests")
async def file_request(request: Request) -> Response:
    """File the request through the service (checked against the catalogue, deadlines set, logged)."""
    who = current(request)
    data = await _posted(request, who, "request")
    service = _service(request)
    _only(service, who, Role.DEPARTMENT, "file a request")
    values = {k: list(v) for k, v in data.items() if k != "csrf"}
    code = (data.get("item") or [""])[0]

    def file() -> SharingRequest:
        with _logged(service, who, "file", "request"):
            form = forms.request_form(who.actor, data)
        return service.file(form, token_id=who.token_id)

    try:
        req = await run_in_threadpool(file)
    except UserError as bad:
        return _new_form(request, who, code, values, _error_line(bad), outcome(bad).http_status)
    return RedirectResponse(f"/web/requests/{req.id}", status_code=303)


def _error_line(error: UserError) -> str:
    if isinstance(error, forms.FieldError):
        return str(error)
    return f"未通过 / Refused: {' '.join(str(error).split())}"


# --- one request: every party's actions --------------------------------------------------------------------


def _detail(request: Request, who: WebSession, request_id: str, error: str = "", status: int = 200) -> Response:
    service = _service(request)
    req = service.get(request_id)
    if not (who.role == Role.AUTHORITY or who.actor in (req.form.department, req.provider_office)):
        _refuse_page(service, who, "request", request_id, "这不是您的申请，也不是提交给您的",
                     f"request {request_id} is neither {who.actor}'s nor addressed to it")
    # The evidence bundle reads the whole log (archives too): only for a dispute, and only the authority sees it.
    evidence = service.evidence(request_id) if who.role == Role.AUTHORITY and req.dispute else None
    items = {s.item: service.catalogue.current().get(s.item) for s in req.form.items}
    return _render(request, "request.html", who, status, **_view(service, req), evidence=evidence, error=error,
                   items=items, today=service.today())


@router.get("/requests/{request_id}")
def request_page(request_id: str, request: Request) -> Response:
    """One request: the form, deadlines, history; and the forms of the steps this party may take now."""
    return _detail(request, current(request), request_id)


async def _step(request: Request, request_id: str,
                take: Callable[[SharingService, WebSession, forms.Fields], object]) -> Response:
    """Run one step from a posted form: CSRF first, then the form parsed (bad input logged), then the service."""
    who = current(request)
    data = await _posted(request, who, request_id)
    service = _service(request)

    def run() -> None:
        take(service, who, data)

    try:
        await run_in_threadpool(run)
    except UserError as bad:
        return await run_in_threadpool(_detail, request, who, request_id, _error_line(bad), outcome(bad).http_status)
    return RedirectResponse(f"/web/requests/{request_id}", status_code=303)


def _parsed(service: SharingService, who: WebSession, attempt: str, subject: str, parse: Callable[[], T]) -> T:
    with _logged(service, who, attempt, subject):
        return parse()


@router.post("/requests/{request_id}/resubmit")
async def resubmit(request_id: str, request: Request) -> Response:
    """The department sends a returned request back with the missing materials."""
    def take(service: SharingService, who: WebSession, data: forms.Fields) -> object:
        body = _parsed(service, who, "resubmit", request_id, lambda: forms.resubmission(data))
        return service.resubmit(request_id, who.actor, body)
    return await _step(request, request_id, take)


@router.post("/requests/{request_id}/withdraw")
async def withdraw(request_id: str, request: Request) -> Response:
    """The department withdraws an undecided request."""
    def take(service: SharingService, who: WebSession, data: forms.Fields) -> object:
        return service.withdraw(request_id, who.actor, " ".join((data.get("note") or [""])[0].split()))
    return await _step(request, request_id, take)


@router.post("/requests/{request_id}/dispute")
async def dispute(request_id: str, request: Request) -> Response:
    """The refused department takes the refusal to the coordinating authority."""
    def take(service: SharingService, who: WebSession, data: forms.Fields) -> object:
        text = _parsed(service, who, "dispute", request_id, lambda: forms.statement(data))
        return service.dispute(request_id, who.actor, text)
    return await _step(request, request_id, take)


@router.post("/requests/{request_id}/close")
async def close(request_id: str, request: Request) -> Response:
    """The department declares the purpose met: the request's grants end at once."""
    def take(service: SharingService, who: WebSession, data: forms.Fields) -> object:
        return service.close(request_id, who.actor, "purpose_met", " ".join((data.get("note") or [""])[0].split()))
    return await _step(request, request_id, take)


@router.post("/requests/{request_id}/decision")
async def decide(request_id: str, request: Request) -> Response:
    """The providing office approves (possibly narrowed), refuses with a reason, or returns once."""
    def take(service: SharingService, who: WebSession, data: forms.Fields) -> object:
        asked = service.get(request_id).form.items
        chosen = next(iter(data.get("outcome") or []), "")
        attempt = chosen if chosen in ("approve", "refuse", "return") else "decide"  # never a posted value as such
        d = _parsed(service, who, attempt, request_id, lambda: forms.decision(data, asked))
        return service.decide(request_id, who.actor, d.outcome, reason=d.reason, missing=d.missing,
                              narrowed=d.narrowed, period_until=d.period_until)
    return await _step(request, request_id, take)


@router.post("/requests/{request_id}/statement")
async def office_statement(request_id: str, request: Request) -> Response:
    """The providing office states its side of a dispute."""
    def take(service: SharingService, who: WebSession, data: forms.Fields) -> object:
        text = _parsed(service, who, "office_statement", request_id, lambda: forms.statement(data))
        return service.office_statement(request_id, who.actor, text)
    return await _step(request, request_id, take)


@router.post("/requests/{request_id}/dispute-decision")
async def decide_dispute(request_id: str, request: Request) -> Response:
    """The coordinating authority upholds or overturns the refusal, with its reasoning (signed with its key)."""
    def take(service: SharingService, who: WebSession, data: forms.Fields) -> object:
        result, reasoning = _parsed(service, who, "decide_dispute", request_id, lambda: forms.dispute_decision(data))
        return service.decide_dispute(request_id, who.actor, result, reasoning)
    return await _step(request, request_id, take)


# --- the office's and the authority's lists ---------------------------------------------------------------


@router.get("/review")
def review_queue(request: Request) -> Response:
    """The province office's queue: requests awaiting its review, the nearest deadline first."""
    who = current(request)
    service = _service(request)
    _only(service, who, Role.PROVINCE_OFFICE, "review queue")
    mine = service.requests(office=who.actor)
    waiting = sorted((_view(service, r) for r in mine if r.state == "submitted"),
                     key=lambda v: (v["reply"], v["review"]))
    disputed = [_view(service, r) for r in mine if r.state == "disputed"]
    returned = [_view(service, r) for r in mine if r.state == "returned"]
    decided = [_view(service, r) for r in mine if r.state in ("approved", "refused", "withdrawn", "closed")]
    return _render(request, "review.html", who, waiting=waiting, disputed=disputed, returned=returned,
                   decided=decided)


@router.get("/authority")
def authority(request: Request) -> Response:
    """The coordinating authority's page: overdue requests and disputes awaiting its decision."""
    who = current(request)
    service = _service(request)
    _only(service, who, Role.AUTHORITY, "overdue and disputes")
    disputes = [_view(service, r) for r in service.requests(state="disputed")]
    decided = [_view(service, r) for r in service.requests() if r.dispute and r.dispute.decision]
    return _render(request, "authority.html", who, overdue=service.overdue(), disputes=disputes, decided=decided)


# --- wiring ----------------------------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Add the pages to the API's app: the router, and HTML answers for errors on /web/ paths."""
    app.include_router(router)
    api_error = app.exception_handlers.get(ExchangeError)

    def redirect_to_login(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/web/login", status_code=303)

    def form_refused(request: Request, exc: Exception) -> Response:
        return _render(request, "error.html", None, 403, title_zh="表单已失效", title_en="Form refused",
                       message="表单的防跨站令牌缺失或错误，已记录；请返回页面重试。 / The form's CSRF token is "
                               "missing or wrong; this was logged. Go back, reload the page and try again.")

    def page_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/web/") or not isinstance(exc, ExchangeError):
            assert api_error is not None
            return cast(Response, api_error(request, exc))  # the API's JSON answer (a plain def in app.py)
        status = outcome(exc).http_status
        try:
            who: WebSession | None = current(request)
        except LoginRequired:
            who = None
        titles = {403: ("无权访问", "Forbidden"), 404: ("未找到", "Not found"), 400: ("输入有误", "Bad input")}
        zh, en = titles.get(status, ("出错", "Error"))
        return _render(request, "error.html", who, status, title_zh=zh, title_en=en, message=str(exc))

    api_http_error = app.exception_handlers.get(StarletteHTTPException)

    def unknown_page(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/web/") or not isinstance(exc, StarletteHTTPException):
            assert api_http_error is not None
            return cast(Response, api_http_error(request, exc))
        return _render(request, "error.html", None, exc.status_code, title_zh="未找到" if exc.status_code == 404
                       else "出错", title_en="Not found" if exc.status_code == 404 else "Error",
                       message=f"{exc.status_code}: {request.url.path}")

    app.add_exception_handler(LoginRequired, redirect_to_login)
    app.add_exception_handler(StarletteHTTPException, unknown_page)
    app.add_exception_handler(FormRefused, form_refused)
    app.add_exception_handler(ExchangeError, page_error)
