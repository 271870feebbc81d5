"""Access operations as a department sees them: queries and extracts, every one recorded in provenance.

What the log holds for an access: the department (actor), token id, grant ids, dataset, snapshot,
columns and row count, plus SHA-256 digests of the SQL text and of the result. Never the SQL text or a
result value: a query can carry a resident ID in a literal, and the log is read by many.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from contextlib import AbstractContextManager, ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from exchange import recovery
from exchange.access.check import DATASET as CHECK_DATASET
from exchange.access.check import SignedLicenceCheck, check_licence
from exchange.access.envelope import parse_public_key
from exchange.access.errors import BadQuery
from exchange.access.extract import SignedExtractManifest, cut_extract, extract_digest
from exchange.access.lakeshare import LakeSource, SharedLake, per_call
from exchange.access.models import SignedGrant
from exchange.access.policy import check_disclosure, extract_key, query_scope, require
from exchange.access.query import (
    QueryLimits,
    QueryResult,
    check_statement,
    current_snapshot_id,
    result_digest,
    run_in_sandbox,
)
from exchange.access.registry import Registry
from exchange.access.terms import sharing_terms
from exchange.access.viewcache import Sandbox, ViewCache, advance_sandbox, build_sandbox, sandbox_key
from exchange.datasets import DATASETS
from exchange.errors import AccessDenied
from exchange.faults import crash_point
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.provenance import events
from exchange.provenance.events import Kind
from exchange.signing.canonical import document_digest, sha256_hex
from exchange.stages import ExtractResult

if TYPE_CHECKING:
    from exchange.api.ratelimit import CheckFailures, Lock

log = logging.getLogger(__name__)


def record_denial(hub: Hub, actor: str, attempt: str, subject: str, reason: str, **details: Any) -> None:
    """Append the refusal of an access attempt with its reason (which the hub wrote, so it holds no values)."""
    known = {k: v for k, v in details.items() if v is not None}
    hub.log.append(hub.signer, events.AccessDenied(attempt=attempt, reason=reason, **known), actor=actor,
                   subject=subject)


def latest_snapshot(hub: Hub) -> int:
    """The lake's current snapshot id."""
    with connect(hub.settings, read_only=True) as con:
        return current_snapshot_id(con)


def resolve_snapshot(con: duckdb.DuckDBPyConnection, snapshot: int | None) -> int:
    """`snapshot` if the lake has it (default: the current one), else BadQuery naming the valid range."""
    current = current_snapshot_id(con)
    if snapshot is None:
        return current
    row = con.execute(f"SELECT count(*) FROM {LAKE}.snapshots() WHERE snapshot_id = ?", [snapshot]).fetchone()
    if not row or not row[0]:
        raise BadQuery(f"the lake has no snapshot {snapshot}; snapshots run up to {current}")
    return snapshot


def query_for_department(
    hub: Hub, department: str, sql: str, snapshot: int | None = None, *, token_id: str | None = None,
    limits: QueryLimits | None = None, lake: LakeSource | None = None, views: ViewCache | None = None,
) -> QueryResult:
    """Run a department's SELECT over its permitted, masked views at `snapshot` (default: latest).

    `lake` lends the lake connection (default: a fresh one for this call; the API shares one per process,
    see exchange/access/lakeshare.py). With `views`, sandboxes are reused across queries of the same grant
    views and snapshot, and an older snapshot's sandbox is advanced to a new snapshot by the lake's change
    feed (exchange/access/viewcache.py); without, one is built for this query and dropped.
    """
    limits = limits or QueryLimits()
    open_lake = lake or per_call(hub.settings)
    sql_sha256 = sha256_hex(sql.encode())
    registry = Registry(hub.layout.access)
    context: dict[str, Any] = {"token_id": token_id, "sql_sha256": sql_sha256, "snapshot_id": snapshot}
    try:
        check_statement(sql)
        registry.department(department)
        grants, unusable = registry.usable_grants(department)
        require(query_scope(department, grants, unusable))
        with ExitStack() as stack:
            box: Sandbox
            if views is None:
                with open_lake() as con:
                    snapshot_id = resolve_snapshot(con, snapshot)
                    context["snapshot_id"] = snapshot_id
                    box = build_sandbox(con, grants, snapshot_id, limits)
                    assert box.con is not None
                    stack.callback(box.con.close)
            else:
                snapshot_id = _query_snapshot(open_lake, snapshot)
                context["snapshot_id"] = snapshot_id
                box = stack.enter_context(department_sandbox(views, open_lake, department, grants, snapshot_id,
                                                             limits))
            loaded = box.loaded
            context["grants"] = loaded
            # The lake cursor is gone: the department's SQL reaches only the sandbox's masked copies, on a
            # cursor of its own (so a timeout interrupts this query only).
            assert box.con is not None
            cursor = stack.enter_context(box.con.cursor())
            table = run_in_sandbox(cursor, sql, limits)
    except AccessDenied as denied:
        record_denial(hub, department, Kind.QUERY, "query", str(denied), **context)
        raise
    except BadQuery as bad:
        # Not a policy decision, but still an access attempt on record; only the error's kind is kept,
        # because DuckDB's messages quote the SQL and may quote values.
        hub.log.append(hub.signer, events.QueryFailed(error=type(bad).__name__,
                                                      **{k: v for k, v in context.items() if v is not None}),
                       actor=department, subject="query", digests={"sql": sql_sha256})
        raise
    result = QueryResult(table=table, snapshot_id=snapshot_id, grants=loaded,
                         result_sha256=result_digest(table), sql_sha256=sql_sha256)
    hub.log.append(
        hub.signer,
        events.Query(token_id=token_id, grants=loaded, snapshot_id=snapshot_id, columns=table.column_names,
                     rows=table.num_rows),
        actor=department, subject=",".join(sorted(loaded)) or "query",
        digests={"sql": sql_sha256, "result": result.result_sha256},
    )
    return result


def _query_snapshot(source: LakeSource, snapshot: int | None) -> int:
    # The shared lake knows the current snapshot while the catalog is unchanged (lakeshare.py); an explicit
    # snapshot is always checked against the catalog (it may have expired).
    if snapshot is None and isinstance(source, SharedLake):
        known = source.known_current()
        if known is not None:
            return known
        with source.cursor() as con:
            return source.current_snapshot(con)
    with source() as con:
        return resolve_snapshot(con, snapshot)


def department_sandbox(views: ViewCache, lake: LakeSource, department: str, grants: list[SignedGrant],
                       snapshot_id: int, limits: QueryLimits) -> AbstractContextManager[Sandbox]:
    """The cached sandbox of `grants` at the snapshot, built or advanced if not ready.

    Only the one building or advancing it takes a lake lease, and only for that work: whoever waits for
    a sandbox holds no lease, so a lease draining for a writer can never wait on a waiter (a deadlock).
    The recipe kept with it lets exchange/access/warmer.py advance it to the next snapshot ahead of a query.
    """
    def build() -> Sandbox:
        with lake() as con:
            return build_sandbox(con, grants, snapshot_id, limits)

    def advance(older: Sandbox, at: int) -> Sandbox:
        with lake() as con:
            return advance_sandbox(con, older, grants, at, snapshot_id)

    return views.sandbox(sandbox_key(grants, snapshot_id, limits), build, advance, recipe=(department, limits))


def extract_for_department(
    hub: Hub, department: str, dataset: str, out_dir: Path, snapshot: int | None = None, *,
    token_id: str | None = None, encrypt: bool = False, lake: LakeSource | None = None,
) -> ExtractResult:
    """Cut the department's grant on `dataset` at `snapshot` (default: latest) into `out_dir`.

    With `encrypt`, the files are sealed to the department's registered X25519 extract key.
    """
    recovery.recover_before_stage(hub)
    signed = _cut(hub, department, dataset, out_dir, snapshot, token_id, encrypt, lake)
    _record_extract(hub, signed, out_dir, token_id)
    return ExtractResult(signed=signed, folder=str(out_dir))


def publish_extract(hub: Hub, department: str, dataset: str, snapshot: int | None = None, *,
                    token_id: str | None = None, encrypt: bool = False,
                    lake: LakeSource | None = None) -> ExtractResult:
    """Cut an extract into EXCHANGE_HOME/extracts/<department>/<extract_id>/ (atomically: temp dir, rename).

    Logged before it is moved into place: a published extract is always a logged one. A crash in between leaves
    a signed, logged folder under its partial name, which recovery moves into place (exchange/recovery.py).
    """
    recovery.recover_before_stage(hub)
    base = hub.layout.extracts / department
    staging = base / recovery.partial_extract_name(os.getpid(), uuid.uuid4().hex)
    try:
        signed = _cut(hub, department, dataset, staging, snapshot, token_id, encrypt, lake)
        crash_point("extract.after_cut")
        final = base / signed.manifest.extract_id
        _record_extract(hub, signed, final, token_id)
        crash_point("extract.after_entry")
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExtractResult(signed=signed, folder=str(final))


def _cut(hub: Hub, department: str, dataset: str, out_dir: Path, snapshot: int | None,
         token_id: str | None, encrypt: bool = False, lake: LakeSource | None = None) -> SignedExtractManifest:
    hub.log.ensure_writable()  # an extract the log cannot record is not served (LogUnavailable)
    registry = Registry(hub.layout.access)
    try:
        grant = registry.active_grant(department, dataset)
        recipient = extract_recipient(registry, department) if encrypt else None
        with (lake or per_call(hub.settings))() as con:
            snapshot = resolve_snapshot(con, snapshot)
            return cut_extract(con, grant, snapshot, out_dir, hub.signer, recipient)
    except (AccessDenied, BadQuery) as denied:
        record_denial(hub, department, Kind.EXTRACT, dataset, str(denied), token_id=token_id, snapshot_id=snapshot)
        raise


def extract_recipient(registry: Registry, department: str) -> X25519PublicKey:
    """The department's registered X25519 extract key, or AccessDenied if it has none."""
    return parse_public_key(require(extract_key(department, registry.department(department).extract_public_key)))


def _record_extract(hub: Hub, signed: SignedExtractManifest, out_dir: Path, token_id: str | None) -> None:
    m = signed.manifest
    hub.log.append(
        hub.signer,
        events.Extract(grant=m.grant_id, dataset=m.dataset, snapshot_id=m.snapshot_id, rows=m.rows,
                       columns=m.columns, token_id=token_id, out=str(out_dir),
                       **({"encrypted_to": m.encryption.recipient_key_id} if m.encryption else {})),
        actor=m.department, subject=m.extract_id,
        digests={"extract_manifest": extract_digest(signed), **{f.name: f.sha256 for f in m.files}},
    )


def check_licence_for_department(hub: Hub, department: str, license_id: str, holder_id: str, *,
                                 token_id: str | None = None, lake: LakeSource | None = None,
                                 failures: CheckFailures | None = None) -> SignedLicenceCheck:
    """Answer a minimal-disclosure e-licence check at the latest snapshot, sign it and log it.

    No grant is needed: the caller learns valid / not valid for the exact pair, plus the details its usable
    grant on e_license (if any) shows in clear for licences inside its row filter. A pair that matches no
    licence is logged as a denial and, with `failures` (the API's counter), counted against the token and
    the department; a lockout it starts is logged and raised as an operator alert. The log holds the answer
    and its digest, never the licence number or holder ID.
    """
    registry = Registry(hub.layout.access)
    try:
        registry.department(department)
        grants, _ = registry.usable_grants(department)
        grant = next((g.grant for g in grants if g.grant.dataset == CHECK_DATASET), None)
        disclosure = check_disclosure(grant, sharing_terms(CHECK_DATASET), DATASETS[CHECK_DATASET].schema)
        with (lake or per_call(hub.settings))() as con:
            checked = check_licence(con, current_snapshot_id(con), department, license_id, holder_id, hub.signer,
                                    disclosure)
    except AccessDenied as denied:
        record_denial(hub, department, Kind.LICENSE_CHECK, CHECK_DATASET, str(denied), token_id=token_id)
        raise
    c = checked.signed.check
    if not checked.matched:
        # The caller sees an ordinary not_valid; the log and the counter know it was a failed holder check.
        record_denial(hub, department, Kind.LICENSE_CHECK, CHECK_DATASET, FAILED_CHECK, token_id=token_id,
                      snapshot_id=c.snapshot_id, check_id=c.check_id)
        if failures is not None and token_id is not None:
            for lock in failures.failed(department, token_id):
                _lockout(hub, department, token_id, lock)
        return checked.signed
    hub.log.append(
        hub.signer,
        events.LicenseCheck(token_id=token_id, check_id=c.check_id, snapshot_id=c.snapshot_id, answer=c.answer,
                            holder_checked=c.holder_checked),
        actor=department, subject=CHECK_DATASET,
        digests={"answer": document_digest(c.model_dump(mode="json"))},
    )
    return checked.signed


FAILED_CHECK = "failed holder check: the licence id and holder id given do not match a licence together"


def _lockout(hub: Hub, department: str, token_id: str, lock: Lock) -> None:
    """Log a lockout and raise the operator's alert: reports/alerts/<department>.<when>.lockout.json + a warning."""
    until = datetime.now(UTC) + timedelta(seconds=lock.seconds)
    event = events.Lockout(scope=lock.scope, token_id=token_id, failures=lock.failures,
                           window_seconds=lock.window_seconds, locked_until=until.isoformat())
    hub.log.append(hub.signer, event, actor=department, subject=department)
    alerts = hub.layout.reports / "alerts"
    alerts.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    summary = (f"{department} locked out of e-licence checks ({lock.scope} {lock.key}) until {until:%H:%M:%S}Z "
               f"after {lock.failures} failed holder checks in {lock.window_seconds:g} s: someone may be trying "
               "to recover an ID")
    path = alerts / f"{department}.{stamp}.{lock.scope}.lockout.json"
    path.write_text(json.dumps({"department": department, **event.details(), "summary": summary},
                               ensure_ascii=False, indent=2), encoding="utf-8")
    log.warning("%s (alert: %s)", summary, path)
