"""Shanghai's adapter: pages through `GET /api/v1/<resource>/records` following the cursor.

Credentials are a static bearer token or OAuth2 client credentials (:mod:`adapters.shanghai.auth`);
HTTP 429, 5xx, timeouts and network failures are retried with bounded, jittered backoff
(:mod:`adapters.shanghai.retry`); a 401 fetches a new token and retries once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pyarrow as pa

from adapters.authenticity import SourceTrust, from_headers, hub_trust
from adapters.base import Landing, PullRequest
from adapters.mapping import DRIFT_MIN_VALUES, DatasetMapping, ProvinceMapping
from adapters.shanghai.auth import (
    CLIENT_ID_SETTING,
    CLIENT_SECRET_SETTING,
    TOKEN_SETTING,
    ClientCredentials,
    StaticToken,
    TokenSource,
)
from adapters.shanghai.cursor import Position
from adapters.shanghai.retry import RETRYABLE_STATUS, RetryPolicy, retry_after_seconds
from exchange import intake
from exchange.config import ExchangeSettings
from exchange.errors import SourceAuthError, SourceFormatError, TerminalError, TransientError

MAPPING_FILE = Path(__file__).parent / "mapping.yaml"
URL_SETTING = "EXCHANGE_SHANGHAI_API_URL"
TOKEN_PATH = "/oauth/token"
PAGE_SIZE = 1000  # the API's maximum `limit`: half the round trips, landings and signature checks of 500
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_PAGES = 100_000  # pages one window may read (EXCHANGE_SHANGHAI_MAX_PAGES): 100M records at PAGE_SIZE
MAX_PAGES_SETTING = "EXCHANGE_SHANGHAI_MAX_PAGES"
_HINT = "the API must answer {\"data\": [records], \"nextCursor\": string or null}"


class ShanghaiAdapter:
    """Pulls Shanghai's REST API; each page is landed, parsed and yielded as one canonical table."""

    province = "shanghai"

    def __init__(
        self,
        base_url: str,
        token: str | TokenSource = "",
        mapping: ProvinceMapping | None = None,
        page_size: int = PAGE_SIZE,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        trust: SourceTrust | None = None,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Whose keys vouch for Shanghai's pages: by default the trust bundle under EXCHANGE_HOME.
        self.trust = trust or hub_trust()
        self.credentials: TokenSource = StaticToken(token) if isinstance(token, str) else token
        self.mapping = mapping or ProvinceMapping.load(MAPPING_FILE)
        self.page_size = page_size
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._transport = transport
        if max_pages < 1:
            raise ValueError("max_pages must be positive")
        self.max_pages = max_pages

    def datasets(self) -> Sequence[str]:
        """The canonical datasets Shanghai's API serves."""
        return list(self.mapping.datasets)

    def pull(self, request: PullRequest, landing: Landing) -> Iterator[pa.Table]:
        """Yield one canonical table per API page of records with since < updated_at < window.end.

        Raises SourceAuthError on 401/403, TransientError on 429/5xx or a network failure, and
        SourceFormatError naming the URL, page and cursor for a body that is not the expected JSON.
        """
        _check_aware(request.since)
        mapping = self.mapping.dataset(request.dataset)
        url = f"{self.base_url}/api/v1/{mapping.source}/records"
        tz = ZoneInfo(mapping.timezone)
        params: dict[str, str | int] = {"updatedBefore": _iso(request.window.end, tz)}
        params["limit"] = self.page_size
        if request.since is not None:
            params["updatedAfter"] = _iso(request.since, tz)
        cursor: str | None = None
        # Where each page the API led us to starts: its decoded position (the cursor's bytes if it is not one
        # of the documented format), with the page it was first requested for.
        followed: dict[Position | str, int] = {}
        last: Position | None = None
        page = 0
        verifier = self.trust.verifier(self.province)
        with self._client() as client:
            while True:
                page += 1
                query = {**params, "cursor": cursor} if cursor else params
                response = self._get(client, url, query)
                landed = landing.write(f"page-{page:05d}.json", response.content)
                where = f"page {page} (cursor {cursor or 'start'})"
                # The signature covers the exact body bytes and the request target (path and query), so
                # neither a changed page nor a page replayed for another query verifies.
                target = response.request.url.raw_path.decode("ascii")
                item = f"{url} {where}"
                signed = from_headers(response.headers, self.province, target, landed.sha256, item)
                landing.signatures.append(verifier.verify(signed, target, landed.sha256, item))
                _check_content_type(response, url, where)
                rows, next_cursor, duplicated = _parse_page(response.content, url, where)
                if rows:
                    native, unreadable = _native_table(rows, mapping, url, where, duplicated)
                    yield mapping.to_canonical(native, f"{url} {where}", unreadable)
                if next_cursor is None:
                    return
                at = _position(next_cursor)
                if next_cursor == cursor or (isinstance(at, Position) and at == last):
                    # A server that hands back the cursor it was given would keep us here forever.
                    raise SourceFormatError(url, where, "nextCursor repeats the cursor just requested", _HINT)
                if at in followed:
                    # A longer cycle would too, and would deliver the same records again on every lap; compared
                    # by position, so the same place spelled differently is the same loop.
                    raise SourceFormatError(
                        url, where, f"nextCursor loops back to the cursor of page {followed[at]}", _HINT
                    )
                if isinstance(at, Position) and last is not None and at < last:
                    raise SourceFormatError(
                        url, where, f"nextCursor goes back to {at} from {last} (page {page}): records would repeat",
                        _HINT,
                    )
                if page >= self.max_pages:
                    raise SourceFormatError(
                        url, where, f"more than {self.max_pages} pages in one window: the pagination does not end",
                        f"{_HINT}; if the window really holds more, raise {MAX_PAGES_SETTING}",
                    )
                followed[at] = page + 1
                last = at if isinstance(at, Position) else last
                cursor = next_cursor

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout, headers={"Accept": "application/json"}, transport=self._transport)

    def _get(self, client: httpx.Client, url: str, params: dict[str, str | int]) -> httpx.Response:
        """GET with the current token; on 401 fetch a new token and try once more."""

        def fetch_token(token_url: str, form: dict[str, str]) -> httpx.Response:
            return _send(client, self.retry, "POST", token_url, data=form)

        refreshed = False
        while True:
            token = self.credentials.token(fetch_token)
            # No token: send none and let the API refuse us with a 401.
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = _send(client, self.retry, "GET", url, params=params, headers=headers)
            status = response.status_code
            if status == 401 and not refreshed and self.credentials.invalidate():
                refreshed = True  # the token expired or was revoked early: one fresh token, one more try
                continue
            if status in (401, 403):
                raise SourceAuthError(
                    f"Shanghai API {url} refused the token (HTTP {status}); {self.credentials.hint()}"
                )
            if status != 200:
                raise TerminalError(f"Shanghai API {response.url} answered HTTP {status}: {response.text[:200]}")
            return response


def _send(
    client: httpx.Client,
    policy: RetryPolicy,
    method: str,
    url: str,
    *,
    params: dict[str, str | int] | None = None,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One request, retried on 429/5xx, timeouts and network failures; the final non-retryable response.

    Raises TransientError when the retries are used up or the server asks to wait longer than the
    policy allows, TerminalError if our own request is malformed.
    """
    retry = 0
    while True:
        retry_after: float | None = None
        try:
            response = client.request(method, url, params=params, data=data, headers=headers)
        except httpx.LocalProtocolError as exc:  # our request is malformed (e.g. a token with a newline)
            raise TerminalError(f"cannot send a request to Shanghai API {url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            problem = f"Shanghai API {url} timed out: {exc!r}"
        except httpx.TransportError as exc:
            problem = f"Shanghai API {url} unreachable: {exc!r}"
        else:
            if response.status_code not in RETRYABLE_STATUS:
                return response
            problem = f"Shanghai API {response.url} answered HTTP {response.status_code}: {response.text[:200]}"
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > policy.max_retry_after:
                raise TransientError(f"{problem}; it asks to retry after {retry_after:.0f} s")
        if retry >= policy.max_retries:
            raise TransientError(f"{problem} (gave up after {retry + 1} attempts)")
        policy.sleep(policy.delay(retry, retry_after))
        retry += 1


def _position(cursor: str) -> Position | str:
    """The position a cursor leads to; the cursor itself when it is not in the documented format."""
    try:
        return Position.decode(cursor)
    except ValueError:
        return cursor


def _check_aware(since: datetime | None) -> None:
    # A naive `since` would silently be read in the machine's local zone and shift the window.
    if since is not None and since.tzinfo is None:
        raise ValueError(f"since must be timezone-aware, got {since.isoformat()}")


def _iso(moment: datetime, tz: ZoneInfo) -> str:
    """Local ISO 8601 with offset, as Shanghai's API expects; microseconds kept so bounds stay exact."""
    return moment.astimezone(tz).isoformat()


def _check_content_type(response: httpx.Response, url: str, where: str) -> None:
    """A 200 that is not JSON (a gateway's HTML maintenance page, say) is refused before parsing."""
    media = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise SourceFormatError(
            url, where, f"Content-Type is {media or 'missing'!r}, not application/json: {response.text[:80]!r}", _HINT
        )


class _Duplicated(dict[str, Any]):
    """A JSON object in which some key was given more than once: every value given, per such key."""

    duplicates: dict[str, list[Any]]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object hook: a plain dict, unless a key repeats (then no value silently wins)."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _Duplicated(obj)
    counts: dict[str, list[Any]] = {}
    for key, value in pairs:
        counts.setdefault(key, []).append(value)
    marked.duplicates = {k: v for k, v in counts.items() if len(v) > 1}
    return marked


def _parse_page(body: bytes, url: str, where: str) -> tuple[list[dict[str, Any]], str | None, list[int]]:
    """The page's records, next cursor, and the records in which a key was given twice; anything else (a
    repeated key outside a record too) is a malformed payload.

    json.loads alone keeps the last of repeated keys, so every object goes through a hook that notices a
    repeat (about a third more parse time, 0.5 ms per 1,000 records; counting key tokens in the body instead
    cost as much, and is exact only for some spacings).
    """
    found: list[_Duplicated] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = _object(pairs)
        if isinstance(obj, _Duplicated):
            found.append(obj)
        return obj

    doc = _loads(body, url, where, hook)
    rows, next_cursor = _page_parts(doc, url, where)
    duplicated: list[int] = []
    if found:  # rare: only then are the records searched for the marked ones
        records = {id(row): index for index, row in enumerate(rows)}
        for obj in found:
            at = records.get(id(obj))
            if at is None:  # the page object itself, or an object nested in a record
                keys = ", ".join(repr(k) for k in obj.duplicates)
                raise SourceFormatError(
                    url, where, f"the key {keys} is given more than once in one JSON object that is not a record; "
                    "which value counts is undefined", _HINT,
                )
            duplicated.append(at)
    return rows, next_cursor, sorted(duplicated)


def _loads(body: bytes, url: str, where: str, hook: Any) -> Any:
    try:
        return json.loads(body, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        raise SourceFormatError(
            url, f"{where}, line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}", _HINT
        ) from exc
    except UnicodeDecodeError as exc:
        raise SourceFormatError(url, f"{where}, byte {exc.start}", "body is not UTF-8", _HINT) from exc


def _page_parts(doc: Any, url: str, where: str) -> tuple[list[dict[str, Any]], str | None]:
    """The records and next cursor of a parsed page, or SourceFormatError for any other shape."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SourceFormatError(url, where, "no \"data\" array at the top level", _HINT)
    rows: list[Any] = doc["data"]
    next_cursor = doc.get("nextCursor")
    if next_cursor is not None and not isinstance(next_cursor, str):
        kind = type(next_cursor).__name__
        raise SourceFormatError(url, where, f"nextCursor is {kind}, not a string", _HINT)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SourceFormatError(url, f"{where}, record {index}", "record is not a JSON object", _HINT)
    return rows, next_cursor


def _native_table(
    rows: list[dict[str, Any]], mapping: DatasetMapping, url: str, where: str, duplicated: list[int]
) -> tuple[pa.Table, pa.Array | None]:
    """Build the page's native columns with declared types, and what could not be read (exchange.intake).

    A field present in no record of the page is left out, so the mapping reports it as a missing
    column; a field absent from some records only is null there, a bad record the contract catches.
    A record with a key given twice, or a value of the wrong JSON type, keeps null in that field and the
    values as sent in the AS_SENT column, so it is quarantined by name; only a field whose every value has
    the wrong type (the API changed it) fails the page.
    """
    present: set[str] = set().union(*rows)
    mapping.report_drift(sorted(present), f"{url} {where}")  # unmapped fields are reported, then dropped here
    schema = pa.schema(
        [(f.native, _native_type(mapping, f.canonical)) for f in mapping.fields if f.native in present]
    )
    entries: list[pa.Array] = []
    if duplicated:
        entries += _duplicate_entries(rows, duplicated, mapping)
    try:
        table = pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        columns = {spec.name: _typed_column(rows, spec, mapping, f"{url} {where}", entries) for spec in schema}
        table = pa.table(columns, schema=schema)
    return table, intake.column(entries, len(rows)) if entries else None


def _duplicate_entries(rows: list[dict[str, Any]], duplicated: list[int], mapping: DatasetMapping) -> list[pa.Array]:
    """AS_SENT entries for the records with a repeated key (each such field nulled: no value wins)."""
    canonical = {f.native: f.canonical for f in mapping.fields}
    per_field: dict[str, dict[int, str]] = {}
    for index in duplicated:
        record = rows[index]
        assert isinstance(record, _Duplicated)
        for key, values in record.duplicates.items():
            name = canonical.get(key)
            if name is not None:
                per_field.setdefault(name, {})[index] = json.dumps(values, ensure_ascii=False)
                record[key] = None
    entries = []
    for name, sent in per_field.items():
        where = np.zeros(len(rows), dtype=bool)
        where[list(sent)] = True
        literal = pa.array([sent.get(i) for i in range(len(rows))], pa.string())
        native = mapping.native_name(name)
        entries.append(intake.problem_literal(
            name, pa.array(where), literal, f"the key {native!r} is given more than once in one record"))
    return entries


def _typed_column(
    rows: list[dict[str, Any]], spec: pa.Field, mapping: DatasetMapping, source: str, entries: list[pa.Array]
) -> pa.Array:
    """One native column of the page; values of the wrong JSON type become null and are noted in `entries`.

    Reached only when the page does not convert as a whole (a bad value is on it), so the Python look at
    each value is paid for a page with a bad record, never on the hot path.
    """
    values = [row.get(spec.name) for row in rows]
    try:
        return pa.array(values, spec.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        first_error = exc
    wrong = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if value is not None and not _fits(value, spec.type):
            wrong[i] = True
    present = sum(v is not None for v in values)
    if int(wrong.sum()) >= DRIFT_MIN_VALUES and int(wrong.sum()) == present:
        raise mapping.type_error(spec.name, source, f"wrong JSON type, expected {spec.type}: {first_error}")
    canonical = next(f.canonical for f in mapping.fields if f.native == spec.name)
    kinds = [_json_kind(v) for v in values]
    sent = pa.array([json.dumps(v, ensure_ascii=False) if w else None for v, w in zip(values, wrong, strict=True)],
                    pa.string())
    why = pa.array([f"wrong JSON type: {k}, expected {_expected(spec.type)}" if w else None
                    for k, w in zip(kinds, wrong, strict=True)], pa.string())
    entries.append(intake.problem_literal(canonical, pa.array(wrong), sent, why))
    return pa.array([None if w else v for v, w in zip(values, wrong, strict=True)], spec.type)


def _fits(value: Any, kind: pa.DataType) -> bool:
    if pa.types.is_string(kind):
        return isinstance(value, str)
    if pa.types.is_floating(kind):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if pa.types.is_integer(kind):
        return isinstance(value, int) and not isinstance(value, bool)
    try:
        pa.array([value], kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "null"


def _expected(kind: pa.DataType) -> str:
    if pa.types.is_string(kind):
        return "a string"
    return "a number" if pa.types.is_floating(kind) or pa.types.is_integer(kind) else str(kind)


def _native_type(mapping: DatasetMapping, canonical: str) -> pa.DataType:
    """Codes, dates and times travel as strings; other fields as their canonical type (e.g. numbers)."""
    spec = next(f for f in mapping.fields if f.canonical == canonical)
    if spec.codes is not None or spec.date is not None or spec.timestamp is not None:
        return pa.string()
    return mapping.dataset.schema.field(canonical).type


def build(settings: ExchangeSettings) -> ShanghaiAdapter:
    """Shanghai's adapter from EXCHANGE_SHANGHAI_API_URL and its credentials.

    OAuth2 client credentials (EXCHANGE_SHANGHAI_CLIENT_ID and _CLIENT_SECRET, token endpoint
    EXCHANGE_SHANGHAI_TOKEN_URL or <api url>/oauth/token) are used when set, else the static bearer token
    EXCHANGE_SHANGHAI_API_TOKEN.
    """
    if not settings.shanghai_api_url:
        raise TerminalError(
            f"Shanghai's API is not configured: set {URL_SETTING} to its base URL "
            f"(e.g. https://host:port) and {CLIENT_ID_SETTING}/{CLIENT_SECRET_SETTING} or {TOKEN_SETTING}"
        )
    base = settings.shanghai_api_url.rstrip("/")
    credentials: TokenSource
    secret = settings.shanghai_client_secret.get_secret_value() if settings.shanghai_client_secret else ""
    if settings.shanghai_client_id or secret:
        if not (settings.shanghai_client_id and secret):
            raise TerminalError(f"set both {CLIENT_ID_SETTING} and {CLIENT_SECRET_SETTING}")
        credentials = ClientCredentials(settings.shanghai_token_url or base + TOKEN_PATH,
                                        settings.shanghai_client_id, secret)
    elif settings.shanghai_api_token:
        credentials = StaticToken(settings.shanghai_api_token)
    else:
        raise TerminalError(
            f"Shanghai's API credentials are not configured: set {CLIENT_ID_SETTING} and "
            f"{CLIENT_SECRET_SETTING} (OAuth2 client credentials) or {TOKEN_SETTING} (a static bearer token)"
        )
    return ShanghaiAdapter(
        base,
        credentials,
        retry=RetryPolicy(max_retries=settings.shanghai_max_retries),
        timeout=httpx.Timeout(settings.shanghai_timeout_seconds, connect=min(5.0, settings.shanghai_timeout_seconds)),
        trust=hub_trust(settings.home, settings.trust_anchor),
        max_pages=settings.shanghai_max_pages,
    )
