"""`exchange trace DATASET KEY`: the history of one record, from the province's payload to every extract.

Sources, all cross-linked: the lake's change feed (DuckLake ``table_changes``: every insert and delete
of the record with its snapshot and batch), the quarantine table (rejections with rule and reason), each
batch's signed manifest (contract version, landing payload digests, snapshot), the provenance entries
about the batch, and every extract of the dataset (its signed manifest names the grant and snapshot;
whether it carried the record is checked in the extract file itself when the key was delivered in
clear, else by re-evaluating the grant's row filter at the extract's snapshot) with the entries about it.

Which entries are "about" a batch or an extract is the vocabulary's word (each kind's ``subject``), so a
new kind about batches or extracts is traced without a change here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest, extract_digest
from exchange.access.terms import grant_row_filter
from exchange.config import ExchangeSettings, Layout
from exchange.datasets import dataset as canonical_dataset
from exchange.lake.commit import QUARANTINE
from exchange.lake.connect import LAKE, connect
from exchange.provenance.archive import history_lines
from exchange.provenance.events import Subject, spec
from exchange.provenance.lakecheck import head_snapshot
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.manifest import manifest_path, read_manifest
from exchange.provenance.storecheck import lake_exists


class TraceEvent(BaseModel, frozen=True):
    """One thing that happened to the record."""

    kind: str = Field(description="insert, delete, quarantine")
    batch_id: str = Field(description="Batch that carried the record")
    snapshot_id: int | None = Field(description="Lake snapshot of the change")
    detail: str = Field(default="", description="Rule and reason for quarantine events")


class TraceBatch(BaseModel, frozen=True):
    """A batch that carried the record, as its signed manifest and the provenance log tell it."""

    batch_id: str = Field(description="Batch id")
    province: str = Field(description="Providing province")
    window: str = Field(description="Data interval")
    contract: str = Field(description="Contract id and version the batch was checked against")
    contract_sha256: str = Field(description="SHA-256 of the contract document")
    landing: dict[str, str] = Field(description="Raw payload file -> SHA-256, as the province delivered them")
    snapshot_id: int | None = Field(description="Lake snapshot holding the batch")
    manifest: str | None = Field(description="Manifest path (relative to EXCHANGE_HOME)")
    manifest_sha256: str | None = Field(description="Digest of the signed manifest")
    signed_by: str | None = Field(description="Key that signed the manifest")
    provenance: list[str] = Field(description="Provenance entries about the batch: 'seq action at'")


class TraceExtract(BaseModel, frozen=True):
    """An extract of the dataset and whether it carried the record."""

    extract_id: str = Field(description="Extract id")
    department: str = Field(description="Recipient department")
    grant_id: str = Field(description="Grant it was cut under")
    purpose: str | None = Field(description="The grant's purpose, if the grant is on record")
    snapshot_id: int = Field(description="Lake snapshot it was cut from")
    created_at: datetime = Field(description="When it was cut")
    carried: bool | None = Field(description="Whether the record is in the extract (None: cannot tell)")
    how: str = Field(description="How `carried` was decided")
    manifest_sha256: str = Field(description="Digest of the signed extract manifest")
    provenance: list[str] = Field(default_factory=list,
                                  description="Provenance entries about the extract (cut, downloads): 'seq action at'")


class RecordTrace(BaseModel, frozen=True):
    """The full history of one record."""

    dataset: str = Field(description="Dataset")
    key: str = Field(description="Record key")
    found: bool = Field(description="Whether the hub ever received the record")
    events: list[TraceEvent] = Field(description="Inserts, deletes and quarantine events, in snapshot order")
    batches: list[TraceBatch] = Field(description="Batches that carried the record")
    extracts: list[TraceExtract] = Field(description="Extracts of the dataset cut after the record arrived")


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
                      [LAKE, table]).fetchone()
    return bool(row and row[0])


def _events(con: duckdb.DuckDBPyConnection, dataset: str, key_column: str, key: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    head = head_snapshot(con)
    if head is not None and _has_table(con, dataset):
        rows = con.execute(
            f'SELECT change_type, batch_id, snapshot_id FROM {LAKE}.table_changes(?, 0, {int(head)}) '
            f'WHERE "{key_column}" = ? ORDER BY snapshot_id', [dataset, key]).fetchall()
        for change, batch, snap in rows:
            kind = "delete" if "delete" in str(change) else "insert"
            events.append(TraceEvent(kind=kind, batch_id=str(batch), snapshot_id=int(snap)))
    if _has_table(con, QUARANTINE):
        rows = con.execute(
            f"SELECT batch_id, rule_id, reason FROM {LAKE}.{QUARANTINE} WHERE dataset = ? AND record_key = ? "
            "ORDER BY batch_id, rule_id", [dataset, key]).fetchall()
        for batch, rule, reason in rows:
            events.append(TraceEvent(kind="quarantine", batch_id=str(batch), snapshot_id=None,
                                     detail=f"{rule}: {reason}"))
    return events


def _batch(layout: Layout, batch_id: str, entries: dict[str, list[str]]) -> TraceBatch:
    province, dataset = batch_id.split(".")[:2]
    path = manifest_path(layout.manifests, province, dataset, batch_id)
    if not path.exists():
        return TraceBatch(batch_id=batch_id, province=province, window="?", contract="?", contract_sha256="?",
                          landing={}, snapshot_id=None, manifest=None, manifest_sha256=None, signed_by=None,
                          provenance=entries.get(batch_id, []))
    signed = read_manifest(path)
    m = signed.manifest
    return TraceBatch(
        batch_id=batch_id, province=m.province,
        window=f"{m.window_start.isoformat()} .. {m.window_end.isoformat()}",
        contract=f"{m.contract_id} v{m.contract_version}", contract_sha256=m.contract_sha256,
        landing={f.name: f.sha256 for f in m.landing}, snapshot_id=m.snapshot_id,
        manifest=str(path.relative_to(layout.home)), manifest_sha256=signed.digest(),
        signed_by=signed.signature.key_id, provenance=entries.get(batch_id, []),
    )


def provenance_about(log: ProvenanceLog, wanted: dict[Subject, set[str]]) -> dict[Subject, dict[str, list[str]]]:
    """Per kind of subject and subject, the entries about it ('seq action at'), from the whole history.

    An entry is about a batch (an extract, ...) when its kind's subject says so; an entry of a kind the
    vocabulary no longer has is shown wherever its subject matches (reading is lenient).
    """
    found: dict[Subject, dict[str, list[str]]] = {s: {} for s in wanted}
    for line in history_lines(log):  # streamed: the log can be long, the answer is small; archives after a cut
        entry = ProvenanceEntry.model_validate_json(line)
        kind = spec(entry.action)
        for about in [kind.subject] if kind else list(wanted):
            if entry.subject in wanted.get(about, ()):
                found[about].setdefault(entry.subject, []).append(
                    f"{entry.seq} {entry.action} {entry.at.isoformat()}")
    return found


def _grants(layout: Layout) -> dict[str, Any]:
    try:
        from exchange.access.registry import Registry

        return {g.grant.id: g.grant for g in Registry(layout.access).grants()}
    except (ValueError, OSError):
        return {}


def _carried(
    con: duckdb.DuckDBPyConnection, directory: Path, signed: SignedExtractManifest, key_column: str, key: str
) -> tuple[bool | None, str]:
    m = signed.manifest
    # An encrypted extract cannot be read at the hub (only the recipient holds the key): re-evaluate instead.
    if key_column in m.columns and m.masking.get(key_column) == "none" and m.encryption is None:
        hits = 0
        for f in m.files:
            table = pq.read_table(directory / f.name, columns=[key_column])
            hits += int(pc.sum(pc.equal(table[key_column], key)).as_py() or 0)
        return hits > 0, f"looked up {key_column} in the extract file"
    scope = grant_row_filter(m.row_filter, m.dataset)
    row = con.execute(f'SELECT count(*) FROM {LAKE}."{m.dataset}" AT (VERSION => {int(m.snapshot_id)}) '
                      f'WHERE "{key_column}" = ? AND {scope.sql}', [key, *scope.params]).fetchone()
    return bool(row and row[0]), "re-evaluated the grant's row filter at the extract's snapshot"


def trace_record(settings: ExchangeSettings, dataset: str, key: str) -> RecordTrace:
    """Everything the hub knows about one record (read-only)."""
    layout = Layout(settings.home)
    key_column = canonical_dataset(dataset).key
    if not lake_exists(settings):
        return RecordTrace(dataset=dataset, key=key, found=False, events=[], batches=[], extracts=[])
    with connect(settings, read_only=True) as con:
        events = _events(con, dataset, key_column, key)
        batch_ids = list(dict.fromkeys(e.batch_id for e in events))
        first = min((e.snapshot_id for e in events if e.kind == "insert" and e.snapshot_id is not None), default=None)
        grants = _grants(layout)
        extracts: list[TraceExtract] = []
        for manifest in sorted(layout.extracts.rglob(EXTRACT_MANIFEST)) if layout.extracts.is_dir() else []:
            signed = SignedExtractManifest.model_validate_json(manifest.read_text(encoding="utf-8"))
            m = signed.manifest
            if m.dataset != dataset or first is None or m.snapshot_id < first:
                continue
            grant = grants.get(m.grant_id)
            carried, how = _carried(con, manifest.parent, signed, key_column, key)
            extracts.append(TraceExtract(
                extract_id=m.extract_id, department=m.department, grant_id=m.grant_id,
                purpose=getattr(grant, "purpose", None), snapshot_id=m.snapshot_id, created_at=m.created_at,
                carried=carried, how=how, manifest_sha256=extract_digest(signed)))
    about = provenance_about(ProvenanceLog(layout.provenance),
                             {Subject.BATCH: set(batch_ids), Subject.EXTRACT: {x.extract_id for x in extracts}})
    batches = [_batch(layout, b, about[Subject.BATCH]) for b in batch_ids]
    extracts = [x.model_copy(update={"provenance": about[Subject.EXTRACT].get(x.extract_id, [])})
                for x in extracts]
    return RecordTrace(dataset=dataset, key=key, found=bool(events), events=events, batches=batches,
                       extracts=extracts)
