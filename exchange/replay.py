"""Replay quarantined records: re-validate them with the current contract and commit those that now pass.

A replay of origin batch ``O`` is an ordinary batch with id ``O.replay-N``: its own DuckLake snapshot,
ledger row, signed manifest and provenance entries, committed by :func:`exchange.pipeline.commit` from the
same staging files the validate stage writes. Its "pulled" records are the origin's quarantined records it
re-checked; those still failing are written again as the replay's own quarantine rows, so every replay
conserves counts (replayed = accepted + quarantined) and ``verify`` treats it like any batch.

What is still pending is derived from the lake alone, never from a side file: the origin's quarantine rows
minus the records earlier replays of ``O`` committed (compared as canonical record JSON, as a multiset, so
two identical rejected records are two records). A record therefore enters the lake at most once, and a
replay that would accept nothing commits nothing. A pending record whose key its origin batch (or a replay
of it) committed is held back: it was rejected as a repeat within that batch. The ledger row of a replay has
no watermark: the province's incremental watermark is the maximum over pulls and must not move for a replay.

The status of a quarantine row (`quarantine_status`) is derived the same way: a row is ``resolved`` once a later
replay of its origin committed its record, ``rechecked`` when a later replay re-checked it and rejected it again
(that replay's row carries the current reason and status), and ``open`` otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from exchange import atomic, intake, recovery
from exchange.config import ExchangeSettings
from exchange.contracts.load import load_contract
from exchange.contracts.model import RULE_ID_SEPARATOR, Contract
from exchange.contracts.validate import (
    QUARANTINE_SCHEMA,
    RUN_TIMEZONE,
    ValidationOutcome,
    Verdict,
    conform,
    record_json,
)
from exchange.contracts.validate import validate as run_contract
from exchange.datasets import dataset as canonical_dataset
from exchange.errors import CheckFailed, InternalError, NotFound, TerminalError
from exchange.faults import crash_point
from exchange.hub import HUB, Hub
from exchange.lake.commit import LEDGER, QUARANTINE, ledger_rows, snapshot_of
from exchange.lake.connect import LAKE, connect
from exchange.lake.reference import DuckLakeReference
from exchange.locking import file_lock
from exchange.pipeline import commit, validation_record
from exchange.provenance import events
from exchange.provenance.links import REPLAY_MARK, origin_of, replay_number
from exchange.provenance.manifest import RuleCount, manifest_path, read_manifest
from exchange.report.rejections import write_rejection_report
from exchange.stages import (
    PULL_FILE,
    VALIDATION_FILE,
    CommitSummary,
    PullRecord,
    ReplayResult,
    ReplayStatus,
    write_record,
)


class ReplayRebuildError(InternalError):
    """A quarantined record_json cannot be rebuilt into exactly the record that was quarantined."""


# ---------------------------------------------------------------------------------------------------------
# Pure logic: ids, rebuilding records, choosing what is pending.


def next_replay_id(origin: str, existing: list[str]) -> str:
    """``<origin>.replay-N`` with N one past the highest replay of `origin` among `existing` batch ids."""
    numbers = [replay_number(b) for b in existing if origin_of(b) == origin and b != origin]
    return f"{origin}{REPLAY_MARK}{max(numbers, default=0) + 1}"


def as_quarantine(table: pa.Table) -> pa.Table:
    """Lake quarantine rows in QUARANTINE_SCHEMA; a lake from before a column was added reads it as null."""
    for column in QUARANTINE_SCHEMA:
        if column.name not in table.column_names:
            table = table.append_column(column, pa.nulls(table.num_rows, column.type))
    return table.select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)


def rebuild(quarantined: pa.Table, dataset: str) -> pa.Table:
    """The canonical Arrow table of the records in `quarantined` (QUARANTINE_SCHEMA rows), in row order.

    Parsed column-wise by Arrow's JSON reader. Columns the contract added since the record was quarantined
    come back null; a field the canonical schema no longer has is an error. Every rebuilt record is checked
    to serialize back to exactly the stored record_json, so what is replayed is what the province sent.
    """
    schema = canonical_dataset(dataset).schema
    if quarantined.num_rows == 0:
        return schema.empty_table()
    stored = quarantined.column("record_json").combine_chunks()
    if stored.null_count:
        raise ReplayRebuildError(f"{dataset}: {stored.null_count} quarantine rows have no record_json")
    # Arrow's JSON reader does not parse dates: read them as text, then cast (ISO 8601 both ways).
    as_read = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_date(f.type) else f for f in schema])
    lines = "\n".join(stored.to_pylist()).encode("utf-8") + b"\n"
    try:
        table = pa_json.read_json(
            io.BytesIO(lines),
            read_options=pa_json.ReadOptions(use_threads=False),
            parse_options=pa_json.ParseOptions(explicit_schema=as_read, unexpected_field_behavior="error"),
        ).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ReplayRebuildError(f"{dataset}: quarantined records do not fit the canonical schema: {exc}") from None
    if table.num_rows != quarantined.num_rows:
        raise ReplayRebuildError(f"{dataset}: {quarantined.num_rows} quarantine rows rebuilt as {table.num_rows}")
    stored_columns = list(json.loads(stored[0].as_py()))  # one batch is quarantined under one schema
    again = record_json(table.select(stored_columns))
    if not again.equals(stored):
        differs = [i for i, (a, b) in enumerate(zip(again.to_pylist(), stored.to_pylist(), strict=True)) if a != b]
        keys = quarantined.column("record_key").take(pa.array(differs[:5])).to_pylist()
        raise ReplayRebuildError(f"{dataset}: {len(differs)} records do not rebuild exactly (keys {keys} ...)")
    return table


def pending_rows(rebuilt: pa.Table, committed: pa.Table) -> pa.Array:
    """Indices of (rebuilt) quarantined records not yet committed by an earlier replay.

    Records are compared as canonical record JSON, as a multiset: if two identical records were
    quarantined and one was replayed, the other is still pending.
    """
    taken = Counter(record_json(committed).to_pylist()) if committed.num_rows else Counter[str]()
    keep: list[int] = []
    for i, text in enumerate(record_json(rebuilt).to_pylist() if rebuilt.num_rows else []):
        if taken[text] > 0:
            taken[text] -= 1
        else:
            keep.append(i)
    return pa.array(keep, pa.int64())


def with_rule(quarantined: pa.Table, rule_id: str) -> pa.Array:
    """Indices of quarantine rows that name `rule_id` among their failed rules."""
    ids = quarantined.column("rule_id").to_pylist()
    return pa.array([i for i, r in enumerate(ids) if r and rule_id in r.split(RULE_ID_SEPARATOR)], pa.int64())


OPEN, RESOLVED, RECHECKED = "open", "resolved", "rechecked"


@dataclass(frozen=True)
class RowStatus:
    """Where a quarantined record stands: open, resolved (by the replay that committed it) or rechecked (by
    the replay that rejected it again, whose own row says more)."""

    status: str
    by: str | None = None


def resolve_family(
    generations: Sequence[tuple[str, Sequence[str]]], committed: dict[str, Sequence[str]]
) -> dict[str, list[RowStatus]]:
    """Status of every quarantine row of one origin batch and its replays, from canonical record texts.

    `generations`: (batch id, record text per quarantine row) for the origin, then its replays in order;
    `committed`: replay batch id -> record texts it committed. Each row is linked to the next occurrence of
    its record in a later generation (a commit resolves it, a quarantine row re-checks it), matched as a
    multiset so two identical records stay two; the status follows the chain to its end.
    """
    later_rows: list[dict[str, deque[int]]] = []
    later_commits: list[Counter[str]] = []
    for batch, texts in generations:
        rows: dict[str, deque[int]] = defaultdict(deque)
        for i, text in enumerate(texts):
            rows[text].append(i)
        later_rows.append(rows)
        later_commits.append(Counter(committed.get(batch, ())))
    later_commits[0] = Counter()  # the origin's own accepted rows resolve nothing it rejected
    successor: list[list[tuple[int, int | None] | None]] = []  # (generation, row or None for a commit)
    for g, (_, texts) in enumerate(generations):
        links: list[tuple[int, int | None] | None] = []
        for text in texts:
            link: tuple[int, int | None] | None = None
            for j in range(g + 1, len(generations)):
                if later_commits[j][text] > 0:
                    later_commits[j][text] -= 1
                    link = (j, None)
                    break
                if later_rows[j][text]:
                    link = (j, later_rows[j][text].popleft())
                    break
            links.append(link)
        successor.append(links)
    status: list[list[RowStatus]] = [[] for _ in generations]
    for g in range(len(generations) - 1, -1, -1):  # a row's successor is always in a later generation
        for link in successor[g]:
            if link is None:
                status[g].append(RowStatus(OPEN))
            elif link[1] is None:
                status[g].append(RowStatus(RESOLVED, generations[link[0]][0]))
            else:
                after = status[link[0]][link[1]]
                status[g].append(after if after.status == RESOLVED else
                                 RowStatus(RECHECKED, after.by if after.status == RECHECKED else
                                           generations[link[0]][0]))
    return {batch: status[g] for g, (batch, _) in enumerate(generations)}


def quarantine_status(
    settings: ExchangeSettings, *, province: str | None = None, record_key: str | None = None,
    include_closed: bool = True, limit: int | None = None,
) -> list[dict[str, Any]]:
    """Quarantine rows (every QUARANTINE_SCHEMA column: key, rules, reason, record_json, as_sent, ...) with
    their status and `by`, ordered by batch and record key (missing keys last), read from the lake alone.

    Rows of batches never replayed are open; only the families of replayed origins are re-derived.
    """
    with connect(settings, read_only=True) as con:
        ledger = ledger_rows(con)
        if not ledger:
            return []
        replays: dict[str, list[str]] = defaultdict(list)
        for row in ledger:
            batch = row.batch_id
            if origin_of(batch) != batch:
                replays[origin_of(batch)].append(batch)
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("province", province), ("record_key", record_key)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        families = [*replays, *(b for batches in replays.values() for b in batches)]
        outside = ["NOT list_contains(?, batch_id)"] if families else []
        conditions = " AND ".join([*outside, *where]) or "true"
        tail = f" LIMIT {int(limit)}" if limit is not None else ""  # rows outside families are all open
        found = as_quarantine(_query(con, f"SELECT * FROM {LAKE}.{QUARANTINE} WHERE {conditions} "
                                     f"ORDER BY batch_id, record_key{tail}",
                                     ([families] if families else []) + params))
        rows = [{**r, "status": OPEN, "by": None} for r in found.to_pylist()]
        for origin, batches in replays.items():
            rows += _family_status(con, origin, sorted(batches, key=replay_number), where, params)
    if not include_closed:
        rows = [r for r in rows if r["status"] == OPEN]
    rows.sort(key=lambda r: (r["batch_id"], r["record_key"] is None, r["record_key"] or ""))
    return rows[:limit] if limit is not None else rows


def _family_status(
    con: Any, origin: str, replays: list[str], where: list[str], params: list[Any]
) -> list[dict[str, Any]]:
    """The quarantine rows of one replayed origin (under the same filters) with their status.

    Filtering by province or record key keeps every row a status depends on: records are matched by their
    full text, which holds both.
    """
    family = [origin, *replays]
    conditions = " AND ".join(["list_contains(?, batch_id)", *where])
    table = _query(con, f"SELECT * FROM {LAKE}.{QUARANTINE} WHERE {conditions} "
                   "ORDER BY batch_id, record_key, record_json", [family, *params])
    if table.num_rows == 0:
        return []
    table = as_quarantine(table)
    dataset = str(table.column("dataset")[0].as_py())
    spec = canonical_dataset(dataset)
    by_batch = {b: table.filter(pc.equal(table.column("batch_id"), b)) for b in family}
    generations: list[tuple[str, list[str]]] = []
    for batch in family:
        try:
            texts = record_json(rebuild(by_batch[batch], dataset)).to_pylist()
        except ReplayRebuildError:
            texts = by_batch[batch].column("record_json").to_pylist()  # still listed; matched on the raw text
        generations.append((batch, texts))
    names = ", ".join(f'"{n}"' for n in spec.schema.names)
    key_filter = f' AND CAST("{spec.key}" AS VARCHAR) = ?' if "record_key = ?" in where else ""
    key_params = [params[where.index("record_key = ?")]] if key_filter else []
    committed = {
        b: record_json(_query(con, f'SELECT {names} FROM {LAKE}."{dataset}" WHERE batch_id = ?{key_filter}',
                              [b, *key_params]).cast(spec.schema)).to_pylist()
        for b in replays
    }
    statuses = resolve_family(generations, committed)
    out: list[dict[str, Any]] = []
    for batch in family:
        for row, st in zip(by_batch[batch].to_pylist(), statuses[batch], strict=True):
            out.append({k: row[k] for k in QUARANTINE_SCHEMA.names} | {"status": st.status, "by": st.by})
    return out


def records_digest(quarantined: pa.Table) -> str:
    """SHA-256 over the replayed records' record_json, sorted and newline-joined.

    Recomputable by an auditor from the lake's quarantine table, independent of Parquet bytes.
    """
    texts = sorted(str(t) for t in quarantined.column("record_json").to_pylist())
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Lake I/O and the replay itself.


@dataclass
class ReplayPlan:
    """What a replay of one origin batch would do, computed from the lake and the current contract."""

    origin: str
    replay_id: str
    province: str
    dataset: str
    window_start: datetime
    window_end: datetime
    origin_manifest_sha256: str
    origin_contract_version: str
    contract: Contract
    rule: str | None
    quarantined_in_origin: int
    already_replayed: int
    replayed: pa.Table  # the origin's quarantine rows re-checked now (QUARANTINE_SCHEMA)
    repeats: pa.Table  # pending rows whose key the origin (or a replay of it) committed: not replayed
    outcome: ValidationOutcome | None
    unfinished: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.outcome.accepted_count if self.outcome else 0

    @property
    def still_quarantined(self) -> int:
        return self.outcome.quarantined_count if self.outcome else 0

    def summary(self, status: ReplayStatus, committed: CommitSummary | None = None) -> ReplayResult:
        """What the replay did (with the commit's snapshot and manifest when it committed)."""
        passing = self.outcome.accepted.column(self.contract.key).to_pylist() if self.outcome else []
        return ReplayResult(
            status=status,
            origin=self.origin,
            replay_id=self.replay_id,
            contract_version=self.contract.version,
            origin_contract_version=self.origin_contract_version,
            rule=self.rule,
            quarantined_in_origin=self.quarantined_in_origin,
            already_replayed=self.already_replayed,
            replayed=self.replayed.num_rows,
            accepted=self.accepted,
            quarantined=self.still_quarantined,
            accepted_keys=passing,
            repeats_held_back=self.repeats.column("record_key").to_pylist(),
            rules=[
                RuleCount(rule_id=r.rule_id, severity=r.severity, unexpected=r.unexpected_count)
                for r in (self.outcome.rules if self.outcome else [])
                if r.unexpected_count
            ],
            snapshot_id=committed.snapshot_id if committed else None,
            manifest=committed.manifest if committed else None,
            manifest_sha256=committed.manifest_sha256 if committed else None,
        )


def _query(con: Any, sql: str, params: list[Any]) -> pa.Table:
    table: pa.Table = con.execute(sql, params).to_arrow_table()
    return table


def plan_replay(
    batch_id: str, hub: Hub, *, rule: str | None = None, contracts_dir: Path | None = None
) -> ReplayPlan:
    """Read the origin's quarantine from the lake, drop what earlier replays committed, re-validate the rest."""
    origin = origin_of(batch_id)
    with connect(hub.settings, read_only=True) as con:
        if snapshot_of(con, origin) is None:
            raise NotFound(
                f"batch {origin} is not in the lake; a held or failed batch is re-run, not replayed"
            )
        ledger = ledger_rows(con, origin)[0]
        province, dataset = ledger.province, ledger.dataset
        replays = _query(
            con, f"SELECT batch_id FROM {LAKE}.{LEDGER} WHERE starts_with(batch_id, ?)", [origin + REPLAY_MARK]
        ).column("batch_id").to_pylist()
        replays = [b for b in replays if origin_of(b) == origin]
        schema = canonical_dataset(dataset).schema
        quarantined = QUARANTINE_SCHEMA.empty_table()
        if ledger.quarantined:
            quarantined = as_quarantine(_query(
                con, f"SELECT * FROM {LAKE}.{QUARANTINE} WHERE batch_id = ? ORDER BY record_key, record_json",
                [origin],
            ))
        committed = schema.empty_table()
        if replays:
            columns = ", ".join(f'"{n}"' for n in schema.names)
            marks = ", ".join("?" for _ in replays)
            committed = _query(
                con, f'SELECT {columns} FROM {LAKE}."{dataset}" WHERE batch_id IN ({marks})', replays
            ).cast(schema)
        key = canonical_dataset(dataset).key
        held = pa.array([], schema.field(key).type)  # keys the origin and its replays committed
        if ledger.accepted or replays:
            held = _query(
                con, f'SELECT DISTINCT "{key}" AS k FROM {LAKE}."{dataset}" '
                "WHERE batch_id = ? OR starts_with(batch_id, ?)", [origin, origin + REPLAY_MARK],
            ).column("k").combine_chunks().cast(held.type)
    origin_manifest = manifest_path(hub.layout.manifests, province, dataset, origin)
    if not origin_manifest.exists():
        raise CheckFailed(f"batch {origin} has no signed manifest at {origin_manifest}; run verify first")
    contract = load_contract(dataset, contracts_dir)
    rebuilt = rebuild(quarantined, dataset)
    keep = pending_rows(rebuilt, committed)
    pending, pending_records = quarantined.take(keep), rebuilt.take(keep)
    if rule is not None:
        chosen = with_rule(pending, rule)
        pending, pending_records = pending.take(chosen), pending_records.take(chosen)
    # A record whose key its own batch already committed was rejected as a repeat within that batch; checked
    # alone it would pass the in-batch uniqueness rule and enter the lake as a second record, so it waits.
    repeat = pc.fill_null(pc.is_in(pending_records.column(key), value_set=held), False)
    blocked = pending.filter(repeat)
    pending, pending_records = pending.filter(pc.invert(repeat)), pending_records.filter(pc.invert(repeat))
    replay_id = next_replay_id(origin, replays)
    outcome = None
    if pending.num_rows:
        # What was unreadable as sent stays unreadable: the record stays quarantined, saying what was sent.
        records = intake.attach(pending_records, pending.column("as_sent").combine_chunks())
        outcome = _revalidate(records, contract, province, replay_id, hub, ledger.window_end)
    return ReplayPlan(
        origin=origin, replay_id=replay_id, province=province, dataset=dataset,
        window_start=ledger.window_start, window_end=ledger.window_end,
        origin_manifest_sha256=read_manifest(origin_manifest).digest(),
        origin_contract_version=ledger.contract_version, contract=contract, rule=rule,
        quarantined_in_origin=quarantined.num_rows, already_replayed=quarantined.num_rows - len(keep),
        replayed=pending, repeats=blocked, outcome=outcome,
        unfinished=[b for b in replays if not manifest_path(hub.layout.manifests, province, dataset, b).exists()],
    )


def _revalidate(
    records: pa.Table, contract: Contract, province: str, replay_id: str, hub: Hub, window_end: datetime | None
) -> ValidationOutcome:
    """The contract check the validate stage runs, on the rebuilt records.

    Lake rules see the lake as it is now (so a replayed record is judged against everything committed since,
    including earlier replays); "not in the future" is judged by the origin window's date, as the origin was.
    """
    today = window_end.astimezone(RUN_TIMEZONE).date() if window_end else None  # as pipeline.validate does
    return run_contract(
        conform(records, contract), contract, province=province, batch_id=replay_id, today=today,
        lake=DuckLakeReference(hub.settings),
    )


@contextmanager
def _replay_lock(hub: Hub, origin: str) -> Iterator[None]:
    """One replay of an origin at a time, so two concurrent replays cannot both take replay-N."""
    with file_lock(hub.layout.staging / f"{origin}.replay.lock"):
        yield


def _finish_unfinished(plan: ReplayPlan, hub: Hub) -> None:
    """A replay whose snapshot is in the lake but whose manifest is not (a crash between the two) is
    completed from its staging files, exactly as the commit stage repairs an ordinary batch."""
    for replay_id in plan.unfinished:
        if not (hub.staging(replay_id) / VALIDATION_FILE).exists():
            raise TerminalError(
                f"replay {replay_id} is in the lake without a manifest and its staging files are gone; "
                "it cannot be signed after the fact"
            )
        commit(replay_id, hub)


def _stage(plan: ReplayPlan, hub: Hub) -> None:
    """Write the staging files the commit stage reads (pull.json, validation.json, the two Parquet files)."""
    assert plan.outcome is not None
    outcome, contract = plan.outcome, plan.contract
    staging = hub.staging(plan.replay_id)
    shutil.rmtree(staging, ignore_errors=True)  # a replay that crashed before its lake commit starts clean
    staging.mkdir(parents=True)
    pull_info = PullRecord(
        batch_id=plan.replay_id,
        province=plan.province,
        dataset=plan.dataset,
        replay_of=plan.origin,
        window_start=plan.window_start,
        window_end=plan.window_end,
        since=None,
        watermark=None,  # a replay pulls nothing new: the province's watermark must not move
        pulled=plan.replayed.num_rows,
        landing=[],  # the raw payloads are the origin's, listed in its manifest
        drift=[],
        source_signatures=[],  # vouched for at the origin's pull; a replay lands no new bytes
    )
    # A replay re-checks rejects only: the hold threshold describes a source's batch, never a replay.
    validation = validation_record(plan.replay_id, contract, Verdict.of(outcome), held=False)
    for name, table in (("accepted.parquet", outcome.accepted), ("quarantined.parquet", outcome.quarantined)):
        with atomic.atomic_path(staging / name) as tmp:
            pq.write_table(table, tmp)
    write_record(staging / VALIDATION_FILE, validation)
    write_record(staging / PULL_FILE, pull_info)
    write_rejection_report(
        hub.layout.reports, province=plan.province, batch_id=plan.replay_id, quarantined=outcome.quarantined,
        rules=validation.rule_counts(), contract=contract, counts=validation.counts(),
        window=(plan.window_start, plan.window_end),
    )


def replay(
    batch_id: str,
    hub: Hub | None = None,
    *,
    rule: str | None = None,
    dry_run: bool = False,
    contracts_dir: Path | None = None,
) -> ReplayResult:
    """Re-validate the still-quarantined records of `batch_id` and commit those that now pass, once.

    `rule` limits the replay to records that failed that rule. `dry_run` only reports what would pass.
    Returns a summary whose status is dry_run, nothing_pending, nothing_passes or committed.
    """
    hub = hub or Hub.current()
    origin = origin_of(batch_id)
    if dry_run:
        plan = plan_replay(origin, hub, rule=rule, contracts_dir=contracts_dir)
        return plan.summary("dry_run")
    with _replay_lock(hub, origin):
        recovery.recover_before_stage(hub)  # a replay a crash interrupted is settled before it is planned again
        plan = plan_replay(origin, hub, rule=rule, contracts_dir=contracts_dir)
        if plan.unfinished:
            _finish_unfinished(plan, hub)
            plan = plan_replay(origin, hub, rule=rule, contracts_dir=contracts_dir)
        if plan.outcome is None:
            return plan.summary("nothing_pending")
        if plan.accepted == 0:  # committing only the same rejections again would add rows, not information
            return plan.summary("nothing_passes")
        _stage(plan, hub)
        crash_point("replay.after_stage")
        hub.log.append(
            hub.signer,
            events.Replay(
                origin=plan.origin,
                rule=plan.rule,
                replayed=plan.replayed.num_rows,
                accepted=plan.accepted,
                quarantined=plan.still_quarantined,
                contract_version=plan.contract.version,
                origin_contract_version=plan.origin_contract_version,
            ),
            actor=HUB, subject=plan.replay_id,
            digests={
                "origin_manifest": plan.origin_manifest_sha256,
                "replayed_records": records_digest(plan.replayed),
                "contract": plan.contract.document_sha256,
            },
        )
        crash_point("replay.after_entry")
        committed = commit(plan.replay_id, hub)
    return plan.summary("committed", committed)


__all__ = [
    "RECHECKED",
    "RESOLVED",
    "OPEN",
    "ReplayPlan",
    "RowStatus",
    "ReplayRebuildError",
    "next_replay_id",
    "origin_of",
    "pending_rows",
    "plan_replay",
    "quarantine_status",
    "rebuild",
    "records_digest",
    "replay",
    "resolve_family",
    "with_rule",
]
