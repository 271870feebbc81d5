"""Witnessed heads: the log head countersigned by parties other than the hub, and verify's check of them.

A witness is a province data office (its key signs a :class:`~exchange.provenance.events.Countersign` over the
head's seq and entry hash, and the office keeps its own journal of what it signed) or an RFC 3161 time-stamping
authority (its token is over the same head). The hub stores what they answered as a receipt file
(``provenance/witness/head-<seq>.json``) and a ``witness`` entry in the log naming the head, the office
signatures and each token's digest.

Why it holds against an insider with the hub's key and disk: the office signatures and the TSA token are over
the head's entry hash, which commits to every entry before it. Rewriting anything up to a witnessed head
changes that hash; cutting the tail below it leaves a witnessed seq the log no longer has; deleting the
receipts does not help while the offices' journals (kept on the province side) still name the head.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from exchange import atomic
from exchange.errors import BadInput, VerificationError
from exchange.provenance.events import HUB, Countersign, Kind, Witness
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.problems import Mismatch
from exchange.provenance.tsa import check_stamp, request_stamp, stamp_time
from exchange.signing.canonical import canonical_bytes
from exchange.signing.roles import Signed, check_signer
from exchange.signing.signers import Signature, Signer
from exchange.signing.trust import TrustBundle, verify_signature

RECEIPTS = Kind.WITNESS.value  # provenance/witness/: one receipt per witnessed head
JOURNAL = "journal.jsonl"  # an office's own record of the heads it countersigned


def countersign_bytes(statement: Countersign) -> bytes:
    """What an office signs: the canonical statement, tagged with its kind so it means nothing else."""
    return canonical_bytes({"action": statement.kind.value, **statement.details()})


def stamp_bytes(seq: int, entry_hash: str) -> bytes:
    """What a time-stamping authority stamps: the head, canonically."""
    return canonical_bytes({"head_seq": seq, "head_hash": entry_hash})


class Countersignature(BaseModel, frozen=True):
    """One office's answer to a countersign request."""

    witness: str = Field(description="The office actor, e.g. jiangsu.data_office")
    statement: Countersign = Field(description="What it signed: seq, entry hash, time")
    signature: Signature = Field(description="Its office key's signature over the canonical statement")


class TimeStampReceipt(BaseModel, frozen=True):
    """One RFC 3161 authority's token over the head."""

    authority: str = Field(description="Name of the time-stamping authority")
    token: str = Field(description="The DER time-stamp response, base64")
    time: str = Field(description="The time the authority put in the token (ISO 8601)")

    def digest(self) -> str:
        """SHA-256 of the DER token (what the log's witness entry carries)."""
        return hashlib.sha256(base64.b64decode(self.token)).hexdigest()


class WitnessReceipt(BaseModel, frozen=True):
    """Everything the witnesses answered for one head (kept in provenance/witness/head-<seq>.json)."""

    head_seq: int = Field(description="seq of the witnessed head")
    head_hash: str = Field(description="Its entry_hash")
    countersignatures: list[Countersignature] = Field(description="The offices' signatures over the head")
    stamps: list[TimeStampReceipt] = Field(description="The time-stamping authorities' tokens over the head")

    def witnesses(self) -> list[str]:
        """Who witnessed: office actors, then `tsa:<authority>`."""
        return [c.witness for c in self.countersignatures] + [f"tsa:{s.authority}" for s in self.stamps]


class HeadWitness(Protocol):
    """A party other than the hub that countersigns log heads and remembers what it signed."""

    name: str

    def countersign(self, seq: int, entry_hash: str) -> Countersignature:
        """Countersign the head (over the party's own transport) and journal it on the party's side."""
        ...

    def latest(self) -> Countersignature | None:
        """The newest head this party countersigned, from its own journal (None: never)."""
        ...


@dataclass(frozen=True)
class Authority:
    """An RFC 3161 time-stamping authority to ask."""

    name: str
    url: str


def receipt_path(provenance: Path, seq: int) -> Path:
    """Where the receipt of head `seq` lives."""
    return provenance / RECEIPTS / f"head-{seq:010d}.json"


def witness_head(log: ProvenanceLog, signer: Signer, bundle: TrustBundle, witnesses: Sequence[HeadWitness],
                 authorities: Sequence[Authority]) -> tuple[WitnessReceipt, ProvenanceEntry]:
    """Have the current head countersigned by every witness and stamped by every authority; store the receipt
    and append the ``witness`` entry. An answer that does not verify is refused (VerificationError), so a
    receipt never carries a signature verify would reject."""
    head = log.head()
    if head is None:
        raise BadInput(f"the provenance log {log.path} is empty: nothing to witness yet")
    signatures = [w.countersign(head.seq, head.entry_hash) for w in witnesses]
    for answer in signatures:
        check_countersignature(answer, bundle, head.seq, head.entry_hash, f"countersignature by {answer.witness}")
    stamps = []
    for authority in authorities:
        token = request_stamp(authority.url, stamp_bytes(head.seq, head.entry_hash))
        stamps.append(TimeStampReceipt(authority=authority.name, token=base64.b64encode(token).decode(),
                                       time=stamp_time(token)))
    receipt = WitnessReceipt(head_seq=head.seq, head_hash=head.entry_hash, countersignatures=signatures,
                             stamps=stamps)
    path = receipt_path(log.path.parent, head.seq)
    data = receipt.model_dump_json(indent=2).encode()
    atomic.write_bytes(path, data)
    digests = {"receipt": hashlib.sha256(data).hexdigest(), **{f"tsa:{s.authority}": s.digest() for s in stamps}}
    entry = log.append(signer, Witness(
        head_seq=head.seq, head_hash=head.entry_hash, witnesses=receipt.witnesses(),
        countersignatures=[{"witness": c.witness, "key_id": c.signature.key_id, "algorithm": c.signature.algorithm,
                            "value": c.signature.value, "time": c.statement.time} for c in signatures],
    ), actor=HUB, subject="provenance", digests=digests)
    return receipt, entry


def check_countersignature(answer: Countersignature, bundle: TrustBundle, seq: int, entry_hash: str,
                           item: str) -> None:
    """The answer is over this head and signed by the named office's key in the bundle (VerificationError)."""
    s = answer.statement
    if (s.seq, s.entry_hash) != (seq, entry_hash):
        raise Mismatch(item, "countersigns another head", expected=f"seq {seq} {entry_hash}",
                       found=f"seq {s.seq} {s.entry_hash}")
    # The role first (an office key, never the hub's: roles.py), then that it is the very office named.
    owner = check_signer(bundle, answer.signature, Signed.HEAD_COUNTERSIGNATURE, item).owner
    if owner != answer.witness:
        raise Mismatch(item, f"signed by {owner}'s key, not by the witness it names", expected=answer.witness,
                       found=owner)
    verify_signature(bundle, answer.signature, countersign_bytes(s), datetime.fromisoformat(s.time), item)


def load_receipts(directory: Path) -> list[tuple[Path, WitnessReceipt | None]]:
    """The receipts in `directory` (None for one that does not parse), oldest head first."""
    if not directory.is_dir():
        return []
    found: list[tuple[Path, WitnessReceipt | None]] = []
    for path in sorted(directory.glob("head-*.json")):
        try:
            found.append((path, WitnessReceipt.model_validate_json(path.read_bytes())))
        except ValueError:
            found.append((path, None))
    return found


def read_journal(path: Path) -> Countersignature | None:
    """The newest countersignature an office journal records (None: empty or absent)."""
    if not path.exists():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Countersignature.model_validate(json.loads(lines[-1])) if lines else None


def office_journals(sandboxes: Path) -> list[tuple[str, Countersignature]]:
    """The newest head each office countersigned, from the journals the embedded sandboxes keep (the stand-in
    for asking each office; an office a hub reaches remotely is asked over its own transport)."""
    found: list[tuple[str, Countersignature]] = []
    for path in sorted(sandboxes.glob(f"*/{Kind.COUNTERSIGN.value}/{JOURNAL}")) if sandboxes.is_dir() else []:
        newest = read_journal(path)
        if newest is not None:
            found.append((newest.witness, newest))
    return found


@dataclass
class WitnessCheck:
    """What verify needs to check witnessed heads, and what it found about them."""

    bundle: TrustBundle
    receipts: list[tuple[Path, WitnessReceipt | None]]
    journals: list[tuple[str, Countersignature]]  # (whose journal, its newest countersignature)
    tsa_root: bytes | None  # the pinned root of the time-stamping authority (None: tokens not checkable)
    label: str = "provenance/witness"

    def seqs(self) -> set[int]:
        """Every seq some witness vouched for (verify watches their hashes while reading the chain)."""
        found = {r.head_seq for _, r in self.receipts if r is not None}
        return found | {c.statement.seq for _, c in self.journals}


@dataclass(frozen=True)
class WitnessedHead:
    """The newest head the witnesses vouched for, as verify reports it."""

    seq: int
    time: str
    witnesses: list[str]

    def describe(self) -> str:
        """One line for people."""
        return f"seq {self.seq} at {self.time} by {', '.join(self.witnesses)}"


def check_witnessed(check: WitnessCheck, hashes: dict[int, str], logged: Iterable[ProvenanceEntry], last_seq: int,
                    floor: int = 0) -> tuple[list[VerificationError], WitnessedHead | None]:
    """Check every receipt, journal and witness entry against the chain just verified.

    `hashes` maps seq -> entry_hash for the watched seqs the chain holds; `last_seq` is where the chain ends;
    seqs at or below `floor` were verified by an earlier run (incremental) and are skipped if not read again.
    """
    problems: list[VerificationError] = []
    by_seq = {r.head_seq: (p, r) for p, r in check.receipts if r is not None}
    for path, receipt in check.receipts:
        item = f"witness receipt {check.label}/{path.name}"
        if receipt is None:
            problems.append(Mismatch(item, "unreadable", expected="a witness receipt", found="unreadable"))
            continue
        for answer in receipt.countersignatures:
            try:
                check_countersignature(answer, check.bundle, receipt.head_seq, receipt.head_hash,
                                       f"{item}: countersignature by {answer.witness}")
            except VerificationError as exc:
                problems.append(exc)
        for stamp in receipt.stamps:
            if check.tsa_root is None:
                continue
            try:
                check_stamp(base64.b64decode(stamp.token), stamp_bytes(receipt.head_seq, receipt.head_hash),
                            check.tsa_root)
            except ValueError as exc:
                problems.append(Mismatch(f"{item}: time stamp by {stamp.authority}", str(exc),
                                         expected=f"a token over seq {receipt.head_seq}", found="does not verify"))
        problems.extend(_head_in_chain(item, receipt.head_seq, receipt.head_hash, hashes, last_seq, floor))
    for whose, answer in check.journals:
        item = f"witness journal of {whose}"
        problems.extend(_head_in_chain(item, answer.statement.seq, answer.statement.entry_hash, hashes, last_seq,
                                       floor))
    newest: WitnessedHead | None = None
    for entry in logged:
        head_seq = int(entry.details.get("head_seq", 0))
        item = f"witness entry seq {entry.seq} (head seq {head_seq})"
        held = by_seq.get(head_seq)
        if held is None:
            problems.append(Mismatch(item, "its receipt is missing", expected=f"{check.label}/"
                                     f"{receipt_path(Path(), head_seq).name}", found="no file"))
            continue
        digest = hashlib.sha256(held[0].read_bytes()).hexdigest()
        if digest != entry.digests.get("receipt"):
            problems.append(Mismatch(item, "its receipt was changed", expected=entry.digests.get("receipt"),
                                     found=digest))
            continue
        receipt = held[1]
        times = [s.time for s in receipt.stamps] or [c.statement.time for c in receipt.countersignatures]
        newest = WitnessedHead(head_seq, min(times) if times else entry.at.isoformat(), receipt.witnesses())
    return problems, newest


def _head_in_chain(item: str, seq: int, entry_hash: str, hashes: dict[int, str], last_seq: int,
                   floor: int) -> list[VerificationError]:
    found = hashes.get(seq)
    if found is None:
        if seq > last_seq:
            return [Mismatch(item, f"witnessed head seq {seq} is not in the log: entries after seq {last_seq} were "
                             "cut", expected=f"seq {seq} {entry_hash}", found=f"log ends at seq {last_seq}")]
        if seq <= floor:
            return []
        return [Mismatch(item, f"witnessed head seq {seq} was not found in the chain", expected=entry_hash,
                         found="no entry")]
    if found != entry_hash:
        return [Mismatch(item, f"the log was rewritten or forked after seq {seq} was witnessed: its entry differs",
                         expected=entry_hash, found=found)]
    return []


def now_iso() -> str:
    """The countersign time an office puts in its statement."""
    return datetime.now(UTC).isoformat()
