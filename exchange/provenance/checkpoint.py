"""Signed checkpoints of the chain head, and the verifier's memory of the last verified checkpoint.

A checkpoint is an ordinary signed entry (action ``checkpoint``) appended under the log's lock: its
``prev_hash`` *is* the head it vouches for, so it can never name a head other than the one it follows.
It also records the lake's newest snapshot, so a catalog rolled back behind a checkpoint is caught.

``verified.json`` (beside the log) remembers where the last successful verify ended and which
manifests and extracts it checked; ``exchange verify --incremental`` starts from there.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from exchange import atomic
from exchange.faults import crash_point
from exchange.provenance.events import HUB, Checkpoint
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.signing.signers import Signer

STATE_FILE = "verified.json"


def append_checkpoint(log: ProvenanceLog, signer: Signer, *, lake_snapshot: int | None,
                      manifests: int) -> ProvenanceEntry:
    """Append a signed checkpoint of the current chain head (the entry before it)."""
    crash_point("checkpoint.before_append")
    return log.append(signer, Checkpoint(lake_snapshot=lake_snapshot, manifests=manifests), actor=HUB,
                      subject="provenance")


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


def load_state(directory: Path) -> VerifiedState | None:
    """The last verified state, or None if verify never passed here."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    return VerifiedState.model_validate_json(path.read_text(encoding="utf-8"))


def save_state(directory: Path, state: VerifiedState) -> None:
    """Write the state atomically; a failed write (a full disk) leaves the previous state and no partial file."""
    directory.mkdir(parents=True, exist_ok=True)
    atomic.write_text(directory / STATE_FILE, state.model_dump_json(indent=2))
