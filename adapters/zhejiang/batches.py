"""Zhejiang's signed change batches: one signature per view and local day of update time.

A database has no file to sign, and the hub's windows (with their overlap) never line up with the
province's commits, so Zhejiang signs a unit both sides can recompute: all rows of a view whose update
time (GXSJ) falls on one local day, live and soft-deleted alike. Its digest is SHA-256 over the rows in
a total order (every column), each value length-prefixed so no two row sets encode alike. The province
re-signs a day in the same transaction that changes it; the signatures live in the table ``SJQM``
(数据签名): view ST, day RQ, row count HS, digest ZY and the signed statement QM (JSON).

Before reading a window, the adapter recomputes the digest of every day the window touches and checks it
against that day's signature: a row added, changed or removed after signing, a day without a signature,
or a signature without its rows fails the pull.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from adapters.authenticity import SourceVerifier, VerifiedSource, office, parse_statement
from adapters.mapping import DatasetMapping
from adapters.zhejiang.arrow_read import ArrowReader, Unreadable
from exchange.errors import SourceAuthenticityError

TABLE = "SJQM"
CHUNK_ROWS = 50_000
# Connection.info key of the ArrowReader the hub's adapter reads this connection's database with (absent on
# the province's side, which signs inside its own transaction).
READER = "zhejiang_arrow_reader"
# The RQ of the batch of rows without a readable update time (it sorts after every YYYY-MM-DD).
UNDATED = "undated"


def signature_table(metadata: sa.MetaData) -> sa.Table:
    """The signature table the province keeps beside its views."""
    return sa.Table(
        TABLE, metadata,
        sa.Column("ST", sa.String(64), quote=False), sa.Column("RQ", sa.String(10), quote=False),
        sa.Column("HS", sa.Integer(), quote=False), sa.Column("ZY", sa.String(64), quote=False),
        sa.Column("QM", sa.Text(), quote=False),
        quote=False,
    )


def subject(view: str, day: str, rows: int) -> str:
    """What a day's signature is about (the row count is signed with it)."""
    return f"{view}/{day}/{rows} rows"


def columns(dm: DatasetMapping) -> list[str]:
    """Every column the digest covers: the mapped fields, then the delete flag."""
    return [*dm.native_columns, *([dm.deleted.native] if dm.deleted else [])]


def stamp(dm: DatasetMapping) -> str:
    """The view's update-time column."""
    return dm.native_name("updated_at")


def dated_pattern(dm: DatasetMapping) -> str:
    """A SQL LIKE pattern every readable update time matches (from the mapping's timestamp format).

    Rows that do not match (GXSJ NULL, or text in another shape) fit no day: they form the view's undated
    batch, signed apart and reported as records that cannot be placed in a window (see the adapter).
    """
    fmt = next(f.timestamp for f in dm.fields if f.canonical == "updated_at")
    if fmt is None:
        raise ValueError(f"{dm.mapping_file}: {dm.dataset.name}.updated_at needs a timestamp format")
    widths = {"%Y": "____", "%m": "__", "%d": "__", "%H": "__", "%M": "__", "%S": "__"}
    pattern = fmt
    for directive, blanks in widths.items():
        pattern = pattern.replace(directive, blanks)
    if "%" in pattern:
        raise ValueError(f"{dm.mapping_file}: {dm.dataset.name}.updated_at format {fmt!r} has no fixed width")
    return pattern


def _digest(conn: sa.Connection, dm: DatasetMapping, where: str, params: dict[str, str],
            reader: ArrowReader | None = None) -> tuple[int, str]:
    cols = columns(dm)
    sql = f"SELECT {', '.join(cols)} FROM {dm.source} WHERE {where} ORDER BY {', '.join(cols)}"
    if reader is not None:
        # Straight into Arrow: the same text per value as the row path's _text, so the same digest.
        try:
            digest, count = hashlib.sha256(), 0
            for table in reader.tables(dm.source, sql, params, CHUNK_ROWS):
                _feed_text(digest, [column.cast(pa.string()) for column in table.columns])
                count += table.num_rows
            return count, digest.hexdigest()
        except Unreadable:
            pass  # the row path below decides, from the start
    digest = hashlib.sha256()
    count = 0
    # Per statement: Connection.execution_options would leave the whole connection streaming (on PostgreSQL a
    # server-side cursor), and the DELETE/INSERT that re-sign the day in the same transaction would fail.
    result = conn.execute(sa.text(sql), params, execution_options={"yield_per": CHUNK_ROWS})
    for rows in result.partitions(CHUNK_ROWS):
        _feed(digest, rows, len(cols))
        count += len(rows)
    return count, digest.hexdigest()


def day_digest(conn: sa.Connection, dm: DatasetMapping, day: str, reader: ArrowReader | None = None) -> tuple[int, str]:
    """(row count, hex SHA-256) of the view's rows updated on local day `day` (YYYY-MM-DD); UNDATED: of the
    rows without a readable update time. A `reader` reads on its own connection, so it is for the hub's
    checks only: the province signs inside the transaction that changed the rows (conn sees them, it not)."""
    if day == UNDATED:
        return _digest(conn, dm, undated_condition(dm), {"dated": dated_pattern(dm)}, reader)
    following = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    where = f"{stamp(dm)} >= :start AND {stamp(dm)} < :end AND {stamp(dm)} LIKE :dated"
    return _digest(conn, dm, where, {"start": day, "end": following, "dated": dated_pattern(dm)}, reader)


def undated_condition(dm: DatasetMapping) -> str:
    """SQL: the row has no readable update time (NULL, or not shaped like :dated)."""
    return f"({stamp(dm)} IS NULL OR {stamp(dm)} NOT LIKE :dated)"


def days_with_rows(conn: sa.Connection, dm: DatasetMapping, lower: str | None, upper: str) -> list[str]:
    """The local days (YYYY-MM-DD) on which rows with lower < GXSJ < upper were updated."""
    where = f"{stamp(dm)} < :upper AND {stamp(dm)} LIKE :dated" + (
        f" AND {stamp(dm)} > :lower" if lower is not None else "")
    params = {"upper": upper, "dated": dated_pattern(dm), **({"lower": lower} if lower is not None else {})}
    sql = sa.text(f"SELECT DISTINCT SUBSTR({stamp(dm)}, 1, 10) FROM {dm.source} WHERE {where}")
    return sorted(str(row[0]) for row in conn.execute(sql, params) if row[0] is not None)


def _text(values: Sequence[Any]) -> pa.Array:
    """One column's values as text; a column of mixed types (a REAL column holding '壹佰万元') value by value,
    so its rows still hash (both sides hash alike: the province signs with this very function)."""
    try:
        return pa.array(values).cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _feed(digest: Any, rows: Sequence[Sequence[Any]], width: int) -> None:
    """Hash DBAPI rows: each column as text (see _text), then as _feed_text."""
    if rows:
        _feed_text(digest, [_text(values) for values in zip(*rows, strict=True)])


def _feed_text(digest: Any, texts: list[pa.Array]) -> None:
    """Hash rows vectorized: each value as `<length>:<text>` (null as `-`), comma-separated, one line per row."""
    if not texts or len(texts[0]) == 0:
        return
    encoded: list[pa.Array] = []
    for text in texts:
        prefixed = pc.binary_join_element_wise(pc.cast(pc.utf8_length(text), pa.string()), text, ":")
        encoded.append(pc.if_else(pc.is_null(text), pa.scalar("-"), prefixed))
    lines = pc.binary_join_element_wise(*encoded, ",")
    lines = pc.binary_join_element_wise(lines, pa.scalar(""), "\n")  # terminate every row with "\n"
    array = pa.array(lines) if not isinstance(lines, pa.Array) else lines
    array = array.cast(pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    if data is not None:
        digest.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def verify_days(
    conn: sa.Connection, dm: DatasetMapping, lower: str | None, upper: str, verifier: SourceVerifier
) -> list[VerifiedSource]:
    """Verify every local day holding rows with lower < GXSJ < upper, or signed within those days.

    The days' rows are read through the connection's Arrow reader if the adapter gave it one (see READER)."""
    reader = conn.info.get(READER)
    view = dm.source
    province = verifier.province
    names = {n.upper() for n in sa.inspect(conn).get_table_names()}
    if TABLE not in names:
        raise SourceAuthenticityError(
            province, f"view {view}", f"unsigned: the database has no signature table {TABLE}",
            f"the hub reads only change batches signed by {office(province)}; ask Zhejiang to publish {TABLE}",
        )
    where = "ST = :view AND RQ <= :last" + (" AND RQ >= :first" if lower is not None else "")
    params = {"view": view, "last": upper[:10], **({"first": lower[:10]} if lower is not None else {})}
    signed = {
        str(day): str(statement)
        for day, statement in conn.execute(sa.text(f"SELECT RQ, QM FROM {TABLE} WHERE {where}"), params)
    }
    verified = []
    for day in sorted(set(days_with_rows(conn, dm, lower, upper)) | set(signed)):
        item = f"view {view}, rows updated on {day}"
        count, digest = day_digest(conn, dm, day, reader)
        statement = parse_statement(signed[day], province, item) if day in signed else None
        expected = subject(view, day, count)
        if statement is not None and statement.subject != expected and statement.subject.startswith(f"{view}/{day}/"):
            raise SourceAuthenticityError(
                province, item, f"the view holds {count} rows, the signature is for {statement.subject!r}",
                "rows were added or removed after Zhejiang signed the day; if Zhejiang was writing just now, "
                "retry, otherwise ask Zhejiang to check the table behind the view",
            )
        verified.append(verifier.verify(statement, expected, digest, item))
    return verified


def verify_undated(conn: sa.Connection, dm: DatasetMapping, verifier: SourceVerifier) -> VerifiedSource | None:
    """Verify the view's undated batch (rows without a readable update time) against its signature.

    None when the view has no such rows and no signature for them. Its signing time is when Zhejiang last
    changed the batch: the adapter places the rows there (a window holding that moment reports them).
    """
    view = dm.source
    item = f"view {view}, rows without a readable update time"
    count, digest = day_digest(conn, dm, UNDATED)
    row = conn.execute(sa.text(f"SELECT QM FROM {TABLE} WHERE ST = :view AND RQ = :undated"),
                       {"view": view, "undated": UNDATED}).first()
    if row is None and count == 0:
        return None
    statement = parse_statement(str(row[0]), verifier.province, item) if row is not None else None
    return verifier.verify(statement, subject(view, UNDATED, count), digest, item)
