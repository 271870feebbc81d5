"""The Delta Sharing REST protocol for departments, under /delta-sharing (the profile file's endpoint).

Each department is a recipient with one share (exchange/deltasharing/protocol.py): one table per usable grant,
the grant's masked, row-filtered view. A query materialises that view at the asked version (a lake snapshot)
as Parquet (exchange/deltasharing/files.py) and answers with short-lived signed URLs to it
(exchange/deltasharing/urls.py), which the hub serves itself below /delta-sharing/files/.

Access is decided as for every other department request: the bearer token and the rate limit by the
department API's own dependency, grants by exchange/access/registry.py and policy.py at every call. A file
URL proves only that the hub issued it; each download re-checks that its token and grant are still in force,
so revoking either, or the grant expiring, ends access at once, also through URLs handed out before.

Every call and every download appends one provenance entry (kinds ``sharing`` and ``sharing_download``),
every refusal an ``access_denied`` (unauthenticated ones and forged URLs aggregated per client address, as
the API does for bad tokens). Errors carry the protocol's body, ``{"errorCode": ..., "message": ...}``.
Change data feed comes from DuckLake's change feed (exchange/deltasharing/changes.py), in the parquet format.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange.access.models import ApiToken, SignedGrant
from exchange.access.registry import Registry
from exchange.access.service import record_denial, resolve_snapshot
from exchange.api.app import ANONYMOUS, DATA, Authenticated, Caller, write_tallies
from exchange.api.ratelimit import RejectedClients, TokenBuckets
from exchange.api.state import hub_of
from exchange.deltasharing import protocol
from exchange.deltasharing.changes import changes_file_name, materialise_changes
from exchange.deltasharing.files import SharedFile, file_name, file_path, file_schema, materialise
from exchange.deltasharing.protocol import SharedTable, Snapshot
from exchange.deltasharing.urls import FileClaim, UrlRefused, check_expiry, claim_of, signed_path, url_expiry, url_key
from exchange.errors import AccessDenied, AuthenticationFailed, BadInput, ExchangeError, NotFound, RateLimited, outcome
from exchange.hub import Hub
from exchange.lake.connect import LAKE
from exchange.provenance import events
from exchange.provenance.events import Kind

PREFIX = "/delta-sharing"
URL_SECONDS = 900.0  # signed file URLs live 15 minutes (never past their token or grant)
NDJSON = "application/x-ndjson; charset=utf-8"
VERSION_HEADER = "delta-table-version"


class Unsupported(BadInput):
    """A protocol feature the hub does not offer (change data feed)."""


class SharingRoute(APIRoute):
    """Answers every failure of a sharing route with the protocol's error body and the error table's status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ExchangeError as exc:
                return _error(exc)
            except RequestValidationError as exc:
                reason = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
                caller: Caller | None = getattr(request.state, "caller", None)
                if caller is not None:
                    record_denial(hub_of(request), caller.department.id, Kind.SHARING, request.url.path, reason,
                                  token_id=caller.token.id)
                else:  # no department proven (a malformed file URL): counted per client address
                    limited = _refuse_anonymous(request, f"malformed request: {reason}")
                    if limited is not None:
                        return _error(limited)
                return JSONResponse(protocol.error_body(400, f"malformed request: {reason}"), status_code=400)
            except StarletteHTTPException as exc:  # e.g. a body FastAPI cannot parse
                return JSONResponse(protocol.error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                                    headers=exc.headers)

        return answer


def _error(exc: ExchangeError) -> JSONResponse:
    status = outcome(exc).http_status
    body = protocol.error_body(status, str(exc))
    if isinstance(exc, Unsupported):
        body["errorCode"] = "UNSUPPORTED_OPERATION"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": exc.retry_after_header}
    return JSONResponse(body, status_code=status, headers=headers)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": protocol.ErrorBody, "description": protocol.ERROR_CODES[status]} for status in statuses}


ERRORS = _errors(400, 401, 403, 404, 429)
_VERSION = {VERSION_HEADER: {"description": "The table version answered (a lake snapshot id)",
                             "schema": {"type": "integer"}}}
NDJSON_OK: dict[int | str, dict[str, Any]] = {200: {
    "description": "Newline-delimited JSON: a protocol line, a metaData line (and, for a query, file lines)",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}}}, "headers": _VERSION}}
router = APIRouter(prefix=PREFIX, route_class=SharingRoute, tags=["delta sharing"], responses=ERRORS)



@contextmanager
def _refusals_logged(hub: Hub, who: Caller, subject: str, attempt: str = Kind.SHARING) -> Iterator[None]:
    """Record any refusal raised inside as the department's access_denied, then let it answer the request."""
    try:
        yield
    except ExchangeError as refused:
        record_denial(hub, who.department.id, attempt, subject, str(refused), token_id=who.token.id)
        raise


def _log(hub: Hub, who: Caller, subject: str, operation: str, grants: list[str], **facts: Any) -> None:
    known = {k: v for k, v in facts.items() if v is not None}
    hub.log.append(hub.signer, events.Sharing(token_id=who.token.id, operation=operation, grants=grants, **known),
                   actor=who.department.id, subject=subject)


def _usable(hub: Hub, department: str) -> tuple[list[SharedTable], dict[str, SignedGrant]]:
    grants = Registry(hub.layout.access).active_grants(department)
    tables = protocol.shared_tables(department, [(g.grant.id, g.grant.dataset) for g in grants])
    return tables, {g.grant.id: g for g in grants}


def _my_share(who: Caller, share: str) -> str:
    mine = protocol.share_name(who.department.id)
    if share != mine:
        raise NotFound(f"share {share!r} does not exist or is not shared with you; yours is {mine!r}")
    return mine


def _table(hub: Hub, who: Caller, share: str, schema: str, name: str) -> tuple[SharedTable, SignedGrant]:
    _my_share(who, share)
    tables, grants = _usable(hub, who.department.id)
    table = protocol.find_table(tables, share, schema, name)
    if table is None:
        # Why not, in the registry's words (no grant, revoked, expired, not shared) when the dataset is known.
        if schema == protocol.SCHEMA:
            try:
                Registry(hub.layout.access).active_grant(who.department.id, name)
            except (AccessDenied, NotFound) as why:
                raise NotFound(f"table {share}.{schema}.{name} is not in your share: {why}") from None
        listed = ", ".join(f"{share}.{t.name}" for t in tables) or "none"
        raise NotFound(f"table {share}.{schema}.{name} is not in your share; your tables: {listed}")
    return table, grants[table.grant_id]


def _snapshots(request: Request) -> tuple[list[Snapshot], int]:
    with request.app.state.lake() as con:
        rows = con.execute(f"SELECT snapshot_id, snapshot_time FROM {LAKE}.snapshots() ORDER BY snapshot_id").fetchall()
    snapshots = [Snapshot(id=int(i), time=t) for i, t in rows]
    return snapshots, max(s.id for s in snapshots)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- shares, schemas, tables -----------------------------------------------------------------------------


@router.get("/shares")
def list_shares(request: Request, who: Authenticated, maxResults: int | None = None,  # noqa: N803
                pageToken: str | None = None) -> dict[str, Any]:  # noqa: N803
    """Your share (one per department)."""
    hub = hub_of(request)
    share = protocol.share_name(who.department.id)
    _, grants = _usable(hub, who.department.id)
    _log(hub, who, share, "list_shares", sorted(grants))
    return {"items": [{"name": share, "id": share}]}


@router.get("/shares/{share}")
def get_share(request: Request, share: str, who: Authenticated) -> dict[str, Any]:
    """One share."""
    hub = hub_of(request)
    with _refusals_logged(hub, who, share):
        _my_share(who, share)
    _, grants = _usable(hub, who.department.id)
    _log(hub, who, share, "get_share", sorted(grants))
    return {"share": {"name": share, "id": share}}


@router.get("/shares/{share}/schemas")
def list_schemas(request: Request, share: str, who: Authenticated, maxResults: int | None = None,  # noqa: N803
                 pageToken: str | None = None) -> dict[str, Any]:  # noqa: N803
    """The share's schema (one: datasets)."""
    hub = hub_of(request)
    with _refusals_logged(hub, who, share):
        _my_share(who, share)
    _, grants = _usable(hub, who.department.id)
    _log(hub, who, share, "list_schemas", sorted(grants))
    return {"items": [{"name": protocol.SCHEMA, "share": share}]}


@router.get("/shares/{share}/schemas/{schema}/tables")
def list_tables(request: Request, share: str, schema: str, who: Authenticated,
                maxResults: int | None = None, pageToken: str | None = None) -> dict[str, Any]:  # noqa: N803
    """The tables of a schema: one per usable grant."""
    hub = hub_of(request)
    with _refusals_logged(hub, who, f"{share}.{schema}"):
        _my_share(who, share)
        if schema != protocol.SCHEMA:
            raise NotFound(f"schema {schema!r} does not exist in share {share}; it has {protocol.SCHEMA!r}")
    tables, _ = _usable(hub, who.department.id)
    _log(hub, who, f"{share}.{schema}", "list_tables", [t.grant_id for t in tables])
    return {"items": [t.document() for t in tables]}


@router.get("/shares/{share}/all-tables")
def list_all_tables(request: Request, share: str, who: Authenticated,
                    maxResults: int | None = None, pageToken: str | None = None) -> dict[str, Any]:  # noqa: N803
    """Every table of the share."""
    hub = hub_of(request)
    with _refusals_logged(hub, who, share):
        _my_share(who, share)
    tables, _ = _usable(hub, who.department.id)
    _log(hub, who, share, "list_all_tables", [t.grant_id for t in tables])
    return {"items": [t.document() for t in tables]}


# --- one table ---------------------------------------------------------------------------------------------


@router.head("/shares/{share}/schemas/{schema}/tables/{table}/version", include_in_schema=False)
@router.get("/shares/{share}/schemas/{schema}/tables/{table}/version", response_class=Response,
            responses={200: {"description": "No body; the version is in the header", "headers": _VERSION}})
def table_version(request: Request, share: str, schema: str, table: str, who: Authenticated,
                  startingTimestamp: str | None = None) -> Response:  # noqa: N803
    """The table's current version (lake snapshot), or the first at or after startingTimestamp."""
    hub = hub_of(request)
    subject = f"{share}.{schema}.{table}"
    with _refusals_logged(hub, who, subject):
        shared, _ = _table(hub, who, share, schema, table)
        snapshots, current = _snapshots(request)
        version = current if startingTimestamp is None else protocol.version_starting(
            snapshots, protocol.parse_timestamp(startingTimestamp, "startingTimestamp"))
    _log(hub, who, subject, "table_version", [shared.grant_id], snapshot_id=version)
    return Response(status_code=200, headers={VERSION_HEADER: str(version)})


@router.get("/shares/{share}/schemas/{schema}/tables/{table}/metadata", response_class=Response, responses=NDJSON_OK)
def table_metadata(request: Request, share: str, schema: str, table: str, who: Authenticated) -> Response:
    """The table's protocol and metadata (schema of the delivered, masked columns) at its current version."""
    hub = hub_of(request)
    subject = f"{share}.{schema}.{table}"
    with _refusals_logged(hub, who, subject):
        shared, signed = _table(hub, who, share, schema, table)
        _, current = _snapshots(request)
        with request.app.state.lake() as con:
            materialised = materialise(con, hub.layout.home, signed, current)
    _log(hub, who, subject, "metadata", [shared.grant_id], snapshot_id=current)
    body = protocol.ndjson([protocol.PROTOCOL_LINE, _metadata(hub, shared, signed, materialised)])
    return Response(body, media_type=NDJSON, headers={VERSION_HEADER: str(current)})


@router.post("/shares/{share}/schemas/{schema}/tables/{table}/query", response_class=Response, responses=NDJSON_OK)
def query_table(request: Request, share: str, schema: str, table: str, body: protocol.QueryBody,
                who: Authenticated) -> Response:
    """The table's files at a version (default: current) or timestamp, as short-lived signed URLs."""
    hub = hub_of(request)
    subject = f"{share}.{schema}.{table}"
    with _refusals_logged(hub, who, subject):
        shared, signed = _table(hub, who, share, schema, table)
        if body.startingVersion is not None:
            raise Unsupported("startingVersion in a query is not offered; ask .../changes for the change data feed")
        if body.version is not None and body.timestamp is not None:
            raise BadInput("give version or timestamp, not both")
        snapshots, current = _snapshots(request)
        with request.app.state.lake() as con:
            if body.timestamp is not None:
                version = protocol.version_at(snapshots, protocol.parse_timestamp(body.timestamp, "timestamp"))
            else:
                version = resolve_snapshot(con, body.version)
            materialised = materialise(con, hub.layout.home, signed, version)
    now = datetime.now(UTC)
    expires = url_expiry(now, URL_SECONDS, who.token.expires_at, signed.grant.expires_on)
    claim = FileClaim(signed.grant.id, version, who.token.id, materialised.file, expires)
    url = str(request.base_url).rstrip("/") + PREFIX + "/" + signed_path(url_key(hub.layout.keys), claim)
    committed = next((s.time for s in snapshots if s.id == version), now)
    lines = [protocol.PROTOCOL_LINE, _metadata(hub, shared, signed, materialised)]
    if materialised.rows:
        lines.append(protocol.file_line(url, materialised.sha256[:32], materialised.size, materialised.rows,
                                        datetime.fromtimestamp(expires, UTC), version, _ms(committed)))
    _log(hub, who, subject, "query", [shared.grant_id], snapshot_id=version, rows=materialised.rows,
         files=[materialised.file] if materialised.rows else [],
         urls_expire_at=datetime.fromtimestamp(expires, UTC).isoformat())
    return Response(protocol.ndjson(lines), media_type=NDJSON, headers={VERSION_HEADER: str(version)})


@router.get("/shares/{share}/schemas/{schema}/tables/{table}/changes", response_class=Response, responses=NDJSON_OK)
def table_changes(request: Request, share: str, schema: str, table: str, who: Authenticated,
                  startingVersion: Annotated[int | None, Query(ge=0, le=2**62)] = None,  # noqa: N803
                  endingVersion: Annotated[int | None, Query(ge=0, le=2**62)] = None,  # noqa: N803
                  startingTimestamp: str | None = None, endingTimestamp: str | None = None,  # noqa: N803
                  includeHistoricalMetadata: bool | None = None) -> Response:  # noqa: N803
    """Change data feed: per version in the range, the view's inserted and deleted rows (``cdf`` files)."""
    hub = hub_of(request)
    subject = f"{share}.{schema}.{table}"
    with _refusals_logged(hub, who, subject):
        shared, signed = _table(hub, who, share, schema, table)
        snapshots, current = _snapshots(request)
        if (startingVersion is None) == (startingTimestamp is None):
            raise BadInput("give startingVersion or startingTimestamp (one of them)")
        if endingVersion is not None and endingTimestamp is not None:
            raise BadInput("give endingVersion or endingTimestamp, not both")
        first = startingVersion if startingVersion is not None else protocol.version_starting(
            snapshots, protocol.parse_timestamp(str(startingTimestamp), "startingTimestamp"))
        last = endingVersion if endingVersion is not None else current if endingTimestamp is None else \
            protocol.version_at(snapshots, protocol.parse_timestamp(endingTimestamp, "endingTimestamp"))
        if last > current:
            raise BadInput(f"endingVersion {last} is after the current version {current}")
        if first > last:
            raise BadInput(f"the starting version {first} is after the ending version {last}")
        times = {s.id: s.time for s in snapshots}
        with request.app.state.lake() as con:
            latest = materialise(con, hub.layout.home, signed, last)  # the schema the changes are delivered in
            changed = [c for v in sorted(times) if first <= v <= last
                       if (c := materialise_changes(con, hub.layout.home, signed, v)) is not None]
    now = datetime.now(UTC)
    expires = url_expiry(now, URL_SECONDS, who.token.expires_at, signed.grant.expires_on)
    key = url_key(hub.layout.keys)
    base = str(request.base_url).rstrip("/") + PREFIX + "/"
    lines = [protocol.PROTOCOL_LINE, _metadata(hub, shared, signed, latest)]
    for change in changed:
        url = base + signed_path(key, FileClaim(signed.grant.id, change.snapshot_id, who.token.id, change.file,
                                                expires))
        lines.append(protocol.cdf_line(url, change.sha256[:32], change.size, datetime.fromtimestamp(expires, UTC),
                                       change.snapshot_id, _ms(times[change.snapshot_id])))
    _log(hub, who, subject, "changes", [shared.grant_id], snapshot_id=last, rows=sum(c.rows for c in changed),
         files=[c.file for c in changed], urls_expire_at=datetime.fromtimestamp(expires, UTC).isoformat())
    return Response(protocol.ndjson(lines), media_type=NDJSON, headers={VERSION_HEADER: str(first)})


def _metadata(hub: Hub, shared: SharedTable, signed: SignedGrant, materialised: SharedFile) -> dict[str, Any]:
    g = signed.grant
    return protocol.metadata_line(
        shared, file_schema(hub.layout.home, materialised), materialised.snapshot_id,
        description=f"grant {g.id}: {g.purpose} (approved by {g.approved_by}, valid until {g.expires_on})",
        size=materialised.size, num_files=1 if materialised.rows else 0)


# --- files -------------------------------------------------------------------------------------------------


@router.head("/files/{grant_id}/{snapshot}/{token_id}/{expires}/{signature}/{file}", include_in_schema=False)
@router.get("/files/{grant_id}/{snapshot}/{token_id}/{expires}/{signature}/{file}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The Parquet file "
                             "(byte ranges served)"}})
def download(request: Request, grant_id: str, snapshot: Annotated[int, Path(ge=0)], token_id: str,
             expires: Annotated[int, Path(ge=0)], signature: str, file: str) -> Response:
    """A materialised file through its signed URL (byte ranges served), while its token and grant hold."""
    hub = hub_of(request)
    try:
        claim = claim_of(url_key(hub.layout.keys), grant_id, str(snapshot), token_id, str(expires), signature, file)
    except UrlRefused as forged:
        # No department is proven by a URL the hub did not sign: counted per client address, as bad tokens are.
        raise _refuse_anonymous(request, str(forged)) or forged from None
    registry = Registry(hub.layout.access)
    token = next((t for t in registry.tokens() if t.id == claim.token_id), None)
    if token is None:  # signed by the hub, so the token existed: its record is gone
        record_denial(hub, ANONYMOUS, Kind.SHARING_DOWNLOAD, claim.grant_id, "the URL's token is no longer on record")
        raise AuthenticationFailed(f"token {claim.token_id} is unknown")
    who_id = token.department
    try:
        check_expiry(claim)
        _token_in_force(token)
        buckets: TokenBuckets = request.app.state.buckets
        buckets.take(who_id, DATA)  # downloads share the department's request allowance (a log flood costs it)
        granted = registry.grant(claim.grant_id)
        if granted.grant.department != who_id:
            raise AccessDenied(f"grant {claim.grant_id} is not {who_id}'s")
        active = registry.active_grant(who_id, granted.grant.dataset)  # revoked, expired, not shared: refused
        if active.grant.id != claim.grant_id:
            raise AccessDenied(f"grant {claim.grant_id} has been superseded by grant {active.grant.id}")
        if claim.file not in (file_name(active, claim.snapshot_id), changes_file_name(active, claim.snapshot_id)):
            raise NotFound(f"file {claim.file} is no longer served: the grant's view changed since the URL was "
                           "issued; ask for the table again (POST .../query)")
        path = file_path(hub.layout.home, claim.file)
        sidecar = path.with_suffix(".json")
        if not (path.is_file() and sidecar.is_file()):
            raise NotFound(f"file {claim.file} is missing on the hub; ask for the table again (POST .../query)")
        shared = SharedFile.model_validate_json(sidecar.read_text(encoding="utf-8"))
    except ExchangeError as refused:
        record_denial(hub, who_id, Kind.SHARING_DOWNLOAD, claim.grant_id, str(refused), token_id=token.id,
                      snapshot_id=claim.snapshot_id)
        raise
    hub.log.append(hub.signer, events.SharingDownload(
        token_id=token.id, dataset=shared.dataset, snapshot_id=shared.snapshot_id, file=shared.file,
        rows=shared.rows, method=request.method, **({"range": request.headers["range"]}
                                                    if "range" in request.headers else {})),
        actor=who_id, subject=claim.grant_id, digests={"file": shared.sha256})
    return FileResponse(path, media_type="application/octet-stream")


def _refuse_anonymous(request: Request, reason: str) -> RateLimited | None:
    """Count a refusal no department is proven for against the client address (aggregated in the log, as the
    API does for bad tokens); the rate-limit error once the address is past its allowance."""
    rejected: RejectedClients = request.app.state.rejected
    limited, due = rejected.refuse(request.client.host if request.client else "unknown", reason)
    write_tallies(hub_of(request), due)
    return limited


def _token_in_force(token: ApiToken) -> None:
    now = datetime.now(UTC)
    if token.revoked_at is not None:
        raise AuthenticationFailed(f"token {token.id} was revoked on {token.revoked_at:%Y-%m-%d}")
    if token.expires_at <= now:
        raise AuthenticationFailed(f"token {token.id} expired on {token.expires_at:%Y-%m-%d}")
