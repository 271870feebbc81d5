"""Signed batch manifests: what a batch pulled, what the contract decided, what the lake holds."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from exchange import atomic
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.signers import Signature, Signer


class FileDigest(BaseModel, frozen=True):
    """A file with its SHA-256 and size."""

    name: str = Field(description="File name (landing) or path relative to the lake data path (lake files)")
    sha256: str = Field(description="Hex SHA-256 of the file's bytes")
    size: int = Field(description="Size in bytes")


class LakeFile(FileDigest, frozen=True):
    """A Parquet file the batch's snapshot added to a lake table."""

    table: str = Field(description="Lake table the file belongs to")
    rows: int = Field(description="Row count recorded by the catalog (for a delete file: rows it deletes)")
    # Left out of the signed form when "data", so manifests signed before deletions existed stay valid.
    kind: Literal["data", "delete"] = Field(
        default="data", exclude_if=lambda v: v == "data",
        description="data: rows added; delete: a DuckLake delete file removing rows the province deleted",
    )


class Counts(BaseModel, frozen=True):
    """Record counts of a batch; pulled = accepted + quarantined always."""

    pulled: int = Field(description="Records the adapter pulled")
    accepted: int = Field(description="Records that passed every error-severity rule and entered the lake")
    quarantined: int = Field(description="Records that failed at least one error-severity rule")
    warned: int = Field(default=0, description="Accepted records flagged by warning-severity rules")
    deleted: int = Field(
        default=0, exclude_if=lambda v: v == 0,
        description="Lake rows removed because the province deleted the record (soft-delete flag)",
    )


class RuleCount(BaseModel, frozen=True):
    """How many records one contract rule rejected or flagged."""

    rule_id: str = Field(description="Contract rule id")
    severity: str = Field(description="error or warning")
    unexpected: int = Field(description="Records failing the rule")


class BatchManifest(BaseModel, frozen=True):
    """The hub's signed account of one batch: one province, one dataset, one window."""

    batch_id: str = Field(description="Deterministic id from province, dataset and window")
    province: str = Field(description="Providing province")
    dataset: str = Field(description="Canonical dataset")
    window_start: datetime = Field(description="Start of the data interval (inclusive)")
    window_end: datetime = Field(description="End of the data interval (exclusive)")
    since: datetime | None = Field(description="Watermark the pull started after (exclusive); null = initial load")
    watermark: datetime | None = Field(description="Latest update time among the pulled records")
    contract_id: str = Field(description="Data contract id")
    contract_version: str = Field(description="Data contract version")
    contract_sha256: str = Field(description="SHA-256 of the contract document the batch was checked against")
    landing: list[FileDigest] = Field(description="Raw payloads exactly as the province delivered them")
    counts: Counts = Field(description="Record counts")
    rules: list[RuleCount] = Field(description="Per-rule failure counts from the Great Expectations run")
    gx_success: bool = Field(description="Whether the whole Great Expectations suite passed")
    snapshot_id: int = Field(description="DuckLake snapshot that holds the batch")
    files: list[LakeFile] = Field(description="Every Parquet file the snapshot added")
    created_at: datetime = Field(description="When the manifest was written")


class SignedManifest(BaseModel, frozen=True):
    """A manifest with the hub's signature over its RFC 8785 canonical JSON."""

    manifest: BatchManifest = Field(description="The signed content")
    signature: Signature = Field(description="Hub signature over canonical_json(manifest)")

    def digest(self) -> str:
        """SHA-256 of the canonical manifest: what provenance entries refer to."""
        return sha256_hex(manifest_bytes(self.manifest))


def manifest_bytes(manifest: BatchManifest) -> bytes:
    """The canonical bytes that are signed and hashed."""
    return canonical_bytes(manifest.model_dump(mode="json"))


def sign_manifest(manifest: BatchManifest, signer: Signer) -> SignedManifest:
    """Sign a manifest with the hub key."""
    return SignedManifest(manifest=manifest, signature=signer.sign(manifest_bytes(manifest)))


def manifest_path(manifests_dir: Path, province: str, dataset: str, batch_id: str) -> Path:
    """Where a batch's manifest lives."""
    return manifests_dir / province / dataset / f"{batch_id}.json"


def landing_dir(landing_root: Path, province: str, dataset: str, batch_id: str) -> Path:
    """Where a batch's landing copies (the province's raw payloads) live."""
    return landing_root / province / dataset / batch_id


def write_manifest(path: Path, signed: SignedManifest) -> None:
    """Write atomically and durably (temp file, fsync, rename: exchange/atomic.py)."""
    atomic.write_text(path, signed.model_dump_json(indent=2))


def read_manifest(path: Path) -> SignedManifest:
    """Parse a signed manifest file."""
    return SignedManifest.model_validate_json(path.read_text(encoding="utf-8"))
