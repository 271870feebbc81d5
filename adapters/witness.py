"""A province data office as a witness of the hub's log head (the sandboxes' stand-in for the real office).

The hub drops a countersign request in the office's inbox (``<sandbox>/countersign/requests/``); the office
picks it up, signs a :class:`~exchange.provenance.events.Countersign` with its office key, journals it on its
own side (``countersign/journal.jsonl``: what an auditor asks the office for) and leaves the answer in
``countersign/answers/``. The office refuses to countersign a head behind the newest one it signed, or a
different entry at a seq it already signed: that would be the hub forking or cutting its history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.authenticity import office, sandbox_keyring
from exchange.errors import Refused
from exchange.provenance.events import Countersign, Kind
from exchange.provenance.log import ProvenanceEntry
from exchange.provenance.tsa import TSA_DIR, LocalTsa
from exchange.provenance.witness import (
    JOURNAL,
    Authority,
    Countersignature,
    WitnessReceipt,
    countersign_bytes,
    now_iso,
    read_journal,
    witness_head,
)
from exchange.signing.keyring import Keyring

if TYPE_CHECKING:
    from exchange.hub import Hub

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
        """The hub's side: drop a request in the office's inbox, have it answered, read the answer."""
        requests = self.dir / "requests"
        requests.mkdir(parents=True, exist_ok=True)
        request = requests / f"head-{seq:010d}-{entry_hash[:16]}.json"
        request.write_text(json.dumps({"seq": seq, "entry_hash": entry_hash}), encoding="utf-8")
        answer = self.answer(request)
        return Countersignature.model_validate_json(answer.read_text(encoding="utf-8"))

    def answer(self, request: Path) -> Path:
        """The office's side: sign the requested head (if it does not contradict the journal), journal it."""
        asked = json.loads(request.read_text(encoding="utf-8"))
        seq, entry_hash = int(asked["seq"]), str(asked["entry_hash"])
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
        line = signed.model_dump_json()
        with self.journal.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        answers = self.dir / "answers"
        answers.mkdir(parents=True, exist_ok=True)
        answer = answers / request.name
        answer.write_text(line, encoding="utf-8")
        request.unlink()
        return answer

    def latest(self) -> Countersignature | None:
        """The newest head this office countersigned."""
        return read_journal(self.journal)


def office_witnesses(sandboxes: Path, provinces: list[str] | None = None) -> list[OfficeWitness]:
    """The offices whose sandboxes live under `sandboxes` (or the named provinces), in name order."""
    names = provinces if provinces is not None else sorted(p.name for p in sandboxes.iterdir() if p.is_dir())
    return [OfficeWitness(p, sandboxes / p) for p in names]


def witness_hub(hub: Hub, provinces: list[str] | None = None) -> tuple[WitnessReceipt, ProvenanceEntry]:
    """Witness the hub's current log head: every province office under the sandboxes folder (or the named
    provinces) countersigns it and the time-stamping authority stamps it (the operator's
    ``EXCHANGE_WITNESS_TSA_URL``, else a local one under EXCHANGE_HOME/tsa for the call's duration)."""
    offices = office_witnesses(hub.layout.sandboxes, provinces) if hub.layout.sandboxes.is_dir() else []
    url = hub.settings.witness_tsa_url
    local = None if url else LocalTsa(hub.layout.home / TSA_DIR)
    try:
        if local is not None:
            url = local.start()
        assert url is not None
        authority = Authority("local" if local is not None else url, url)
        return witness_head(hub.log, hub.signer, hub.keyring.trust_bundle(), offices, [authority])
    finally:
        if local is not None:
            local.stop()
