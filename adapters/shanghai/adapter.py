"""Shanghai's adapter: pages through `GET /api/v1/<resource>/records` following the cursor."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyarrow as pa

from adapters.base import Landing, PullRequest
from adapters.mapping import DatasetMapping, ProvinceMapping
from exchange.config import ExchangeSettings
from exchange.errors import SourceAuthError, SourceFormatError, TerminalError, TransientError

MAPPING_FILE = Path(__file__).parent / "mapping.yaml"
URL_SETTING = "EXCHANGE_SHANGHAI_API_URL"
TOKEN_SETTING = "EXCHANGE_SHANGHAI_API_TOKEN"
PAGE_SIZE = 500
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_HINT = "the API must answer {\"data\": [records], \"nextCursor\": string or null}"


class ShanghaiAdapter:
    """Pulls Shanghai's REST API; each page is landed, parsed and yielded as one canonical table."""

    province = "shanghai"

    def __init__(
        self, base_url: str, token: str, mapping: ProvinceMapping | None = None, page_size: int = PAGE_SIZE
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token.strip()
        self.mapping = mapping or ProvinceMapping.load(MAPPING_FILE)
        self.page_size = page_size

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
        headers = {"Accept": "application/json"}
        if self.token:  # no token: send none and let the API refuse us with a 401
            headers["Authorization"] = f"Bearer {self.token}"
        cursor: str | None = None
        page = 0
        with httpx.Client(timeout=TIMEOUT, headers=headers) as client:
            while True:
                page += 1
                query = {**params, "cursor": cursor} if cursor else params
                response = _get(client, url, query)
                landing.write(f"page-{page:05d}.json", response.content)
                where = f"page {page} (cursor {cursor or 'start'})"
                rows, next_cursor = _parse_page(response.content, url, where)
                if rows:
                    yield mapping.to_canonical(_native_table(rows, mapping, url, where), f"{url} {where}")
                if next_cursor is None:
                    return
                if next_cursor == cursor:
                    # A server that hands back the cursor it was given would keep us here forever.
                    raise SourceFormatError(url, where, "nextCursor repeats the cursor just requested", _HINT)
                cursor = next_cursor


def _check_aware(since: datetime | None) -> None:
    # A naive `since` would silently be read in the machine's local zone and shift the window.
    if since is not None and since.tzinfo is None:
        raise ValueError(f"since must be timezone-aware, got {since.isoformat()}")


def _iso(moment: datetime, tz: ZoneInfo) -> str:
    """Local ISO 8601 with offset, as Shanghai's API expects; microseconds kept so bounds stay exact."""
    return moment.astimezone(tz).isoformat()


def _get(client: httpx.Client, url: str, params: dict[str, str | int]) -> httpx.Response:
    try:
        response = client.get(url, params=params)
    except httpx.LocalProtocolError as exc:  # our request is malformed (e.g. a token with a newline)
        raise TerminalError(f"cannot send a request to Shanghai API {url}: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"Shanghai API {url} unreachable: {exc!r}") from exc
    status = response.status_code
    if status in (401, 403):
        raise SourceAuthError(
            f"Shanghai API {url} refused the token (HTTP {status}); check {TOKEN_SETTING}"
        )
    if status == 429 or status >= 500:
        raise TransientError(f"Shanghai API {response.url} answered HTTP {status}: {response.text[:200]}")
    if status != 200:
        raise TerminalError(f"Shanghai API {response.url} answered HTTP {status}: {response.text[:200]}")
    return response


def _parse_page(body: bytes, url: str, where: str) -> tuple[list[dict[str, Any]], str | None]:
    """The page's records and next cursor; anything else is a malformed payload."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        raise SourceFormatError(
            url, f"{where}, line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}", _HINT
        ) from exc
    except UnicodeDecodeError as exc:
        raise SourceFormatError(url, f"{where}, byte {exc.start}", "body is not UTF-8", _HINT) from exc
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


def _native_table(rows: list[dict[str, Any]], mapping: DatasetMapping, url: str, where: str) -> pa.Table:
    """Build the page's native columns with declared types.

    A field present in no record of the page is left out, so the mapping reports it as a missing
    column; a field absent from some records only is null there, a bad record the contract catches.
    """
    present: set[str] = set().union(*rows)
    schema = pa.schema(
        [(f.native, _native_type(mapping, f.canonical)) for f in mapping.fields if f.native in present]
    )
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SourceFormatError(url, where, f"a field has the wrong JSON type: {exc}", _HINT) from exc


def _native_type(mapping: DatasetMapping, canonical: str) -> pa.DataType:
    """Codes, dates and times travel as strings; other fields as their canonical type (e.g. numbers)."""
    spec = next(f for f in mapping.fields if f.canonical == canonical)
    if spec.codes is not None or spec.date is not None or spec.timestamp is not None:
        return pa.string()
    return mapping.dataset.schema.field(canonical).type


def build(settings: ExchangeSettings) -> ShanghaiAdapter:
    """Shanghai's adapter from EXCHANGE_SHANGHAI_API_URL and EXCHANGE_SHANGHAI_API_TOKEN."""
    if not settings.shanghai_api_url:
        raise TerminalError(
            f"Shanghai's API is not configured: set {URL_SETTING} to its base URL "
            f"(e.g. https://host:port) and {TOKEN_SETTING} to the bearer token"
        )
    if not settings.shanghai_api_token:
        raise TerminalError(f"Shanghai's API token is not configured: set {TOKEN_SETTING}")
    return ShanghaiAdapter(settings.shanghai_api_url, settings.shanghai_api_token)
