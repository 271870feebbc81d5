"""Stage records: what each stage of the hub writes to staging and returns to its caller, as typed models.

The stages hand each other these records, never loose dicts: pull writes a :class:`PullRecord` to
``pull.json`` and returns a :class:`PullResult`; validate writes and returns a :class:`ValidationRecord`
(``validation.json``); commit writes a :class:`LedgerRow` into the lake's ledger table and returns a
:class:`CommitSummary`; a department's extract is an :class:`ExtractResult`, a standing extract a
:class:`StandingExtract`, a quarantine replay a :class:`ReplayResult`. The Airflow layer and the CLI turn
them into JSON at their edge (``model_dump(mode="json")``), so XCom values stay plain JSON.

Every record carries ``format_version``; a reader refuses a version it does not know. Staging files are read
back with validation (:func:`read_record`): a truncated or hand-edited ``pull.json`` is a BadFile (terminal)
naming the file and the field, not a KeyError three stages later. JSON Schemas: schemas/stage-*.schema.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeAlias, TypeVar

import pydantic_core
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from exchange import atomic
from exchange.access.extract import SignedExtractManifest
from exchange.errors import BadFile, NotFound, validation_summary
from exchange.provenance.manifest import FileDigest, RuleCount

FORMAT_VERSION: Literal[1] = 1

PULL_FILE = "pull.json"
VALIDATION_FILE = "validation.json"


class StagePart(BaseModel):
    """Base of the parts of a stage record: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StageRecord(StagePart):
    """Base of every stage record: a part that also carries its format version."""

    format_version: Literal[1] = Field(
        default=FORMAT_VERSION,
        description="Version of this record's format; a reader refuses a version it does not know",
    )


# ---------------------------------------------------------------------------------------------------------
# pull


class DriftRecord(StagePart):
    """A native field the province sent that its mapping does not map (ignored until it is mapped)."""

    province: str = Field(description="Providing province")
    dataset: str = Field(description="Canonical dataset")
    field: str = Field(description="The unmapped native field's name")
    source: str = Field(description="Where the adapter met it (file, endpoint or view)")
    mapping_file: str = Field(description="The mapping file to add it to")


class SourceSignatureRecord(StagePart):
    """A province signature the adapter verified over landed bytes."""

    subject: str = Field(description="What the province signed (a landed file or stream)")
    sha256: str = Field(description="Hex SHA-256 the province vouched for")
    key_id: str = Field(description="Fingerprint of the province key that signed")
    owner: str = Field(description="Owner of that key in the trust bundle")
    signed_at: str = Field(description="When the province signed (UTC, as signed)")


class PullRecord(StageRecord):
    """``pull.json``: what the pull stage staged for one batch (or a replay staged in its place)."""

    batch_id: str = Field(description="Deterministic id from province, dataset and window")
    province: str = Field(description="Providing province")
    dataset: str = Field(description="Canonical dataset")
    replay_of: str | None = Field(default=None, description="Origin batch when this batch is a quarantine replay")
    window_start: AwareDatetime = Field(description="Start of the data interval (inclusive)")
    window_end: AwareDatetime = Field(description="End of the data interval (exclusive)")
    since: AwareDatetime | None = Field(description="Watermark the pull started after (exclusive); null = initial load")
    watermark: AwareDatetime | None = Field(
        description="Latest update time among the pulled records; null when none (or for a replay, which must "
                    "not move the province's watermark)")
    pulled: int = Field(ge=0, description="Records staged in pulled.parquet")
    deleted: int = Field(default=0, ge=0, description="Deletions staged in deleted.parquet")
    landing: list[FileDigest] = Field(description="Raw payloads landed, with their SHA-256 and size")
    drift: list[DriftRecord] = Field(description="Native fields the mapping ignored (schema drift)")
    source_signatures: list[SourceSignatureRecord] = Field(description="Province signatures the adapter verified")

    @field_validator("window_start", "window_end", "since", "watermark")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # One spelling on disk whatever zone the scheduler or the lake handed over.
        return value.astimezone(UTC) if value is not None else None


PullStatus: TypeAlias = Literal["pulled", "empty", "already_committed"]


class PullResult(StageRecord):
    """What the pull stage returns: the batch and whether there is anything to validate."""

    batch_id: str = Field(description="Deterministic id from province, dataset and window")
    status: PullStatus = Field(description="pulled (go on), empty (nothing new) or already_committed (a re-run)")
    pulled: int = Field(ge=0, description="Records pulled")
    deleted: int = Field(default=0, ge=0, description="Deletions pulled")


# ---------------------------------------------------------------------------------------------------------
# validate


class ValidationRecord(StageRecord):
    """``validation.json``: the contract check's verdict on one batch (what validate returns, commit reads)."""

    batch_id: str = Field(description="The batch checked")
    contract_id: str = Field(description="Data contract id")
    contract_version: str = Field(description="Data contract version")
    contract_sha256: str = Field(description="SHA-256 of the contract document the batch was checked against")
    pulled: int = Field(ge=0, description="Records checked")
    accepted: int = Field(ge=0, description="Records that passed every error-severity rule")
    quarantined: int = Field(ge=0, description="Records that failed at least one error-severity rule")
    warned: int = Field(ge=0, description="Accepted records flagged by warning-severity rules")
    gx_success: bool = Field(description="Whether the whole Great Expectations suite passed")
    held: bool = Field(description="Whether the batch was held (too many failures to commit)")
    rules: list[RuleCount] = Field(description="Per-rule failure counts")

    def counts(self) -> dict[str, int | bool]:
        """The counts a rejection report shows."""
        return {"pulled": self.pulled, "accepted": self.accepted, "quarantined": self.quarantined,
                "warned": self.warned, "held": self.held}

    def rule_counts(self) -> list[dict[str, str | int]]:
        """The per-rule counts as JSON (for the rejection report and lineage)."""
        return [r.model_dump() for r in self.rules]


# ---------------------------------------------------------------------------------------------------------
# commit


class LedgerRow(StageRecord):
    """One row of the lake's ledger table (exchange_batches): a committed batch's window, counts and contract.

    Its digest (exchange/lake/commit.batch_digest) is fixed by a list of claimed fields, so
    ``format_version`` and any field added later never change what an existing snapshot claims.
    """

    batch_id: str = Field(description="The committed batch")
    province: str = Field(description="Providing province")
    dataset: str = Field(description="Canonical dataset")
    # Plain datetimes: rows rebuilt from signed manifests must digest exactly as they were committed.
    window_start: datetime = Field(description="Start of the data interval (inclusive)")
    window_end: datetime = Field(description="End of the data interval (exclusive)")
    watermark: datetime | None = Field(description="Latest update time committed; null for a replay")
    pulled: int = Field(ge=0, description="Records pulled (or re-checked, for a replay)")
    accepted: int = Field(ge=0, description="Records committed to the dataset's table")
    quarantined: int = Field(ge=0, description="Records committed to the quarantine table")
    contract_id: str = Field(description="Data contract id")
    contract_version: str = Field(description="Data contract version")


CommitStatus: TypeAlias = Literal["committed", "already_committed", "empty"]


class CommitSummary(StageRecord):
    """What the commit stage returns: the snapshot and signed manifest that now hold the batch."""

    batch_id: str = Field(description="The batch")
    status: CommitStatus = Field(description="committed (by this call), already_committed (earlier) or empty")
    snapshot_id: int | None = Field(default=None, description="DuckLake snapshot holding the batch; null if empty")
    manifest: str | None = Field(default=None, description="Path of the signed batch manifest; null if empty")
    manifest_sha256: str | None = Field(default=None, description="Digest of the signed manifest; null if empty")
    key_id: str | None = Field(default=None, description="Hub key that signed the manifest; null if empty")
    pulled: int = Field(default=0, ge=0, description="Records pulled")
    accepted: int = Field(default=0, ge=0, description="Records committed to the dataset's table")
    quarantined: int = Field(default=0, ge=0, description="Records committed to quarantine")


ExchangeResult: TypeAlias = PullResult | CommitSummary
"""run_exchange's answer: the pull's when it ended the run (empty, already committed), else the commit's."""


# ---------------------------------------------------------------------------------------------------------
# access and publishing


class ExtractResult(StageRecord):
    """A department's extract: its signed manifest and the folder that holds it."""

    signed: SignedExtractManifest = Field(description="The hub-signed extract manifest")
    folder: str = Field(description="Folder the extract's files and manifest were written to")


class StandingExtract(StageRecord):
    """One standing extract the publish stage cut for a live grant."""

    grant: str = Field(description="Grant id")
    snapshot: int = Field(description="Lake snapshot it was cut at")
    rows: int = Field(ge=0, description="Rows in the extract")
    out: str = Field(description="Folder of the extract")
    encrypted: bool = Field(description="Whether its files are sealed to the department's extract key")


# ---------------------------------------------------------------------------------------------------------
# replay


ReplayStatus: TypeAlias = Literal["dry_run", "nothing_pending", "nothing_passes", "committed"]


class ReplayResult(StageRecord):
    """What a quarantine replay of one origin batch did (or, for a dry run, would do)."""

    status: ReplayStatus = Field(description="dry_run, nothing_pending, nothing_passes or committed")
    origin: str = Field(description="Origin batch whose quarantined records were re-checked")
    replay_id: str = Field(description="Batch id of the replay (<origin>.replay-N)")
    contract_version: str = Field(description="Contract version the records were re-checked against")
    origin_contract_version: str = Field(description="Contract version the origin batch was checked against")
    rule: str | None = Field(description="Only records failing this rule were re-checked; null = all")
    quarantined_in_origin: int = Field(ge=0, description="Records the origin batch quarantined")
    already_replayed: int = Field(ge=0, description="Of those, records earlier replays committed")
    replayed: int = Field(ge=0, description="Records re-checked now")
    accepted: int = Field(ge=0, description="Re-checked records that pass now")
    quarantined: int = Field(ge=0, description="Re-checked records that still fail")
    accepted_keys: list[str] = Field(description="Record keys that pass now")
    repeats_held_back: list[str] = Field(description="Record keys held back: their key was committed already")
    rules: list[RuleCount] = Field(description="Rules the re-checked records still fail, with counts")
    snapshot_id: int | None = Field(default=None, description="Snapshot of the committed replay; null otherwise")
    manifest: str | None = Field(default=None, description="Signed manifest of the committed replay")
    manifest_sha256: str | None = Field(default=None, description="Digest of that manifest")


# ---------------------------------------------------------------------------------------------------------
# Staging files.

R = TypeVar("R", bound=StageRecord)


def iso_utc(value: datetime | None) -> str | None:
    """A timestamp as the provenance log spells it (UTC, ISO 8601 with +00:00), or None."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def write_record(path: Path, record: StageRecord) -> None:
    """Write `record` as JSON to `path` atomically and durably (a reader sees the old file or the new, never
    half; exchange/atomic.py)."""
    atomic.write_text(path, record.model_dump_json(indent=2))


def read_record(path: Path, model: type[R]) -> R:
    """Read a staging file back as `model`; a truncated or edited file is a BadFile naming it and the fields.

    For a truncated file the fields the cut removed are named too (the readable part is parsed as far as it
    goes), so the message says what is missing rather than only where the JSON stopped. A missing file is
    NotFound. Both are TerminalErrors: retrying the reading stage cannot help, re-running the writing one can.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"{path}: missing; run the stage that writes it first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFile(path, f"unreadable ({exc})") from exc
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        problem = _every_problem(exc)
        invalid = [e for e in exc.errors() if e["type"] == "json_invalid"]
        if invalid:
            problem = "; ".join([f"not complete JSON ({invalid[0]['msg']})", *_partial_problems(text, model)])
        raise BadFile(path, f"not a valid {model.__name__}: {problem}") from exc


def _every_problem(exc: ValidationError) -> str:
    return validation_summary(exc, limit=len(exc.errors()))


def _partial_problems(text: str, model: type[StageRecord]) -> list[str]:
    """The field-level problems of the part of a truncated document that parses."""
    try:
        # An empty file (a crash before anything was written) is missing every field.
        partial = pydantic_core.from_json(text, allow_partial=True) if text.strip() else {}
    except ValueError:
        return []
    if not isinstance(partial, Mapping):
        return []
    try:
        model.model_validate(partial)
    except ValidationError as exc:
        return [_every_problem(exc)]
    return []
