"""Signed checkpoints of the chain head, and the verifier's memory of the last verified checkpoint.

A checkpoint is an ordinary signed entry (action ``checkpoint``) appended under the log's lock: its
``prev_hash`` *is* the head it vouches for, so it can never name a head other than the one it follows.
It also records the lake's newest snapshot, so a catalog rolled back behind a checkpoint is caught.

``verified.json`` (beside the log) remembers where the last successful verify ended and which
manifests and extracts it checked; ``exchange verify --incremental`` starts from there. It is signed by the
hub, so an edited one is named; a checkpoint entry records the head the last verify covered
(``verified_seq``), so a deleted or replayed older ``verified.json`` is named while that checkpoint is in the
log. Only witnessed heads (witness.py) hold against someone who also cuts those checkpoints with the hub's key.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from exchange import atomic
from exchange.faults import crash_point
from exchange.provenance.events import HUB, Checkpoint, Kind
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.signing.canonical import canonical_bytes
from exchange.signing.roles import check_signer
from exchange.signing.signers import Signature, Signer
from exchange.signing.trust import TrustBundle, verify_signature

STATE_FILE = "verified.json"


def append_checkpoint(log: ProvenanceLog, signer: Signer, *, lake_snapshot: int | None,
                      manifests: int, archive_segment: int | None = None) -> ProvenanceEntry:
    """Append a signed checkpoint of the current chain head (the entry before it), naming the head the last
    recorded verify covered (from verified.json, when there is one) and the archive segment it closes."""
    crash_point("checkpoint.before_append")
    state = load_state(log.path.parent)
    optional: dict[str, int] = {}  # set only when known: an unset optional fact stays out of the entry
    if state is not None:
        optional["verified_seq"] = state.head_seq
    if archive_segment is not None:
        optional["archive_segment"] = archive_segment
    event = Checkpoint(lake_snapshot=lake_snapshot, manifests=manifests, **optional)
    return log.append(signer, event, actor=HUB, subject="provenance")


class VerifiedState(BaseModel):
    """What the last successful verify covered (kept in EXCHANGE_HOME/provenance/verified.json)."""

    verified_at: datetime = Field(description="When the verify ran")
    head_seq: int = Field(description="Last entry verified")
    head_hash: str = Field(description="entry_hash of the last entry verified")
    checkpoint_seq: int = Field(default=0, description="Last checkpoint entry verified (0: none yet)")
    checkpoint_hash: str = Field(default="", description="Its entry_hash")
    checkpoint_offset: int = Field(default=0, description="Byte offset of the checkpoint's line in log.jsonl")
    checkpoint_line: int = Field(default=1, description="Line number of the checkpoint's line")
    lake_snapshot: int | None = Field(default=None, description="Newest lake snapshot when verified")
    manifests: dict[str, str] = Field(default_factory=dict, description="batch id -> verified manifest digest")
    extracts: list[str] = Field(default_factory=list, description="Digests of verified extract manifests")
    archives: dict[str, str] = Field(default_factory=dict, description="archive name -> verified header digest")
    log_first_seq: int = Field(default=1, description="seq the live log started at (more than 1 after a truncation): "
                               "the checkpoint offset is only valid while it is unchanged")


class SignedState(BaseModel):
    """verified.json as written: the state and the hub's signature over its canonical JSON."""

    state: VerifiedState = Field(description="What the last successful verify covered")
    signature: Signature = Field(description="The hub's signature over the canonical state")


def _signed_bytes(state: VerifiedState) -> bytes:
    return canonical_bytes(state.model_dump(mode="json"))


def load_state(directory: Path, bundle: TrustBundle | None = None) -> VerifiedState | None:
    """The last verified state, or None if verify never passed here (or only an unsigned, pre-signing record
    exists). With `bundle`, its signature is checked: Mismatch naming verified.json when it does not match."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    doc = path.read_text(encoding="utf-8")
    try:
        signed = SignedState.model_validate_json(doc)
    except ValueError:
        VerifiedState.model_validate_json(doc)  # a record from before signing: readable, but not trusted
        return None
    if bundle is not None:
        # A VerificationError naming the file: edited, signed by a key the bundle does not hold, or by a key
        # whose role may not sign a checkpoint (only the hub's may).
        item = f"provenance/{STATE_FILE} (the last verify's record)"
        verify_signature(bundle, signed.signature, _signed_bytes(signed.state), signed.state.verified_at, item)
        check_signer(bundle, signed.signature, Kind.CHECKPOINT.value, item)
    return signed.state


def save_state(directory: Path, state: VerifiedState, signer: Signer) -> None:
    """Sign and write the state atomically; a failed write (a full disk) leaves the previous state and no
    partial file."""
    directory.mkdir(parents=True, exist_ok=True)
    signed = SignedState(state=state, signature=signer.sign(_signed_bytes(state)))
    atomic.write_text(directory / STATE_FILE, signed.model_dump_json(indent=2))
