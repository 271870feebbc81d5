"""Sharing state under EXCHANGE_HOME/sharing: one JSON file per request, onward-sharing consents, party tokens.

Every read-modify-write holds the folder's exclusive lock (``.lock``) and writes through exchange/atomic.py,
so the CLI, the API server and the daily Airflow task never lose each other's steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exchange.atomic import write_text
from exchange.errors import BadInput, NotFound
from exchange.locking import file_lock
from exchange.sharing.models import OnwardConsent, SharingRequest

REQUEST_ID = re.compile(r"^req-[0-9]{8}-[0-9a-f]{6,12}$")


class SharingStore:
    """Requests (requests/<id>.json), consents (consents.json) and party tokens (party-tokens.json)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.requests_dir = directory / "requests"
        self.consents_path = directory / "consents.json"
        self.tokens_path = directory / "party-tokens.json"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sharing folder's exclusive lock."""
        with file_lock(self.dir / ".lock"):
            yield

    def path(self, request_id: str) -> Path:
        """Where a request lives (the id is checked first: it comes from callers)."""
        if not REQUEST_ID.match(request_id):
            raise BadInput(f"{request_id!r} is not a request id (req-YYYYMMDD-<hex>, as `exchange requests list` "
                           "shows)")
        return self.requests_dir / f"{request_id}.json"

    def get(self, request_id: str) -> SharingRequest:
        """One request, or NotFound."""
        path = self.path(request_id)
        if not path.exists():
            raise NotFound(f"unknown request {request_id}; `exchange requests list` shows the filed ones")
        return SharingRequest.model_validate_json(path.read_text(encoding="utf-8"))

    def all(self) -> list[SharingRequest]:
        """Every request, oldest first."""
        if not self.requests_dir.exists():
            return []
        found = [SharingRequest.model_validate_json(p.read_text(encoding="utf-8"))
                 for p in self.requests_dir.glob("req-*.json")]
        return sorted(found, key=lambda r: (r.filed_at, r.id))

    def put(self, request: SharingRequest) -> None:
        """Write a request (call under :meth:`locked`)."""
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.path(request.id), request.model_dump_json(indent=1))

    def consents(self) -> list[OnwardConsent]:
        """Every recorded onward-sharing consent."""
        if not self.consents_path.exists():
            return []
        return [OnwardConsent.model_validate(c) for c in json.loads(self.consents_path.read_text(encoding="utf-8"))]

    def add_consent(self, consent: OnwardConsent) -> None:
        """Record a consent (call under :meth:`locked`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        everything = [c.model_dump(mode="json") for c in [*self.consents(), consent]]
        write_text(self.consents_path, json.dumps(everything, ensure_ascii=False, indent=1))
