"""The department API: bearer-token auth, my grants and datasets, sandboxed queries, extracts, downloads.

`create_app(hub)` builds the app (the OpenAPI document is generated from the routes and models in
exchange/api/models.py). Endpoints are plain `def`, so FastAPI runs the DuckDB work in its thread
pool. The app shares one read-only lake attachment between requests for short leases
(exchange/access/lakeshare.py) and keeps query sandboxes per grant views and snapshot
(exchange/access/viewcache.py), so a request costs a cursor, not a lake connection and a copy; a new
snapshot advances the previous snapshot's sandbox by what changed rather than copying it again.

Every authenticated request (query, extract, download, listing, e-licence check) and every refusal of
one (policy, rate limit, lockout, invalid or non-JSON body) appends exactly one provenance entry, by the
access service or here, with the department as actor and the token id in the details. Refusals of a
missing or bad token are limited per client address and aggregated before the log (the first at once,
then at most one entry per client per interval with the count; the rest when the server stops), so
anonymous traffic cannot flood the log (exchange/api/ratelimit.py: RejectedClients).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange.access.check import SignedLicenceCheck
from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest
from exchange.access.lakeshare import SharedLake
from exchange.access.models import ApiToken, Department
from exchange.access.query import QueryLimits
from exchange.access.registry import Registry
from exchange.access.service import (
    check_licence_for_department,
    publish_extract,
    query_for_department,
    record_denial,
)
from exchange.access.terms import grant_masking
from exchange.access.viewcache import ViewCache
from exchange.access.warmer import SandboxWarmer
from exchange.api.models import (
    ColumnInfo,
    DatasetView,
    ErrorBody,
    ExtractRequest,
    ExtractResponse,
    GrantView,
    LicenceCheckRequest,
    Me,
    QueryRequest,
    QueryResponse,
)
from exchange.api.ratelimit import CheckFailures, FailureLimits, Rate, RejectedClients, Tally, TokenBuckets
from exchange.api.state import hub_of
from exchange.datasets import DATASETS
from exchange.errors import (
    AccessDenied,
    AuthenticationFailed,
    ExchangeError,
    NotFound,
    QueryRejected,
    RateLimited,
    outcome,
)
from exchange.hub import Hub
from exchange.provenance import events
from exchange.provenance.events import Kind
from exchange.signing.canonical import file_sha256
from exchange.web.pages import install as install_web_pages

# Extract ids and file names the hub writes: letters, digits, dot, dash, underscore; never a leading dot.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
ANONYMOUS = "anonymous"

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": name}
    for code, name in [(400, "bad query, or a request body that is not JSON"),
                       (401, "bad, expired, revoked or malformed token"),
                       (403, "denied, with the reason"), (404, "not found"), (413, "result too large"),
                       (422, "invalid request: parameters or body do not match the schema"),
                       (429, "rate limit exceeded; retry after the Retry-After header's seconds")]
}
DATA, CHECK = "data", "check"


@dataclass(frozen=True)
class Caller:
    """The authenticated department behind a request."""

    department: Department
    token: ApiToken


BEARER = HTTPBearer(auto_error=False, description="<token id>.<secret>")



def identify(hub: Hub, bearer: str | None) -> Caller:
    """The department a bearer token proves, or AuthenticationFailed saying what is wrong with the token."""
    if bearer is None:
        raise AuthenticationFailed("missing bearer token: send 'Authorization: Bearer <token id>.<secret>'")
    registry = Registry(hub.layout.access)
    token = registry.authenticate(bearer)
    return Caller(department=registry.department(token.department), token=token)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def refuse_client(request: Request, failed: AuthenticationFailed) -> ExchangeError:
    """Count an unauthenticated refusal against the client address; the error to answer (401, or 429 past
    the address's allowance). The log gets aggregated entries (RejectedClients), never one per request."""
    rejected: RejectedClients = request.app.state.rejected
    limited, due = rejected.refuse(_client(request), str(failed))
    write_tallies(hub_of(request), due)
    return limited or failed


def write_tallies(hub: Hub, tallies: list[Tally]) -> None:
    """Append one access_denied entry per client tally, with its count and reasons."""
    for t in tallies:
        top = t.reasons.most_common(1)[0][0] if t.reasons else "refused"
        reason = top if t.count == 1 else f"{t.count} refused unauthenticated requests; most often: {top}"
        record_denial(hub, ANONYMOUS, "authenticate", "token", reason, count=t.count, client=t.client,
                      reasons=dict(t.reasons), first_at=t.first_at and t.first_at.isoformat(),
                      last_at=t.last_at and t.last_at.isoformat())


def authenticate(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Caller:
    """The department the bearer token proves, or a 401 (429 for an address past its allowance), counted."""
    hub = hub_of(request)
    rejected: RejectedClients = request.app.state.rejected
    write_tallies(hub, rejected.due())  # any client's refusals whose minute is up
    try:
        caller = identify(hub, credentials.credentials if credentials else None)
    except AuthenticationFailed as failed:
        raise refuse_client(request, failed) from None
    request.state.caller = caller  # so a later 422 on the body is logged against the department
    return caller


def _limited(kind: str) -> Any:
    def limit(request: Request, who: Annotated[Caller, Depends(authenticate)]) -> Caller:
        buckets: TokenBuckets = request.app.state.buckets
        try:
            buckets.take(who.department.id, kind)
            if kind == CHECK:  # locked out after repeated failed holder checks?
                failures: CheckFailures = request.app.state.check_failures
                failures.admit(who.department.id, who.token.id)
        except RateLimited as limited:
            record_denial(hub_of(request), who.department.id, f"{kind} request", request.url.path, str(limited),
                          token_id=who.token.id)
            raise
        return who
    return limit


# Authenticated and within the department's allowance for that kind of request.
Authenticated = Annotated[Caller, Depends(_limited(DATA))]
CheckCaller = Annotated[Caller, Depends(_limited(CHECK))]


def create_app(hub: Hub, limits: QueryLimits | None = None, buckets: TokenBuckets | None = None,
               lake: SharedLake | None = None, views: ViewCache | None = None,
               check_failures: CheckFailures | None = None, rejected: RejectedClients | None = None,
               warm: bool = False) -> FastAPI:
    """The API bound to one hub (settings, registry, lake, signer, provenance log).

    Rate limits come from the hub's settings (EXCHANGE_API_RATE_*, EXCHANGE_CHECK_RATE_*) unless
    `buckets` is given; so do the e-licence lockout (`check_failures`, EXCHANGE_CHECK_FAILURES_*,
    EXCHANGE_CHECK_LOCKOUT_SECONDS) and the refused-client limit and aggregation (`rejected`,
    EXCHANGE_API_REJECT_*). `lake` and `views` default to a fresh shared lake attachment and sandbox cache.
    With `warm` (`exchange serve`), cached sandboxes are advanced to each new snapshot in the background
    (exchange/access/warmer.py); off by default because a process that also commits to the lake (tests)
    must not find the catalog attached by the warmer.
    """
    shared_lake = lake or SharedLake(hub.settings)
    sandboxes = views or ViewCache()
    s = hub.settings
    rejected = rejected or RejectedClients(Rate(s.api_reject_rate_per_second, s.api_reject_burst),
                                           interval=s.api_reject_log_seconds)

    warmer = SandboxWarmer(hub, shared_lake, sandboxes) if warm else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warmer is not None:
            warmer.start()
        yield
        if warmer is not None:
            warmer.stop()
        # Refusals counted but not yet written are written now: none is lost when the server stops.
        write_tallies(hub, rejected.drain())
        # Release the catalog lock and the cached sandboxes' memory when the server stops.
        shared_lake.close()
        sandboxes.clear()

    app = FastAPI(
        lifespan=lifespan,
        title="YRD Exchange Hub — department API",
        version="1",
        description="Query shared government data you hold grants on, cut and download signed extracts. "
                    "Authenticate with `Authorization: Bearer <token id>.<secret>` "
                    "(issued by `exchange departments token`).",
    )
    app.state.hub = hub
    app.state.lake = shared_lake
    app.state.views = sandboxes
    app.state.buckets = buckets or TokenBuckets({DATA: Rate(s.api_rate_per_second, s.api_rate_burst),
                                                 CHECK: Rate(s.check_rate_per_second, s.check_rate_burst)})
    app.state.check_failures = check_failures or CheckFailures(FailureLimits(
        s.check_failures_per_token, s.check_failures_per_department, s.check_failure_window_seconds,
        s.check_lockout_seconds))
    app.state.rejected = rejected
    query_limits = limits or QueryLimits()

    def registry() -> Registry:
        return Registry(hub.layout.access)

    @app.exception_handler(ExchangeError)
    def exchange_error(request: Request, exc: ExchangeError) -> JSONResponse:
        # The status and code come from the one error table (exchange/errors.py), as the CLI's exit codes do.
        status, code = outcome(exc).http_status, outcome(exc).code
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": exc.retry_after_header}
        return JSONResponse(ErrorBody(error=code, reason=str(exc)).model_dump(), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        reason = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is None:
            # A body that is not JSON fails before the token is looked at: identify the caller here, so a
            # department's malformed request is logged as its own and an anonymous one is counted.
            scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
            try:
                caller = identify(hub, bearer.strip() if scheme.lower() == "bearer" and bearer.strip() else None)
            except AuthenticationFailed as failed:
                refused = refuse_client(request, failed)
                return exchange_error(request, refused)
        # pydantic's messages name the field and the rule, not the value, so the reason is safe to log.
        record_denial(hub, caller.department.id, "request", request.url.path, reason, token_id=caller.token.id)
        return JSONResponse(ErrorBody(error="invalid_request", reason=reason).model_dump(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "invalid_request"
        return JSONResponse(ErrorBody(error=code, reason=str(exc.detail)).model_dump(),
                            status_code=exc.status_code, headers=exc.headers)

    @app.get("/v1/me", response_model=Me, responses=ERRORS, tags=["department"])
    def me(who: Authenticated) -> Me:
        """The authenticated department, its token and its usable grants."""
        grants = [_grant_view(g.grant) for g in registry().active_grants(who.department.id)]
        _log_listing(hub, who, "me", [g.id for g in grants])
        return Me(department=who.department, token_id=who.token.id, token_expires_at=who.token.expires_at,
                  grants=grants)

    @app.get("/v1/datasets", response_model=list[DatasetView], responses=ERRORS, tags=["department"])
    def datasets(who: Authenticated) -> list[DatasetView]:
        """The datasets you can query: one sandbox table each, with its visible columns and masking."""
        views = [
            DatasetView(dataset=g.grant.dataset, title=DATASETS[g.grant.dataset].title, grant_id=g.grant.id,
                        columns=g.grant.columns, masking=grant_masking(g.grant), row_filter=g.grant.row_filter)
            for g in registry().active_grants(who.department.id)
        ]
        _log_listing(hub, who, "datasets", [v.grant_id for v in views])
        return views

    @app.post("/v1/query", response_model=QueryResponse, responses={**ERRORS, 408: ERRORS[403]},
              tags=["department"])
    def query(body: QueryRequest, who: Authenticated) -> QueryResponse:
        """Run one read-only SELECT over your masked, filtered views, optionally at an earlier snapshot."""
        result = query_for_department(hub, who.department.id, body.sql, body.snapshot, token_id=who.token.id,
                                      limits=query_limits, lake=shared_lake, views=sandboxes)
        table = result.table
        # Bounded by the row limit: turning rows into JSON lists in Python is cheap at that size.
        rows = [list(r) for r in zip(*(c.to_pylist() for c in table.columns), strict=True)]
        return QueryResponse(
            columns=[ColumnInfo(name=f.name, type=str(f.type)) for f in table.schema], rows=rows,
            row_count=table.num_rows, snapshot_id=result.snapshot_id, grants=result.grants,
            result_sha256=result.result_sha256, sql_sha256=result.sql_sha256,
        )

    @app.post("/v1/extracts", response_model=ExtractResponse, status_code=201, responses=ERRORS,
              tags=["department"])
    def create_extract(body: ExtractRequest, who: Authenticated) -> ExtractResponse:
        """Cut your grant's view of a dataset into a signed extract and return its manifest."""
        if body.dataset not in DATASETS:
            reason = f"unknown dataset {body.dataset}; known: {', '.join(DATASETS)}"
            record_denial(hub, who.department.id, Kind.EXTRACT, body.dataset, reason, token_id=who.token.id)
            raise AccessDenied(reason)
        signed = publish_extract(hub, who.department.id, body.dataset, body.snapshot,
                                 token_id=who.token.id, encrypt=body.encrypt, lake=shared_lake).signed
        extract_id = signed.manifest.extract_id
        files = [EXTRACT_MANIFEST, *(f.name for f in signed.manifest.files)]
        return ExtractResponse(extract_id=extract_id, manifest=signed,
                               downloads=[f"/v1/extracts/{extract_id}/{name}" for name in files])

    @app.get("/v1/extracts/{extract_id}/{file}", response_class=FileResponse, tags=["department"],
             responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}})
    def download(extract_id: str, file: str, who: Authenticated) -> FileResponse:
        """Download the manifest or a data file of one of your extracts."""
        path, sha256 = _extract_file(hub, who, extract_id, file)
        hub.log.append(hub.signer, events.Download(token_id=who.token.id, file=file), actor=who.department.id,
                       subject=extract_id, digests={file: sha256})
        return FileResponse(path, filename=file, media_type="application/octet-stream")

    @app.post("/v1/check/e-license", response_model=SignedLicenceCheck,
              responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 422, 429)},
              tags=["e-licence check"])
    def check_e_license(body: LicenceCheckRequest, who: CheckCaller) -> SignedLicenceCheck:
        """Is licence X valid for holder Y? A hub-signed answer, no grant needed, no personal data returned.

        The answer is valid or not_valid for the exact pair asked, never why not (no such licence, another
        holder, expired and revoked all read not_valid). Status, issuing authority and dates come only when
        the pair matches and your grant on e_license shows them for that licence. Verify the answer offline
        against the trust bundle (`exchange verify-check`). A pair that matches no licence is a failed
        holder check: logged as a denial, and too many lock your token or department out of checks for a
        while (429 with Retry-After). Rate-limited separately from data requests; logged without the
        licence number or holder ID.
        """
        return check_licence_for_department(hub, who.department.id, body.license_id, body.holder_id,
                                            token_id=who.token.id, lake=shared_lake,
                                            failures=app.state.check_failures)

    from exchange.api.deltasharing import router as delta_sharing  # imported here: it builds on this module
    app.include_router(delta_sharing)
    from exchange.api.sharing import router as sharing_router  # here: it uses identify() from this module

    app.include_router(sharing_router)
    install_web_pages(app)  # the server-rendered pages under /web/ (exchange/web/)
    return app


def _log_listing(hub: Hub, who: Caller, what: str, grant_ids: list[str]) -> None:
    # Grant metadata only, but still an access: the load test's "every request logged once" covers it.
    hub.log.append(hub.signer, events.Listing(token_id=who.token.id, grants=grant_ids), actor=who.department.id,
                   subject=what)


def _grant_view(grant: Any) -> GrantView:
    return GrantView(id=grant.id, dataset=grant.dataset, columns=grant.columns, masking=grant_masking(grant),
                     row_filter=grant.row_filter, purpose=grant.purpose, legal_basis=grant.legal_basis,
                     approved_by=grant.approved_by, expires_on=grant.expires_on)


def _extract_file(hub: Hub, who: Caller, extract_id: str, file: str) -> tuple[Path, str]:
    """The file of the caller's extract and its SHA-256, or a logged refusal.

    Names must be plain (no separators, no leading dot), the resolved path must stay inside the
    caller's own extract folder, and a data file must be listed in the signed manifest.
    """
    department = who.department.id
    try:
        if not (SAFE_NAME.match(extract_id) and SAFE_NAME.match(file)) or ".." in extract_id or ".." in file:
            raise QueryRejected("extract id and file name must be plain names (letters, digits, '.', '-', '_'; "
                                "no path separators or '..')")
        root = (hub.layout.extracts / department).resolve()
        folder = (root / extract_id).resolve()
        path = (folder / file).resolve()
        if not (folder.parent == root and path.parent == folder):
            raise QueryRejected("the requested path leaves your extracts folder")
        manifest_path = folder / EXTRACT_MANIFEST
        if not manifest_path.is_file():
            raise NotFound(f"you have no extract {extract_id}")
        signed = SignedExtractManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
        listed = {f.name: f.sha256 for f in signed.manifest.files}
        if file != EXTRACT_MANIFEST and file not in listed:
            raise NotFound(f"extract {extract_id} has no file {file}; it has: "
                           f"{', '.join([EXTRACT_MANIFEST, *listed])}")
        if not path.is_file():
            raise NotFound(f"file {file} of extract {extract_id} is missing on the hub")
    except (QueryRejected, NotFound) as refused:
        # Caller-chosen names are only logged once they passed the plain-name check.
        safe = extract_id if SAFE_NAME.match(extract_id) else "(invalid name)"
        record_denial(hub, department, Kind.DOWNLOAD, safe, str(refused), token_id=who.token.id)
        raise
    return path, listed.get(file) or file_sha256(path)
