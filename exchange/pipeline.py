"""The stage functions a DAG task (or the CLI) calls: pull, validate, commit.

Every stage is keyed by the batch id, derived from (province, dataset, window), and returns a small typed
record (exchange/stages.py) that the Airflow layer turns into JSON for XCom: data moves through files under
EXCHANGE_HOME/staging, never through Airflow.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adapters.base import Landing, PullRequest, Window, adapter_for, deletion_schema
from adapters.mapping import collect_drift
from exchange import intake, lineage
from exchange.contracts.load import load_contract
from exchange.contracts.model import Contract
from exchange.contracts.parts import key_parts
from exchange.contracts.validate import QUARANTINE_SCHEMA, RUN_TIMEZONE, Verdict
from exchange.contracts.validate import validate as run_contract
from exchange.datasets import dataset as canonical_dataset
from exchange.errors import TerminalError
from exchange.hub import HUB, Hub, batch_id_for
from exchange.lake import files as lake_files
from exchange.lake.commit import CommitResult, commit_batch, files_added, snapshot_of, watermark
from exchange.lake.connect import catalog_and_data, connect
from exchange.lake.reference import DuckLakeReference
from exchange.lake.retry import commit_retrying
from exchange.provenance import events
from exchange.provenance.manifest import (
    BatchManifest,
    Counts,
    FileDigest,
    LakeFile,
    RuleCount,
    SignedManifest,
    landing_dir,
    manifest_path,
    read_manifest,
    sign_manifest,
    write_manifest,
)
from exchange.report.rejections import html_path, write_rejection_report
from exchange.signing.canonical import file_sha256
from exchange.stages import (
    PULL_FILE,
    VALIDATION_FILE,
    CommitStatus,
    CommitSummary,
    DriftRecord,
    ExchangeResult,
    LedgerRow,
    PullRecord,
    PullResult,
    SourceSignatureRecord,
    ValidationRecord,
    iso_utc,
    read_record,
    write_record,
)

DELETIONS_FILE = "deleted.parquet"


def pull(province: str, dataset: str, start: datetime, end: datetime, hub: Hub | None = None) -> PullResult:
    """Pull (province, dataset) records updated after the lake's watermark and before `end`.

    Writes the raw landing copy and the canonical records to staging; returns the batch id and counts.
    """
    hub = hub or Hub.current()
    load_contract(dataset)  # a contract `exchange contracts lint` refuses stops the run before anything is read
    window = Window(start, end).pullable(datetime.now(UTC), timedelta(seconds=hub.settings.window_future_skew_seconds))
    batch_id = batch_id_for(province, dataset, window)
    with connect(hub.settings, read_only=False) as con:
        if snapshot_of(con, batch_id) is not None:
            return PullResult(batch_id=batch_id, status="already_committed", pulled=0)
        since = watermark(con, province, dataset)
    lineage.started(hub.settings, batch_id, province, dataset, start, end)
    staging = hub.staging(batch_id)
    landing_folder = landing_dir(hub.layout.landing, province, dataset, batch_id)
    for stale in (staging, landing_folder):  # a retried pull starts clean
        shutil.rmtree(stale, ignore_errors=True)
    staging.mkdir(parents=True)
    landing = Landing(landing_folder)
    adapter = adapter_for(province, hub.settings)
    schema = intake.staged_schema(dataset)  # the canonical columns, and what could not be read as sent
    pulled = 0
    latest: datetime | None = None
    # Unmapped native fields the adapter met (schema drift): recorded in pull.json and provenance.
    with collect_drift() as drift, pq.ParquetWriter(staging / "pulled.parquet", schema) as writer:
        for chunk in adapter.pull(PullRequest(dataset, window, since), landing):
            chunk = intake.staged(chunk, schema)
            writer.write_table(chunk)
            pulled += chunk.num_rows
            chunk_max = pc.max(chunk["updated_at"]).as_py() if chunk.num_rows else None
            if chunk_max is not None and (latest is None or chunk_max > latest):
                latest = chunk_max
    deleted = _pull_deletions(adapter, PullRequest(dataset, window, since), landing, staging / DELETIONS_FILE)
    info = PullRecord(
        batch_id=batch_id,
        province=province,
        dataset=dataset,
        window_start=start,
        window_end=end,
        since=since,
        watermark=latest,
        pulled=pulled,
        deleted=deleted,
        landing=[FileDigest(name=f.name, sha256=f.sha256, size=f.size) for f in landing.files],
        drift=[DriftRecord.model_validate(d.as_dict()) for d in drift],
        source_signatures=[SourceSignatureRecord.model_validate(s.record()) for s in landing.signatures],
    )
    write_record(staging / PULL_FILE, info)
    hub.log.append(
        hub.signer,
        # The province signatures the adapter verified: who vouched for which landed bytes.
        events.Pull(pulled=pulled, deleted=deleted, since=iso_utc(info.since), window_end=info.window_end.isoformat(),
                    source_signatures=[s.model_dump() for s in info.source_signatures],
                    drift=[d.model_dump() for d in info.drift]),
        actor=f"adapter:{province}",
        subject=batch_id,
        digests={f.name: f.sha256 for f in landing.files},
    )
    if not pulled and not deleted:
        lineage.completed(hub.settings, batch_id, province, dataset, pulled=0, accepted=0, quarantined=0, rules=[])
    return PullResult(batch_id=batch_id, status="pulled" if pulled or deleted else "empty", pulled=pulled,
                      deleted=deleted)


def _pull_deletions(adapter: Any, request: PullRequest, landing: Landing, path: Path) -> int:
    """Stage the records the province deleted in the window (adapters that report deletions); their count."""
    if not hasattr(adapter, "deletions"):
        return 0
    count = 0
    with pq.ParquetWriter(path, deletion_schema(request.dataset)) as writer:
        for chunk in adapter.deletions(request, landing):
            writer.write_table(chunk)
            count += chunk.num_rows
    return count


def _pull_info(hub: Hub, batch_id: str) -> PullRecord:
    path = hub.staging(batch_id) / PULL_FILE
    if not path.exists():
        raise TerminalError(f"batch {batch_id}: nothing staged at {path}; run the pull stage first")
    return read_record(path, PullRecord)


def validation_record(batch_id: str, contract: Contract, verdict: Verdict, *, held: bool) -> ValidationRecord:
    """What the validate stage records in validation.json (and the commit stage reads back)."""
    return ValidationRecord(
        batch_id=batch_id,
        contract_id=contract.id,
        contract_version=contract.version,
        contract_sha256=contract.document_sha256,
        pulled=verdict.pulled,
        accepted=verdict.accepted_count,
        quarantined=verdict.quarantined_count,
        warned=verdict.warned_count,
        gx_success=verdict.gx_success,
        held=held,
        rules=[RuleCount(rule_id=r.rule_id, severity=r.severity, unexpected=r.unexpected_count)
               for r in verdict.rules],
    )


def validate(batch_id: str, hub: Hub | None = None) -> ValidationRecord:
    """Check the staged batch against its contract; split accepted and quarantined records.

    A batch larger than ``settings.validate_part_rows`` is checked in parts grouped by key (memory stays
    bounded; the result is the whole batch's, see contracts/parts.py).
    """
    hub = hub or Hub.current()
    info = _pull_info(hub, batch_id)
    staging = hub.staging(batch_id)
    contract = load_contract(info.dataset)
    # "Not in the future" is judged on the window's last day, so a retry of this batch judges alike.
    run_date = info.window_end.astimezone(RUN_TIMEZONE).date()
    lake = DuckLakeReference(hub.settings)
    verdict: Verdict | None = None
    parts = key_parts(staging / "pulled.parquet", contract.key, hub.settings.validate_part_rows, staging / "parts")
    with (pq.ParquetWriter(staging / "accepted.parquet", canonical_dataset(contract.dataset).schema) as accepted,
          pq.ParquetWriter(staging / "quarantined.parquet", QUARANTINE_SCHEMA) as quarantined):
        for part in parts:
            outcome = run_contract(part, contract, province=info.province, batch_id=batch_id,
                                   today=run_date, lake=lake)
            accepted.write_table(outcome.accepted)
            quarantined.write_table(outcome.quarantined)
            verdict = Verdict.of(outcome) if verdict is None else verdict.plus(Verdict.of(outcome))
            del part, outcome  # let the part go before the next one is read
    assert verdict is not None, "a staged batch has at least one part, possibly empty"
    held = verdict.held(contract.batch_hold_threshold)
    result = validation_record(batch_id, contract, verdict, held=held)
    write_record(staging / VALIDATION_FILE, result)
    write_rejection_report(
        hub.layout.reports, province=info.province, batch_id=batch_id,
        quarantined=pq.read_table(staging / "quarantined.parquet", schema=QUARANTINE_SCHEMA),
        rules=result.rule_counts(), counts=result.counts(), contract=contract,
        window=(info.window_start, info.window_end),
    )
    report = html_path(hub.layout.reports, info.province, batch_id)
    details = result.model_dump(include={"pulled", "accepted", "quarantined", "gx_success", "held"})
    hub.log.append(
        hub.signer, events.Validate(**details), actor=HUB, subject=batch_id,
        digests={"contract": contract.document_sha256},
    )
    if verdict.quarantined_count:
        hub.log.append(
            hub.signer, events.Quarantine(quarantined=verdict.quarantined_count), actor=HUB, subject=batch_id,
            digests={"quarantined.parquet": file_sha256(staging / "quarantined.parquet")},
        )
    if held:
        hub.log.append(hub.signer, events.Hold(**details), actor=HUB, subject=batch_id)
        raise TerminalError(
            f"batch {batch_id} held: {verdict.quarantined_count} of {verdict.pulled} records failed, more than "
            f"the contract's threshold of {contract.batch_hold_threshold:.0%}; nothing was committed. "
            f"See the report {report} (all records in its .csv beside it) and fix the source before re-running."
        )
    return result


def _summary(signed: SignedManifest, path: Path, status: CommitStatus) -> CommitSummary:
    m = signed.manifest
    return CommitSummary(
        batch_id=m.batch_id,
        status=status,
        snapshot_id=m.snapshot_id,
        manifest=str(path),
        manifest_sha256=signed.digest(),
        key_id=signed.signature.key_id,
        pulled=m.counts.pulled,
        accepted=m.counts.accepted,
        quarantined=m.counts.quarantined,
    )


def commit(batch_id: str, hub: Hub | None = None) -> CommitSummary:
    """Commit the validated batch as one snapshot and write its signed manifest (both idempotent)."""
    hub = hub or Hub.current()
    province, dataset = batch_id.split(".")[:2]
    path = manifest_path(hub.layout.manifests, province, dataset, batch_id)
    if path.exists():  # committed and signed before: a retried or cleared task is a no-op
        return _summary(read_manifest(path), path, "already_committed")
    info = _pull_info(hub, batch_id)
    staging = hub.staging(batch_id)
    if info.pulled == 0 and not info.deleted:
        return CommitSummary(batch_id=batch_id, status="empty")
    if not (staging / VALIDATION_FILE).exists():
        raise TerminalError(f"batch {batch_id} was not validated; run the validate stage first")
    checked = read_record(staging / VALIDATION_FILE, ValidationRecord)
    ds = canonical_dataset(info.dataset)
    ledger_row = LedgerRow(
        batch_id=batch_id,
        province=info.province,
        dataset=info.dataset,
        window_start=info.window_start,
        window_end=info.window_end,
        watermark=info.watermark,
        pulled=checked.pulled,
        accepted=checked.accepted,
        quarantined=checked.quarantined,
        contract_id=checked.contract_id,
        contract_version=checked.contract_version,
    )
    # Paths, not tables: DuckDB streams the staged files into the lake without loading the batch.
    accepted, quarantined = staging / "accepted.parquet", staging / "quarantined.parquet"
    deletions = pq.read_table(staging / DELETIONS_FILE) if (staging / DELETIONS_FILE).exists() else None
    lake_root = catalog_and_data(hub.settings)[1]

    def attempt(con: duckdb.DuckDBPyConnection) -> tuple[CommitResult, list[LakeFile]]:
        result = commit_batch(con, dataset=ds.name, dataset_schema=ds.schema, ledger_row=ledger_row,
                              accepted=accepted, quarantined=quarantined, deletions=deletions)
        return result, _hashed_files(con, result.snapshot_id, lake_root)

    # Conflicts and lost catalog/storage connections are retried on a fresh connection; the ledger keeps the
    # batch exactly once, and the marker lets a retry after a killed writer remove what it left half-done.
    result, hashed = commit_retrying(hub.settings, batch_id, attempt, marker=staging / "committing")
    # The manifest is written after the snapshot; if a crash fell between the two, this run writes it.
    manifest = BatchManifest(
        batch_id=batch_id,
        province=province,
        dataset=dataset,
        window_start=info.window_start,
        window_end=info.window_end,
        since=info.since,
        watermark=info.watermark,
        contract_id=checked.contract_id,
        contract_version=checked.contract_version,
        contract_sha256=checked.contract_sha256,
        landing=info.landing,
        counts=Counts(
            pulled=checked.pulled, accepted=checked.accepted,
            quarantined=checked.quarantined, warned=checked.warned,
            deleted=sum(f.rows for f in hashed if f.kind == "delete"),
        ),
        rules=checked.rules,
        gx_success=checked.gx_success,
        snapshot_id=result.snapshot_id,
        files=hashed,
        created_at=datetime.now(UTC),
    )
    signed = sign_manifest(manifest, hub.signer)
    write_manifest(path, signed)
    hub.log.append(
        hub.signer,
        events.Commit(snapshot_id=result.snapshot_id, accepted=checked.accepted, quarantined=checked.quarantined,
                      manifest=str(path.relative_to(hub.layout.home))),
        actor=HUB, subject=batch_id,
        digests={"manifest": signed.digest()},
    )
    shutil.rmtree(staging, ignore_errors=True)  # the lake, landing copy and manifest now hold everything
    lineage.completed(
        hub.settings, batch_id, province, dataset, pulled=checked.pulled, accepted=checked.accepted,
        quarantined=checked.quarantined, rules=checked.rule_counts(),
        contract=checked.model_dump(include={"contract_id", "contract_version", "contract_sha256"}),
        manifest_sha256=signed.digest(), snapshot_id=result.snapshot_id,
    )
    return _summary(signed, path, "committed")


def _hashed_files(con: duckdb.DuckDBPyConnection, snapshot_id: int, root: str) -> list[LakeFile]:
    """The snapshot's data files with their SHA-256, read where they live (a folder or object storage)."""
    listed = []
    for f in files_added(con, snapshot_id, root):
        found = lake_files.digest(con, f.location)
        if found is None:
            raise TerminalError(f"lake file {f.location} of snapshot {snapshot_id} is missing right after its commit")
        listed.append(LakeFile(table=f.table, name=f.relative, sha256=found[0], size=f.size, rows=f.rows,
                               kind=f.kind))
    return listed


def run_exchange(province: str, dataset: str, start: datetime, end: datetime, hub: Hub | None = None) -> ExchangeResult:
    """pull -> validate -> commit in one call (the CLI's path; Airflow runs them as separate tasks)."""
    hub = hub or Hub.current()
    with lineage.failures(hub.settings, batch_id_for(province, dataset, Window(start, end))):
        pulled = pull(province, dataset, start, end, hub)
        if pulled.status != "pulled":
            return pulled
        validate(pulled.batch_id, hub)
        return commit(pulled.batch_id, hub)

