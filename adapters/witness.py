"""A province data office as a witness of the hub's log head (the sandboxes' stand-in for the real office).

The office signs a :class:`~exchange.provenance.events.Countersign` over the head with its office key and
journals it on its own side (``countersign/journal.jsonl``: what an auditor asks the office for). It refuses
to countersign a head behind the newest one it signed, or a different entry at a seq it already signed: that
would be the hub forking or cutting its history.

Two transports carry the request: Shanghai's, over its REST API (``POST /countersign`` with the API's bearer
token, :class:`HttpWitness`); the others', a request file dropped in the office's inbox
(``<sandbox>/countersign/requests/``) and an answer file picked up from ``countersign/answers/``
(:class:`OfficeWitness`), the shape of Jiangsu's file drops, Zhejiang's and Anhui's exports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from adapters.authenticity import office, sandbox_keyring
from exchange.errors import Refused
from exchange.provenance.events import Countersign, Kind
from exchange.provenance.log import ProvenanceEntry
from exchange.provenance.tsa import TSA_DIR, LocalTsa
from exchange.provenance.witness import (
    JOURNAL,
    Authority,
    Countersignature,
    HeadWitness,
    WitnessReceipt,
    countersign_bytes,
    now_iso,
    read_journal,
    witness_head,
)
from exchange.signing.keyring import Keyring

if TYPE_CHECKING:
    from exchange.hub import Hub

COUNTERSIGN_PATH = "/" + Kind.COUNTERSIGN.value  # Shanghai's API endpoint for countersign requests
CONFLICT = HTTPStatus.CONFLICT  # the office refuses: the head contradicts what it signed before
COUNTERSIGN_DIR = Kind.COUNTERSIGN.value  # <sandbox>/countersign/: the office's inbox, outbox and journal


class OfficeWitness:
    """One province office answering countersign requests for the hub's log head."""

    def __init__(self, province: str, root: Path, keyring: Keyring | None = None) -> None:
        self.province = province
        self.name = office(province)
        self.dir = root / COUNTERSIGN_DIR
        self.keyring = keyring or sandbox_keyring(root)
        self.keyring.signer(self.name)  # made (and trusted) now, before the hub reads the bundle to check answers

    @property
    def journal(self) -> Path:
        """The office's own record of every head it countersigned."""
        return self.dir / JOURNAL

    def countersign(self, seq: int, entry_hash: str) -> Countersignature:
        """The hub's side of the file drop: drop a request in the office's inbox, have it answered, read the
        answer."""
        requests = self.dir / "requests"
        requests.mkdir(parents=True, exist_ok=True)
        request = requests / f"head-{seq:010d}-{entry_hash[:16]}.json"
        request.write_text(json.dumps({"seq": seq, "entry_hash": entry_hash}), encoding="utf-8")
        answer = self.answer(request)
        return Countersignature.model_validate_json(answer.read_text(encoding="utf-8"))

    def answer(self, request: Path) -> Path:
        """The office's side of the file drop: sign the requested head, leave the answer, remove the request."""
        asked = json.loads(request.read_text(encoding="utf-8"))
        line = self.sign_head(int(asked["seq"]), str(asked["entry_hash"])).model_dump_json()
        answers = self.dir / "answers"
        answers.mkdir(parents=True, exist_ok=True)
        answer = answers / request.name
        answer.write_text(line, encoding="utf-8")
        request.unlink()
        return answer

    def sign_head(self, seq: int, entry_hash: str) -> Countersignature:
        """The office's side, whatever the transport: sign the head (Refused if it contradicts the journal)
        and journal it."""
        newest = self.latest()
        if newest is not None:
            if seq < newest.statement.seq:
                raise Refused(f"{self.name} already countersigned seq {newest.statement.seq}; it will not sign the "
                              f"older head seq {seq} (a cut history)")
            if seq == newest.statement.seq and entry_hash != newest.statement.entry_hash:
                raise Refused(f"{self.name} already countersigned a different entry at seq {seq} (a forked history)")
        statement = Countersign(seq=seq, entry_hash=entry_hash, time=now_iso())
        signed = Countersignature(witness=self.name, statement=statement,
                                  signature=self.keyring.signer(self.name).sign(countersign_bytes(statement)))
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as handle:
            handle.write(signed.model_dump_json() + "\n")
        return signed

    def latest(self) -> Countersignature | None:
        """The newest head this office countersigned."""
        return read_journal(self.journal)


class HttpWitness:
    """The hub's side of Shanghai's transport: POST the head to the office's API, read the signed answer."""

    def __init__(self, office_side: OfficeWitness, url: str, token: str) -> None:
        self.name = office_side.name
        self._journal = office_side.journal
        self.url, self.token = url.rstrip("/"), token

    def countersign(self, seq: int, entry_hash: str) -> Countersignature:
        """POST {seq, entry_hash} to <api>/countersign with the API's bearer token."""
        answer = httpx.post(self.url + COUNTERSIGN_PATH, json={"seq": seq, "entry_hash": entry_hash},
                            headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        if answer.status_code == CONFLICT:
            raise Refused(str(answer.json().get("error", "the office refused to countersign")))
        answer.raise_for_status()
        return Countersignature.model_validate_json(answer.content)

    def latest(self) -> Countersignature | None:
        """The newest head the office countersigned (its journal)."""
        return read_journal(self._journal)


def office_witnesses(sandboxes: Path, provinces: list[str] | None = None) -> list[OfficeWitness]:
    """The offices whose sandboxes live under `sandboxes` (or the named provinces), in name order."""
    names = provinces if provinces is not None else sorted(p.name for p in sandboxes.iterdir() if p.is_dir())
    return [OfficeWitness(p, sandboxes / p) for p in names]


@contextmanager
def reached(sandboxes: Path, provinces: list[str] | None = None) -> Iterator[list[HeadWitness]]:
    """The offices as the hub reaches them: Shanghai's over its API (its sandbox served for the call), the
    others through their inboxes."""
    with ExitStack() as stack:
        found: list[HeadWitness] = []
        for witness in office_witnesses(sandboxes, provinces):
            if witness.province == "shanghai":
                from adapters.shanghai.sandbox import ShanghaiSandbox

                api = ShanghaiSandbox(sandboxes / "shanghai")
                api.start()
                stack.callback(api.stop)
                found.append(HttpWitness(witness, api.url, api.token))
            else:
                found.append(witness)
        yield found


def witness_hub(hub: Hub, provinces: list[str] | None = None) -> tuple[WitnessReceipt, ProvenanceEntry]:
    """Witness the hub's current log head: every province office under the sandboxes folder (or the named
    provinces) countersigns it and the time-stamping authority stamps it (the operator's
    ``EXCHANGE_WITNESS_TSA_URL``, else a local one under EXCHANGE_HOME/tsa for the call's duration)."""
    url = hub.settings.witness_tsa_url
    local = None if url else LocalTsa(hub.layout.home / TSA_DIR)
    with reached(hub.layout.sandboxes, provinces if hub.layout.sandboxes.is_dir() else []) as offices:
        try:
            if local is not None:
                url = local.start()
            assert url is not None
            authority = Authority("local" if local is not None else url, url)
            return witness_head(hub.log, hub.signer, hub.keyring.trust_bundle(), offices, [authority])
        finally:
            if local is not None:
                local.stop()
