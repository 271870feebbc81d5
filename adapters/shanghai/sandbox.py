"""A stand-in for Shanghai's REST API: a bearer-token HTTP server on 127.0.0.1 over a SQLite store.

    GET /api/v1/<resource>/records?updatedAfter=ISO&updatedBefore=ISO&cursor=C&limit=500
    -> {"data": [native records], "nextCursor": "..." | null}
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import secrets
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from adapters.mapping import ProvinceMapping
from adapters.shanghai.adapter import MAPPING_FILE, TOKEN_SETTING, URL_SETTING, ShanghaiAdapter
from adapters.shanghai.store import Position, RecordStore
from exchange.synthetic import DEFECT_COLUMN

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PREFIX = "/api/v1/"
SUFFIX = "/records"


class ShanghaiSandbox:
    """Serves seeded records the way Shanghai's API does; data and token live under `root`."""

    province = "shanghai"

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.mapping = ProvinceMapping.load(MAPPING_FILE)
        self.store = RecordStore(root / "shanghai.sqlite")
        self.token = _load_or_create_token(root / "api-token")
        self.resources = {m.source for m in self.mapping.datasets.values()}
        self._faults: deque[str] = deque()
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
        updated_us = table.column("updated_at").cast(pa.int64()).to_pylist()
        keys = table.column(mapping.dataset.key).to_pylist()
        bodies = (json.dumps(row, ensure_ascii=False) for row in native.to_pylist())
        self.store.append(
            mapping.source, ((u, k or "", body) for u, k, body in zip(updated_us, keys, bodies, strict=True))
        )

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
        """Point the Shanghai adapter at this running sandbox."""
        return {URL_SETTING: self.url, TOKEN_SETTING: self.token}

    def adapter(self) -> ShanghaiAdapter:
        """An adapter for this running sandbox."""
        return ShanghaiAdapter(self.url, self.token, self.mapping)

    def corrupt_next_page(self) -> None:
        """Make the next records request answer 200 with a truncated JSON body (for error-path tests)."""
        with self._lock:
            self._faults.append("corrupt")

    def fail_next_request(self, status: int = 503) -> None:
        """Make the next records request answer with HTTP `status` (e.g. 503 for a busy server)."""
        with self._lock:
            self._faults.append(str(status))

    def next_fault(self) -> str | None:
        """The failure to inject into the current request, if a test asked for one."""
        with self._lock:
            return self._faults.popleft() if self._faults else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sandbox: ShanghaiSandbox


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        sandbox = self.server.sandbox
        if not self._authorized(sandbox.token):
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
        if fault == "corrupt":
            # Cut the body mid-way: valid UTF-8 up to there, then JSON that ends too early.
            body = body[: max(1, len(body) // 2)].decode("utf-8", "ignore").encode()
        elif fault is not None:
            self._send(int(fault), {"error": "injected failure"})
            return
        self._send_bytes(200, body)

    def _authorized(self, token: str) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    def _send(self, status: int, doc: dict[str, str], headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(doc).encode(), headers)

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        log.debug("shanghai sandbox: " + format, *args)


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


def _load_or_create_token(path: Path) -> str:
    """The API token: kept under root (mode 0600) so a re-created sandbox accepts the same one."""
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(token + "\n")
    return token


def create(root: Path) -> ShanghaiSandbox:
    """A Shanghai sandbox keeping its SQLite store and API token under `root`."""
    return ShanghaiSandbox(root)
