"""Zhejiang's adapter: reads the province's shared-data SQL views through SQLAlchemy.

The SQL is deliberately plain (bound parameters, unquoted upper-case identifiers, text comparison of
the views' local-time strings) so the same statement runs on SQLite, MariaDB and PostgreSQL.

Incremental reads re-read an overlap before the watermark and drop what was already delivered (see
:mod:`adapters.zhejiang.ledger`); soft-deleted rows (SCBZ = '1') are not records but deletions, reported
by :meth:`ZhejiangAdapter.deletions`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from adapters.authenticity import SourceTrust, SourceVerifier, VerifiedSource, hub_trust
from adapters.base import Landing, PullRequest, deletion_schema
from adapters.mapping import DatasetMapping, FieldMapping, ProvinceMapping
from adapters.zhejiang import arrow_read, batches, ledger
from adapters.zhejiang.arrow_read import ArrowReader, Unreadable
from adapters.zhejiang.ledger import DeliveryLedger
from exchange import intake
from exchange.config import ExchangeSettings, Layout
from exchange.datasets import TIMESTAMP
from exchange.errors import ExchangeError, SourceFormatError, TerminalError, TransientError

MAPPING = Path(__file__).parent / "mapping.yaml"
CHUNK_ROWS = 50_000
# Identifiers from mapping.yaml are interpolated into SQL (they cannot be bound), so they must be plain.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# OperationalError texts that mean "try again later" rather than "the view is wrong".
_TRANSIENT = (
    "locked", "timeout", "timed out", "too many connections", "server has gone away", "connection", "interrupted",
    "shutdown",
)


class ZhejiangAdapter:
    """Pulls Zhejiang's datasets from its SQL views, `chunk_rows` rows at a time."""

    province = "zhejiang"

    def __init__(
        self,
        url: str,
        *,
        chunk_rows: int = CHUNK_ROWS,
        overlap: timedelta = timedelta(0),
        delivered: DeliveryLedger | None = None,
        trust: SourceTrust | None = None,
        arrow: bool = True,
    ) -> None:
        # Whose keys vouch for Zhejiang's change batches: by default the trust bundle under EXCHANGE_HOME.
        self.trust = trust or hub_trust()
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        if overlap < timedelta(0):
            raise ValueError("overlap must not be negative")
        if overlap and delivered is None:
            # Without a record of what was delivered, every re-read row would be delivered twice.
            raise ValueError("an overlap needs a DeliveryLedger to de-duplicate the re-read rows")
        self.overlap = overlap
        self.delivered = delivered
        try:
            self._url = sa.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise TerminalError(f"EXCHANGE_ZHEJIANG_DB_URL is not a SQLAlchemy URL: {exc}") from None
        self.chunk_rows = chunk_rows
        self.mapping = ProvinceMapping.load(MAPPING)
        for dm in self.mapping.datasets.values():
            for name in (dm.source, *_select_columns(dm)):
                if not _IDENTIFIER.match(name):
                    raise ValueError(f"{MAPPING}: {name!r} is not a plain SQL identifier")
        # Created on first pull, so building the adapter (e.g. while a DAG is parsed) loads no driver.
        self._engine: sa.Engine | None = None
        # The window's rows straight into Arrow where an ADBC driver serves the database (arrow=False: DBAPI
        # rows only); the results are the same either way (see arrow_read).
        self._reader = ArrowReader(self._url) if arrow and arrow_read.supported(self._url) else None
        # The days the last pull verified, for the deletions() call that follows it over the same range.
        self._pulled_days: tuple[tuple[str, str | None, str], list[VerifiedSource]] | None = None

    @property
    def url(self) -> str:
        """The database URL with any password hidden (safe for logs and errors)."""
        return self._url.render_as_string(hide_password=True)

    def datasets(self) -> Sequence[str]:
        """The datasets Zhejiang publishes as views."""
        return tuple(self.mapping.datasets)

    def close(self) -> None:
        """Release pooled connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def pull(self, request: PullRequest, landing: Landing) -> Iterator[pa.Table]:
        """Yield canonical tables of the records updated in (since, window.end), ordered by update time.

        With an overlap, rows updated up to `overlap` before `since` are re-read too and those already
        delivered (same key and update time) dropped, so rows committed late are delivered once. Rows
        flagged deleted are left out (see :meth:`deletions`). Each chunk's native rows are landed as
        Parquet (``chunk-00001.parquet``, ...) before mapping. Nothing is yielded when no record changed.
        """
        dm = self.mapping.dataset(request.dataset)
        seen = self.delivered.delivered(request) if self.delivered and self.overlap else None
        key = dm.dataset.key
        remembered = pa.table({ledger.KEY: pa.array([], pa.string()), ledger.UPDATED: pa.array([], TIMESTAMP)})
        for canonical in self._chunks(dm, request, landing, "chunk", deleted=False):
            ids = ledger.row_ids(canonical.column(key), canonical.column("updated_at"))
            if seen is not None and len(seen):
                canonical = canonical.filter(pc.invert(pc.is_in(ids, value_set=seen)))
            if self.delivered is not None and self.overlap:
                delivered = pa.table(
                    {ledger.KEY: canonical.column(key), ledger.UPDATED: canonical.column("updated_at")}
                )
                remembered = ledger.recent(pa.concat_tables([remembered, delivered]), request.since, self.overlap)
            if canonical.num_rows:
                yield canonical
        yield from self._undated(dm, request, landing)
        # Reached only when the caller consumed every chunk: a pull that failed half-way records nothing.
        if self.delivered is not None and self.overlap:
            self.delivered.record(request, remembered, self.overlap)

    def deletions(self, request: PullRequest, landing: Landing | None = None) -> Iterator[pa.Table]:
        """Yield (record key, deleted_at) tables of the rows soft-deleted in the request's range.

        Zhejiang marks a deleted row SCBZ = '1' and stamps GXSJ with the deletion time. The range is the
        same as :meth:`pull`'s, overlap included and without de-duplication: applying a deletion twice
        is harmless, missing one is not. Chunks are landed as ``deleted-00001.parquet``, ...
        """
        dm = self.mapping.dataset(request.dataset)
        if dm.deleted is None:
            return
        key = dm.dataset.key
        schema = deletion_schema(request.dataset)
        for canonical in self._chunks(dm, request, landing, "deleted", deleted=True):
            yield pa.table([canonical.column(key), canonical.column("updated_at")], schema=schema)

    def _chunks(
        self, dm: DatasetMapping, request: PullRequest, landing: Landing | None, prefix: str, *, deleted: bool
    ) -> Iterator[pa.Table]:
        """Canonical chunks of the view's rows (live or deleted) in the request's range, landed first."""
        view = dm.source
        lower = request.since - self.overlap if request.since is not None else None
        statement, params, columns = _query(dm, request, lower, deleted=deleted)
        verifier = self.trust.verifier(self.province)
        with self._connect() as conn:
            done = 0
            try:
                _check_view(conn, dm)
                # Every day the range touches is checked against Zhejiang's signature before a row is read.
                verified = self._verified_days(conn, dm, (view, params.get("since"), params["end"]), verifier,
                                               deleted=deleted)
                if landing is not None:
                    landing.signatures.extend(verified)
                for number, native in enumerate(self._native_chunks(conn, view, statement, params, columns), start=1):
                    if landing is not None:
                        landing.write(f"{prefix}-{number:05d}.parquet", _parquet(native))
                    done += native.num_rows
                    if deleted:
                        stamp = dm.native_name("updated_at")
                        yield pa.table(
                            {
                                dm.dataset.key: native.column(dm.native_name(dm.dataset.key)).cast(pa.string()),
                                "updated_at": dm.read_column("updated_at", native.column(stamp), view),
                            }
                        )
                    else:
                        yield dm.to_canonical(native, view)
            except sa.exc.DBAPIError as exc:
                raise _map_error(exc, view, f"row {done + 1}") from exc

    def _native_chunks(self, conn: sa.Connection, view: str, statement: sa.TextClause, params: dict[str, str],
                       columns: list[str]) -> Iterator[pa.Table]:
        """The query's native chunks of chunk_rows rows: through the Arrow reader, or DBAPI rows from where it
        gave up (the same statement in the same order, so skipping the rows already given resumes it)."""
        done = 0
        if self._reader is not None:
            try:
                for native in self._reader.tables(view, statement.text, params, self.chunk_rows):
                    done += native.num_rows
                    yield native.rename_columns(columns)  # PostgreSQL folds unquoted names to lower case
                return
            except Unreadable:
                pass
        result = conn.execute(statement, params, execution_options={"yield_per": self.chunk_rows})
        for rows in result.partitions(self.chunk_rows):
            if done >= len(rows):
                done -= len(rows)
                continue
            yield _native_table(columns, rows[done:])
            done = 0

    def _undated(self, dm: DatasetMapping, request: PullRequest, landing: Landing) -> Iterator[pa.Table]:
        """The live rows without a readable update time (GXSJ NULL or not a time), if this pull places them.

        Such rows fit no day and no window by themselves, and must not be skipped: Zhejiang signs them as one
        batch (batches.UNDATED), re-signed when it changes, and the pull whose range (since, end) holds that
        signing time delivers them, once per version. They come stamped with that time and, in AS_SENT, the
        GXSJ as sent, so the validate stage quarantines each with its reason. Landed as ``undated-00001.parquet``.
        """
        stamp = batches.stamp(dm)
        with self._connect() as conn:
            try:
                verified = batches.verify_undated(conn, dm, self.trust.verifier(self.province))
                if verified is None:
                    return
                at = verified.signed_at
                if at >= request.window.end or (request.since is not None and at <= request.since):
                    return
                landing.signatures.append(verified)
                columns = _select_columns(dm)
                where = [batches.undated_condition(dm)]
                params = {"dated": batches.dated_pattern(dm)}
                if dm.deleted is not None:
                    where.append(f"({dm.deleted.native} IS NULL OR {dm.deleted.native} <> :deleted)")
                    params["deleted"] = dm.deleted.value
                sql = sa.text(f"SELECT {', '.join(columns)} FROM {dm.source} WHERE {' AND '.join(where)} "
                              f"ORDER BY {', '.join(columns)}")
                rows = conn.execute(sql, params).fetchall()
            except sa.exc.DBAPIError as exc:
                raise _map_error(exc, dm.source, "rows without a readable update time") from exc
        if not rows:
            return
        native = _native_table(columns, rows)
        landing.write("undated-00001.parquet", _parquet(native))
        sent = native.column(stamp)
        why = (f"{stamp} is not a time in the format {_field(dm, 'updated_at').timestamp}: the row fits no window; "
               f"placed at Zhejiang's signature of such rows, {at.isoformat()}")
        as_sent = intake.column([intake.problem("updated_at", pa.repeat(True, len(rows)), sent, why)], len(rows))
        stripped = native.set_column(native.schema.get_field_index(stamp), stamp,
                                     pa.nulls(len(rows), pa.string()))
        canonical = dm.to_canonical(stripped, dm.source, as_sent)
        # Stamped with their place, so the batch's watermark passes it and a later window does not report
        # them again; AS_SENT keeps what was sent, and the readable rule quarantines them whatever the stamp.
        at_column = pa.repeat(pa.scalar(at, TIMESTAMP), len(rows))
        yield canonical.set_column(canonical.schema.get_field_index("updated_at"), "updated_at", at_column)

    def _verified_days(self, conn: sa.Connection, dm: DatasetMapping, span: tuple[str, str | None, str],
                       verifier: SourceVerifier, *, deleted: bool) -> list[VerifiedSource]:
        """Verify the days of `span` (view, lower, upper). A day's signature covers its live and deleted rows
        alike, so deletions() right after pull() over the same range reuses the pull's check once (it read
        every row of the window a second time: 9 s of a 1M-record Zhejiang run); any other call verifies."""
        if deleted and self._pulled_days is not None and self._pulled_days[0] == span:
            verified = self._pulled_days[1]
        else:
            verified = batches.verify_days(conn, dm, span[1], span[2], verifier)
        self._pulled_days = None if deleted else (span, verified)
        return verified

    def _connect(self) -> sa.Connection:
        if self._url.get_backend_name() == "sqlite":
            database = self._url.database
            # SQLite would silently create an empty file; a missing database is a configuration error.
            if database and database != ":memory:" and not Path(database).is_file():
                raise TerminalError(f"Zhejiang database file {database} does not exist")
        if self._engine is None:
            try:
                self._engine = sa.create_engine(self._url)
            except ImportError as exc:
                raise TerminalError(f"no database driver for {self.url}: {exc}") from exc
        try:
            conn = self._engine.connect()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise TransientError(f"cannot connect to Zhejiang's database {self.url}: {exc.orig}") from exc
        conn.info[batches.READER] = self._reader
        return conn


def build(settings: ExchangeSettings) -> ZhejiangAdapter:
    """The adapter for EXCHANGE_ZHEJIANG_DB_URL, or for the embedded SQLite sandbox under EXCHANGE_HOME.

    It re-reads EXCHANGE_ZHEJIANG_OVERLAP_MINUTES before the watermark and keeps its delivery ledger in
    EXCHANGE_ZHEJIANG_STATE_DIR (default EXCHANGE_HOME/adapters/zhejiang).
    """
    url = settings.zhejiang_db_url
    if url is None:
        url = "sqlite:///" + str(Layout(settings.home).sandboxes / "zhejiang" / "zhejiang.sqlite")
    state = settings.zhejiang_state_dir or Layout(settings.home).home / "adapters" / "zhejiang"
    overlap = timedelta(minutes=settings.zhejiang_overlap_minutes)
    return ZhejiangAdapter(
        url, overlap=overlap, delivered=DeliveryLedger(state) if overlap else None,
        trust=hub_trust(settings.home, settings.trust_anchor),
    )


def _field(dm: DatasetMapping, canonical: str) -> FieldMapping:
    return next(f for f in dm.fields if f.canonical == canonical)


def _select_columns(dm: DatasetMapping) -> list[str]:
    """The view columns the adapter reads: the mapped fields, then the delete flag if there is one."""
    return [*dm.native_columns, *([dm.deleted.native] if dm.deleted else [])]


def _query(
    dm: DatasetMapping, request: PullRequest, lower: datetime | None, *, deleted: bool
) -> tuple[sa.TextClause, dict[str, str], list[str]]:
    """The SELECT over the view (live or deleted rows), the window bounds rendered as local-time text."""
    stamp = _field(dm, "updated_at")
    if stamp.timestamp is None:
        raise ValueError(f"{MAPPING}: {dm.dataset.name}.updated_at needs a timestamp format")
    key = dm.native_name(dm.dataset.key)
    params = {"end": _native_time(request.window.end, dm.timezone, stamp.timestamp, round_up=True),
              "dated": batches.dated_pattern(dm)}
    # Rows without a readable update time are not in any range: they come as the undated batch (see _undated).
    where = [f"{stamp.native} < :end", f"{stamp.native} LIKE :dated"]
    if lower is not None:
        params["since"] = _native_time(lower, dm.timezone, stamp.timestamp, round_up=False)
        where.insert(0, f"{stamp.native} > :since")
    if dm.deleted is not None:
        params["deleted"] = dm.deleted.value
        flag = dm.deleted.native
        # A missing flag means "not deleted": only an explicit deleted value makes a row a deletion.
        where.append(f"{flag} = :deleted" if deleted else f"({flag} IS NULL OR {flag} <> :deleted)")
    columns = [key, stamp.native] if deleted else _select_columns(dm)
    sql = (
        f"SELECT {', '.join(columns)} FROM {dm.source} "
        f"WHERE {' AND '.join(where)} ORDER BY {stamp.native}, {key}"
    )
    return sa.text(sql), params, columns


def _native_time(moment: datetime, timezone: str, fmt: str, *, round_up: bool) -> str:
    """Render a bound as the view's local-time text, to the second.

    The views record whole seconds, so ``GXSJ > floor(since)`` and ``GXSJ < ceil(end)`` select exactly
    the records after `since` and before `end`, and the text comparison of a zero-padded
    year-first format orders like the times themselves.
    """
    local = moment.astimezone(ZoneInfo(timezone))
    whole = local.replace(microsecond=0)
    if round_up and whole < local:
        whole += timedelta(seconds=1)
    return whole.strftime(fmt)


def _check_view(conn: sa.Connection, dm: DatasetMapping) -> None:
    """Fail with the view and column names before querying, instead of a driver-specific SQL error."""
    inspector = sa.inspect(conn)
    columns: list[Any] | None = None
    # PostgreSQL folds unquoted names to lower case; the other databases keep or ignore case.
    for name in dict.fromkeys((dm.source, dm.source.lower())):
        try:
            columns = list(inspector.get_columns(name))
            break
        except sa.exc.NoSuchTableError:
            continue
    if columns is None:
        raise SourceFormatError(dm.source, "view", "the view does not exist", "ask Zhejiang to publish it")
    present = {str(c["name"]).upper() for c in columns}
    expected = _select_columns(dm)
    missing = [c for c in expected if c.upper() not in present]
    if missing:
        raise SourceFormatError(
            dm.source,
            "columns",
            f"missing native field(s) {', '.join(missing)}",
            f"the view must expose {', '.join(expected)}; {dm.province} {dm.dataset.name}: "
            f"update {dm.mapping_file} if Zhejiang renamed or removed them",
        )
    # Only mapped columns are selected, so a new column would go unnoticed: report it as drift.
    known = {c.upper() for c in expected}
    dm.report_drift(sorted(c for c in present if c not in known), f"view {dm.source}")


def _native_table(names: list[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """The chunk's rows as Arrow columns with the types the driver returned (the raw copy).

    A column whose values come in mixed types (SQLite keeps '壹佰万元' in a REAL column) is kept as text, so
    the mapping reads each value on its own: one that is no number is that record's problem (quarantined
    with the value as sent), not the window's; a column of text alone is a changed field (the pull fails).
    """
    columns = list(zip(*rows, strict=True))
    arrays: dict[str, pa.Array] = {}
    for name, values in zip(names, columns, strict=True):
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Only a chunk with such a column pays for this look at each value.
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(arrays)


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _map_error(exc: sa.exc.DBAPIError, view: str, position: str) -> ExchangeError:
    """Lost connections and lock waits are worth a retry; anything else is a problem with the view."""
    detail = str(exc.orig) if exc.orig is not None else str(exc)
    if exc.connection_invalidated or (
        isinstance(exc, sa.exc.OperationalError) and any(t in detail.lower() for t in _TRANSIENT)
    ):
        return TransientError(f"reading {view} at {position}: {detail}")
    return SourceFormatError(view, position, f"database error: {detail}")
