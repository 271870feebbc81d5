"""A stand-in for Shanghai's REST API: a bearer-token HTTP server on 127.0.0.1 over a SQLite store.

    POST /oauth/token  (grant_type=client_credentials, client_id, client_secret; form or HTTP Basic)
    -> {"access_token": "...", "token_type": "Bearer", "expires_in": 300}
    GET /api/v1/<resource>/records?updatedAfter=ISO&updatedBefore=ISO&cursor=C&limit=500
    -> {"data": [native records], "nextCursor": "..." | null}

The records endpoint accepts an issued, unexpired OAuth2 token or the sandbox's static token (the demo's
path). Tests can inject faults: HTTP errors with Retry-After, slow answers, truncated bodies, and expire
every issued token.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from adapters.authenticity import SourceTrust, office, sandbox_keyring, sign, signature_headers
from adapters.mapping import ProvinceMapping
from adapters.shanghai.adapter import MAPPING_FILE, TOKEN_PATH, URL_SETTING, ShanghaiAdapter
from adapters.shanghai.auth import CLIENT_ID_SETTING, CLIENT_SECRET_SETTING, TOKEN_SETTING, ClientCredentials
from adapters.shanghai.retry import RetryPolicy
from adapters.shanghai.store import Position, RecordStore
from adapters.witness import CONFLICT, COUNTERSIGN_PATH, OfficeWitness
from exchange.errors import Refused
from exchange.signing.keyring import Keyring
from exchange.signing.signers import KeySigner
from exchange.synthetic import DEFECT_COLUMN

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PREFIX = "/api/v1/"
SUFFIX = "/records"
TOKEN_TTL = 300.0
_SEED_ROWS = 100_000
_JSON_SPECIAL = r'[\x00-\x1f\\"]'  # what json.dumps escapes when ensure_ascii is off
_JSON_SHORT = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour of the next records request."""

    status: int | None = None  # answer with this HTTP status instead of the page
    retry_after: str | None = None  # with this Retry-After header
    corrupt: bool = False  # answer 200 with a truncated body
    delay: float = 0.0  # wait this long before answering (to trip the client's timeout)
    # Answer only once this event is set: a server that keeps a client waiting for as long as the test says,
    # so only the client's own timeout can end the wait (however slow the machine).
    hold: threading.Event | None = None
    content_type: str | None = None  # answer 200 with this Content-Type and an HTML error page instead
    next_cursor: str | None = None  # answer the page with this nextCursor (to make a pagination loop)
    expire_tokens: bool = False  # expire every issued token now and answer 401, as a revocation would
    extra_member: str | None = None  # append this JSON text to the page object (e.g. a repeated "data" key)


class ShanghaiSandbox:
    """Serves seeded records the way Shanghai's API does; data and token live under `root`."""

    province = "shanghai"

    def __init__(self, root: Path, keyring: Keyring | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        # Shanghai's data office signs every page; its public key is in this keyring's trust bundle.
        self.keyring = keyring or sandbox_keyring(root)
        # Made (and trusted in the keyring's bundle) now, not at the first page a hub may already be reading.
        self._signer: KeySigner = self.keyring.signer(office(self.province))
        self.mapping = ProvinceMapping.load(MAPPING_FILE)
        self.store = RecordStore(root / "shanghai.sqlite")
        self.token = _load_or_create_token(root / "api-token")
        self.client_id = "yrd-exchange-hub"
        self.client_secret = _load_or_create_token(root / "client-secret")
        self.token_ttl = TOKEN_TTL
        self.tokens_issued = 0
        self._issued: dict[str, float] = {}  # access token -> monotonic expiry
        self.resources = {m.source for m in self.mapping.datasets.values()}
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def seed(self, dataset: str, table: pa.Table) -> None:
        """Append canonical records to the dataset's resource, rendered as Shanghai's JSON."""
        mapping = self.mapping.dataset(dataset)
        if DEFECT_COLUMN in table.column_names:
            table = table.drop_columns([DEFECT_COLUMN])
        native = mapping.from_canonical(table)
        time_field = mapping.native_name("updated_at")
        # Arrow's strftime %z gives +0800; Shanghai's API writes ISO 8601's +08:00.
        with_colon = pc.replace_substring_regex(
            native.column(time_field), pattern=r"([+-]\d{2})(\d{2})$", replacement=r"\1:\2"
        )
        native = native.set_column(native.schema.get_field_index(time_field), time_field, with_colon)
        updated_us = table.column("updated_at").cast(pa.int64())
        keys = table.column(mapping.dataset.key)
        self.store.append(mapping.source, _store_rows(updated_us, keys, native))

    def start(self) -> None:
        """Serve on 127.0.0.1 at an ephemeral port, in a daemon thread."""
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", 0), _Handler)
        server.sandbox = self
        self._server = server
        # A short poll interval makes stop() return promptly (the default waits up to 0.5 s).
        serve = functools.partial(server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="shanghai-sandbox", daemon=True)
        self._thread.start()
        log.info("Shanghai sandbox serving %s", self.url)

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        """The base URL (only while started)."""
        if self._server is None:
            raise RuntimeError("the Shanghai sandbox is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def env(self) -> dict[str, str]:
        """Point the Shanghai adapter at this running sandbox (static token: the demo's path)."""
        return {URL_SETTING: self.url, TOKEN_SETTING: self.token}

    def oauth_env(self) -> dict[str, str]:
        """Point the Shanghai adapter at this running sandbox with OAuth2 client credentials."""
        return {URL_SETTING: self.url, CLIENT_ID_SETTING: self.client_id, CLIENT_SECRET_SETTING: self.client_secret}

    @property
    def trust(self) -> SourceTrust:
        """The trust bundle that holds this sandbox's signing key (what a hub reading it must trust)."""
        return SourceTrust(self.keyring.dir)

    def sign_page(self, target: str, body: bytes) -> dict[str, str]:
        """The signature headers for a page served for request target `target` (path and query)."""
        return signature_headers(sign(self._signer, self.province, target, body))

    def adapter(self) -> ShanghaiAdapter:
        """An adapter for this running sandbox (static token)."""
        return ShanghaiAdapter(self.url, self.token, self.mapping, trust=self.trust)

    def oauth_adapter(
        self, retry: RetryPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> ShanghaiAdapter:
        """An adapter for this running sandbox using its OAuth2 token endpoint."""
        source = ClientCredentials(self.url + TOKEN_PATH, self.client_id, self.client_secret, clock=clock)
        return ShanghaiAdapter(self.url, source, self.mapping, retry=retry, trust=self.trust)

    def corrupt_next_page(self) -> None:
        """Make the next records request answer 200 with a truncated JSON body (for error-path tests)."""
        self.inject(Fault(corrupt=True))

    def fail_next_request(self, status: int = 503, times: int = 1, retry_after: str | None = None) -> None:
        """Make the next `times` records requests answer HTTP `status` (with Retry-After if given)."""
        for _ in range(times):
            self.inject(Fault(status=status, retry_after=retry_after))

    def inject(self, fault: Fault) -> None:
        """Queue a fault for the next records request."""
        with self._lock:
            self._faults.append(fault)

    def next_fault(self) -> Fault | None:
        """The failure to inject into the current request, if a test asked for one."""
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def expire_tokens(self) -> None:
        """Expire every issued OAuth2 token now, as a server restart or revocation would."""
        with self._lock:
            self._issued.clear()

    def issue_token(self, client_id: str, client_secret: str) -> str | None:
        """A new access token for valid client credentials, else None."""
        valid = hmac.compare_digest(client_id.encode(), self.client_id.encode()) and hmac.compare_digest(
            client_secret.encode(), self.client_secret.encode()
        )
        if not valid:
            return None
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._issued[token] = time.monotonic() + self.token_ttl
            self.tokens_issued += 1
        return token

    def accepts(self, token: str) -> bool:
        """Whether `token` is the static token or an issued, unexpired one."""
        if hmac.compare_digest(token.encode(), self.token.encode()):
            return True
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is not None and time.monotonic() < expiry


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sandbox: ShanghaiSandbox

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that timed out and hung up is expected here (the timeout tests); anything else is not.
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("shanghai sandbox: client %s hung up", client_address)
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        sandbox = self.server.sandbox
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if urlsplit(self.path).path == COUNTERSIGN_PATH:
            self._countersign(sandbox, body)
            return
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if urlsplit(self.path).path != TOKEN_PATH:
            self._send(404, {"error": f"no such endpoint: {self.path}"})
            return
        if form.get("grant_type") != "client_credentials":
            self._send(400, {"error": "unsupported_grant_type"})
            return
        client_id, client_secret = _basic_auth(self.headers.get("Authorization", ""))
        client_id = client_id or form.get("client_id", "")
        client_secret = client_secret or form.get("client_secret", "")
        token = sandbox.issue_token(client_id, client_secret)
        if token is None:
            self._send(401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="shanghai"'})
            return
        doc = {"access_token": token, "token_type": "Bearer", "expires_in": int(sandbox.token_ttl)}
        self._send_bytes(200, json.dumps(doc).encode(), {"Cache-Control": "no-store"})

    def _countersign(self, sandbox: ShanghaiSandbox, body: bytes) -> None:
        """Shanghai's data office countersigns the hub's log head (adapters/witness.py), behind the API's auth."""
        if not self._authorized(sandbox):
            self._send(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="shanghai"'})
            return
        try:
            asked = json.loads(body)
            seq, entry_hash = int(asked["seq"]), str(asked["entry_hash"])
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": "expected JSON {seq, entry_hash}"})
            return
        try:
            signed = OfficeWitness(sandbox.province, sandbox.root, sandbox.keyring).sign_head(seq, entry_hash)
        except Refused as exc:
            self._send(CONFLICT, {"error": str(exc)})
            return
        self._send_bytes(200, signed.model_dump_json().encode())

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        sandbox = self.server.sandbox
        if not self._authorized(sandbox):
            self._send(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="shanghai"'})
            return
        parts = urlsplit(self.path)
        resource = parts.path[len(PREFIX) : -len(SUFFIX)]
        shaped = parts.path.startswith(PREFIX) and parts.path.endswith(SUFFIX)
        if not (shaped and resource in sandbox.resources):
            self._send(404, {"error": f"no such resource: {parts.path}"})
            return
        try:
            after, before, cursor, limit = _query(parse_qs(parts.query))
        except ValueError as exc:  # includes a bad ISO 8601 value or limit
            self._send(400, {"error": str(exc)})
            return
        page = sandbox.store.page(resource, after, before, cursor, limit)
        # The stored bodies are already JSON: splice them in rather than parse and re-serialise.
        text = '{"data":[' + ",".join(page.bodies) + '],"nextCursor":' + json.dumps(page.next_cursor) + "}"
        body = text.encode()
        fault = sandbox.next_fault()
        content_type: str | None = None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.hold is not None:
                fault.hold.wait()
            if fault.expire_tokens:
                sandbox.expire_tokens()
                self._send(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
                return
            if fault.next_cursor is not None:
                text = '{"data":[' + ",".join(page.bodies) + '],"nextCursor":' + json.dumps(fault.next_cursor) + "}"
                body = text.encode()
            if fault.extra_member is not None:
                body = (body.decode()[:-1] + "," + fault.extra_member + "}").encode()
            if fault.content_type is not None:
                # A gateway's maintenance page: 200, but not the API's JSON.
                content_type = fault.content_type
                body = "<html><body><h1>系统维护中</h1></body></html>".encode()
            if fault.corrupt:
                # Cut the body mid-way: valid UTF-8 up to there, then JSON that ends too early.
                body = body[: max(1, len(body) // 2)].decode("utf-8", "ignore").encode()
            elif fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
                self._send(fault.status, {"error": "injected failure"}, headers)
                return
        # Signed last, over the bytes actually sent: a province that serves a broken page signs it too.
        self._send_bytes(200, body, sandbox.sign_page(self.path, body), content_type)

    def _authorized(self, sandbox: ShanghaiSandbox) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and sandbox.accepts(given.strip())

    def _send(self, status: int, doc: dict[str, str], headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(doc).encode(), headers)

    def _send_bytes(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, content_type: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        log.debug("shanghai sandbox: " + format, *args)


def _store_rows(updated_us: pa.ChunkedArray, keys: pa.ChunkedArray, native: pa.Table) -> Iterator[tuple[int, str, str]]:
    """(updated_us, key, native JSON) per record, rendered `_SEED_ROWS` records at a time (one store
    transaction still takes them all, so a reader never sees half a seed)."""
    for start in range(0, native.num_rows, _SEED_ROWS):
        bodies = _json_objects(native.slice(start, _SEED_ROWS)).to_pylist()
        stamps = updated_us.slice(start, _SEED_ROWS).to_pylist()
        names = keys.slice(start, _SEED_ROWS).to_pylist()
        yield from ((u, k or "", body) for u, k, body in zip(stamps, names, bodies, strict=True))


def _json_objects(native: pa.Table) -> pa.Array:
    """Each row as ``json.dumps(row, ensure_ascii=False)`` would write it (keys in column order, ", " and
    ": " separators, null for a missing value), built column-wise with Arrow string kernels: a json.dumps
    per record was most of the seeding time. Non-string values (amounts) still go through json.dumps."""
    pieces = []
    for index, name in enumerate(native.column_names):
        column = native.column(name).combine_chunks()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            value = pc.fill_null(pc.binary_join_element_wise('"', _json_escaped(column), '"', ""), "null")
        else:
            value = pa.array([json.dumps(v) for v in column.to_pylist()], pa.string())
        key = ("{" if index == 0 else ", ") + json.dumps(name, ensure_ascii=False) + ": "
        pieces.append(pc.binary_join_element_wise(key, value, ""))
    if not pieces:
        return pa.repeat(pa.scalar("{}"), native.num_rows)
    return pc.binary_join_element_wise(*pieces, "}", "")


def _json_escaped(texts: pa.Array) -> pa.Array:
    """JSON string escaping as json.dumps(ensure_ascii=False) does it: backslash, quote, control characters."""
    if not pc.any(pc.match_substring_regex(texts, _JSON_SPECIAL)).as_py():
        return texts  # the usual case: nothing to escape, no copies
    texts = pc.replace_substring(texts, "\\", "\\\\")  # first, so the escapes added below stay single
    texts = pc.replace_substring(texts, '"', '\\"')
    for code in range(0x20):
        char = chr(code)
        texts = pc.replace_substring(texts, char, _JSON_SHORT.get(char, f"\\u{code:04x}"))
    return texts


def _query(query: dict[str, list[str]]) -> tuple[int | None, int | None, Position | None, int]:
    """updatedAfter/updatedBefore (ISO 8601 with offset) as epoch microseconds, cursor and limit."""

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    def instant(name: str) -> int | None:
        text = one(name)
        if text is None:
            return None
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError(f"{name} needs a UTC offset, e.g. 2026-11-03T10:00:00+08:00")
        # Integer microseconds: a float timestamp() would round at this magnitude.
        return (moment - _EPOCH) // timedelta(microseconds=1)

    cursor_text = one("cursor")
    limit = int(one("limit") or 500)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    cursor = Position.decode(cursor_text) if cursor_text else None
    return instant("updatedAfter"), instant("updatedBefore"), cursor, limit


def _basic_auth(header: str) -> tuple[str, str]:
    """Client id and secret from an HTTP Basic Authorization header ('' for none)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return unquote(user), unquote(password)


def _load_or_create_token(path: Path) -> str:
    """A secret kept under root (mode 0600) so a re-created sandbox accepts the same one."""
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(token + "\n")
    return token


def create(root: Path, keyring: Keyring | None = None) -> ShanghaiSandbox:
    """A Shanghai sandbox keeping its SQLite store and API token under `root`, signing pages with the office
    key in `keyring` (default: see :func:`adapters.authenticity.sandbox_keyring`)."""
    return ShanghaiSandbox(root, keyring)
