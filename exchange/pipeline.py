"""The stage functions a DAG task (or the CLI) calls: pull, validate, commit.

Every stage is keyed by the batch id, derived from (province, dataset, window), and returns a small typed
record (exchange/stages.py) that the Airflow layer turns into JSON for XCom: data moves through files under
EXCHANGE_HOME/staging, never through Airflow.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from adapters.base import Landing, PullRequest, Window, adapter_for, deletion_schema
from adapters.mapping import collect_drift
from exchange import atomic, intake, lineage, recovery, window_outcomes
from exchange.contracts.load import load_contract
from exchange.contracts.model import Contract
from exchange.contracts.parts import key_parts
from exchange.contracts.validate import QUARANTINE_SCHEMA, RUN_TIMEZONE, Verdict
from exchange.contracts.validate import validate as run_contract
from exchange.datasets import dataset as canonical_dataset
from exchange.errors import TerminalError
from exchange.faults import crash_point
from exchange.hub import HUB, Hub, batch_id_for
from exchange.lake import protocol
from exchange.lake.commit import snapshot_of, watermark
from exchange.lake.connect import connect
from exchange.lake.protocol import DELETIONS_FILE
from exchange.lake.reference import DuckLakeReference
from exchange.provenance import events
from exchange.provenance.accounted import report_digests
from exchange.provenance.manifest import (
    FileDigest,
    RuleCount,
    SignedManifest,
    landing_dir,
    manifest_path,
    read_manifest,
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
    PullRecord,
    PullResult,
    SourceSignatureRecord,
    ValidationRecord,
    iso_utc,
    read_record,
    write_record,
)

__all__ = ["DELETIONS_FILE", "HUB", "Hub", "batch_id_for", "commit", "pull", "run_exchange", "validate"]


@contextmanager
def stage_entry(hub: Hub, batch_id: str) -> Iterator[recovery.RecoveryReport]:
    """What every stage does first: hold the batch's lock (another run of it gets one clear BatchBusy line), and
    reconcile what a crashed run left (exchange/recovery.py)."""
    with protocol.batch_lock(hub.layout.staging, batch_id):
        yield recovery.recover_before_stage(hub, batch_id)


def pull(province: str, dataset: str, start: datetime, end: datetime, hub: Hub | None = None) -> PullResult:
    """Pull (province, dataset) records updated after the lake's watermark and before `end`.

    Writes the raw landing copy and the canonical records to staging; returns the batch id and counts.
    """
    hub = hub or Hub.current()
    load_contract(dataset)  # a contract `exchange contracts lint` refuses stops the run before anything is read
    window = Window(start, end).pullable(datetime.now(UTC), timedelta(seconds=hub.settings.window_future_skew_seconds))
    with stage_entry(hub, batch_id_for(province, dataset, window)):
        return _pull(province, dataset, start, end, window, hub)


def _pull(province: str, dataset: str, start: datetime, end: datetime, window: Window, hub: Hub) -> PullResult:
    batch_id = batch_id_for(province, dataset, window)
    with connect(hub.settings, read_only=False) as con:
        if snapshot_of(con, batch_id) is not None:
            return PullResult(batch_id=batch_id, status="already_committed", pulled=0)
        since = watermark(con, province, dataset)
    lineage.started(hub.settings, batch_id, province, dataset, start, end)
    staging = hub.staging(batch_id)
    landing_folder = landing_dir(hub.layout.landing, province, dataset, batch_id)
    if protocol.read_intent(staging) is not None:  # recovery settles markers first; never wipe an unsettled one
        raise TerminalError(f"batch {batch_id} has an unsettled commit in {staging}; run `exchange recover`")
    for stale in (staging, landing_folder):  # a retried pull starts clean
        shutil.rmtree(stale, ignore_errors=True)
    staging.mkdir(parents=True)
    landing = Landing(landing_folder)
    adapter = adapter_for(province, hub.settings)
    schema = intake.staged_schema(dataset)  # the canonical columns, and what could not be read as sent
    pulled = 0
    latest: datetime | None = None
    # Unmapped native fields the adapter met (schema drift): recorded in pull.json and provenance.
    with (collect_drift() as drift, atomic.atomic_path(staging / "pulled.parquet") as tmp,
          pq.ParquetWriter(tmp, schema) as writer):
        for chunk in adapter.pull(PullRequest(dataset, window, since), landing):
            chunk = intake.staged(chunk, schema)
            writer.write_table(chunk)
            pulled += chunk.num_rows
            crash_point("pull.mid_staged")
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
    crash_point("pull.after_staged")
    write_record(staging / PULL_FILE, info)
    crash_point("pull.after_record")
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
    with atomic.atomic_path(path) as tmp, pq.ParquetWriter(tmp, deletion_schema(request.dataset)) as writer:
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
    with stage_entry(hub, batch_id):
        return _validate(batch_id, hub)


def _validate(batch_id: str, hub: Hub) -> ValidationRecord:
    info = _pull_info(hub, batch_id)
    staging = hub.staging(batch_id)
    contract = load_contract(info.dataset)
    # "Not in the future" is judged on the window's last day, so a retry of this batch judges alike.
    run_date = info.window_end.astimezone(RUN_TIMEZONE).date()
    lake = DuckLakeReference(hub.settings)
    verdict: Verdict | None = None
    parts = key_parts(staging / "pulled.parquet", contract.key, hub.settings.validate_part_rows, staging / "parts")
    (staging / VALIDATION_FILE).unlink(missing_ok=True)  # a re-validation: the old verdict goes first
    with (atomic.atomic_path(staging / "accepted.parquet") as accepted_tmp,
          atomic.atomic_path(staging / "quarantined.parquet") as quarantined_tmp,
          pq.ParquetWriter(accepted_tmp, canonical_dataset(contract.dataset).schema) as accepted,
          pq.ParquetWriter(quarantined_tmp, QUARANTINE_SCHEMA) as quarantined):
        for part in parts:
            outcome = run_contract(part, contract, province=info.province, batch_id=batch_id,
                                   today=run_date, lake=lake)
            accepted.write_table(outcome.accepted)
            quarantined.write_table(outcome.quarantined)
            crash_point("validate.mid_split")
            verdict = Verdict.of(outcome) if verdict is None else verdict.plus(Verdict.of(outcome))
            del part, outcome  # let the part go before the next one is read
    assert verdict is not None, "a staged batch has at least one part, possibly empty"
    held = verdict.held(contract.batch_hold_threshold)
    result = validation_record(batch_id, contract, verdict, held=held)
    crash_point("validate.after_split")
    write_record(staging / VALIDATION_FILE, result)
    crash_point("validate.after_record")
    write_rejection_report(
        hub.layout.reports, province=info.province, batch_id=batch_id,
        quarantined=pq.read_table(staging / "quarantined.parquet", schema=QUARANTINE_SCHEMA),
        rules=result.rule_counts(), counts=result.counts(), contract=contract,
        window=(info.window_start, info.window_end),
    )
    report = html_path(hub.layout.reports, info.province, batch_id)
    details = result.model_dump(include={"pulled", "accepted", "quarantined", "gx_success", "held"})
    # The office report's files are recorded too, so a deleted or edited report is named by verify.
    hub.log.append(
        hub.signer, events.Validate(**details), actor=HUB, subject=batch_id,
        digests={"contract": contract.document_sha256,
                 **report_digests(hub.layout.reports, info.province, batch_id)},
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
    """Commit the validated batch as one snapshot and write its signed manifest (both idempotent).

    The order of writes is the commit protocol (exchange/lake/protocol.py): intent, snapshot, manifest, commit
    entry; recovery at the stage's entry has already settled whatever an earlier, crashed attempt left.
    """
    hub = hub or Hub.current()
    with stage_entry(hub, batch_id) as recovered:
        province, dataset = batch_id.split(".")[:2]
        path = manifest_path(hub.layout.manifests, province, dataset, batch_id)
        if path.exists():  # committed and signed before: a retried or cleared task is a no-op
            # ... unless this very call's recovery completed an interrupted commit of the batch.
            return _summary(read_manifest(path), path,
                            "committed" if batch_id in recovered.completed else "already_committed")
        info = _pull_info(hub, batch_id)
        if info.pulled == 0 and not info.deleted:
            return CommitSummary(batch_id=batch_id, status="empty")
        if not (hub.staging(batch_id) / VALIDATION_FILE).exists():
            raise TerminalError(f"batch {batch_id} was not validated; run the validate stage first")
        signed, path = protocol.commit_staged(hub, batch_id)
        return _summary(signed, path, "committed")


def run_exchange(province: str, dataset: str, start: datetime, end: datetime, hub: Hub | None = None) -> ExchangeResult:
    """pull -> validate -> commit in one call (the CLI's path; Airflow runs them as separate tasks)."""
    hub = hub or Hub.current()
    batch_id = batch_id_for(province, dataset, Window(start, end))
    # One lock for the three stages: a second run of the window stops at once with one line (BatchBusy).
    with protocol.batch_lock(hub.layout.staging, batch_id), lineage.failures(hub.settings, batch_id):
        pulled = pull(province, dataset, start, end, hub)
        result: ExchangeResult = pulled
        if pulled.status == "pulled":
            validate(pulled.batch_id, hub)
            result = commit(pulled.batch_id, hub)
        # Done outside Airflow: what its deadline alert and scheduler learn the window's outcome from.
        window_outcomes.record(hub.layout, province, dataset, Window(start, end), result.status)
        return result

