"""Zhejiang's views read straight into Arrow through ADBC (SQLite, PostgreSQL), bypassing DBAPI rows.

The row path (SQLAlchemy -> Python tuples -> ``pa.array`` per column) is what the adapter's results and the
signature digests are defined by; it costs 5-6x the read itself (BENCHMARKS.md, "SQL readers"). This
module gives the same tables faster, or refuses: every column must come out with exactly the Arrow type and
values ``pa.array`` would have built from the driver's Python values, else :class:`Unreadable` is raised
and the caller reads the query on the row path (resuming after the rows it already has, in the same order).

What is accepted, per column of each chunk (anything else is Unreadable):

* all values NULL -> a null-typed column (what ``pa.array([None, ...])`` gives);
* SQLite: text affinity (declared type containing CHAR, CLOB or TEXT) read as strings; REAL affinity read
  as doubles; INTEGER/NUMERIC affinity read as int64. Such columns can still hold other storage classes
  (SQLite keeps '壹佰万元' in a REAL column): ADBC then either fails on the batch (caught) or turns the
  column into formatted text, which the affinity check refuses.
* PostgreSQL: text types as strings, float8 as double, int2/int4/int8 as int64 (psycopg's int and float
  values hold the same numbers). numeric, float4, dates and times go to the row path (their Python values
  convert differently).

MariaDB/MySQL has no ADBC driver among the hub's dependencies: it keeps the row path.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

# sa.text's :name binds, rewritten to the driver's positional markers (the adapter's SQL has no literals).
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_DRIVERS = {"sqlite": "adbc_driver_sqlite", "postgresql": "adbc_driver_postgresql"}
# Rows per ADBC batch: SQLite infers a column's type from its first batch, so a large one makes a column
# that is NULL in its first rows (inferred int64, then failing on text) rare.
BATCH_ROWS = 50_000


class Unreadable(Exception):
    """This query's result cannot be given exactly as the row path gives it; read it on the row path."""


def supported(url: sa.URL) -> bool:
    """Whether `url`'s database has an ADBC driver installed (SQLite files and PostgreSQL)."""
    module = _DRIVERS.get(url.get_backend_name())
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return False  # a second connection to an in-memory database would see another, empty database
    return module is not None and importlib.util.find_spec(module) is not None


def _sqlite_affinity(declared: str) -> str:
    """SQLite's column affinity rules (https://sqlite.org/datatype3.html, 3.1)."""
    kind = declared.upper()
    if "INT" in kind:
        return "integer"
    if any(t in kind for t in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if not kind or "BLOB" in kind:
        return "blob"
    if any(t in kind for t in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "numeric"


_SQLITE_ACCEPTS = {"text": pa.string(), "real": pa.float64(), "integer": pa.int64(), "numeric": pa.int64()}


class ArrowReader:
    """Reads one database's views into Arrow tables shaped as the row path shapes them."""

    def __init__(self, url: sa.URL) -> None:
        self.backend = url.get_backend_name()
        if self.backend not in _DRIVERS:
            raise ValueError(f"no ADBC reader for {self.backend}")
        self._url = url
        self._affinities: dict[str, dict[str, str]] = {}

    def _connect(self) -> Any:
        if self.backend == "sqlite":
            import adbc_driver_sqlite.dbapi

            return adbc_driver_sqlite.dbapi.connect(self._url.database)
        import adbc_driver_postgresql.dbapi

        # libpq takes the URL as SQLAlchemy has it (options such as search_path included), minus the driver.
        uri = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        return adbc_driver_postgresql.dbapi.connect(uri)

    def tables(self, view: str, sql: str, params: dict[str, str], rows: int, skip: int = 0) -> Iterator[pa.Table]:
        """The result of `sql` (sa.text syntax) as tables of `rows` rows (the last one shorter), after
        dropping the first `skip` rows. Raises Unreadable, possibly after yielding some tables."""
        names = _BIND.findall(sql)
        if self.backend == "sqlite":
            positional, values = _BIND.sub("?", sql), [params[n] for n in names]
        else:  # PostgreSQL numbers its markers, one per distinct name
            order = list(dict.fromkeys(names))
            positional = _BIND.sub(lambda m: f"${order.index(m.group(1)) + 1}", sql)
            values = [params[n] for n in order]
        try:
            with self._connect() as conn, conn.cursor() as cursor:
                accepts = self._accepts(conn, view)
                if self.backend == "sqlite":
                    cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
                cursor.execute(positional, values or None)
                reader = cursor.fetch_record_batch()
                pending: list[pa.RecordBatch] = []
                held = 0
                for batch in reader:
                    if skip:
                        dropped = min(skip, batch.num_rows)
                        batch, skip = batch.slice(dropped), skip - dropped
                    pending.append(batch)
                    held += batch.num_rows
                    while held >= rows:
                        table = pa.Table.from_batches(pending, reader.schema)
                        yield self._shaped(table.slice(0, rows), accepts)
                        rest = table.slice(rows)
                        pending, held = rest.to_batches(), rest.num_rows
                if held:
                    yield self._shaped(pa.Table.from_batches(pending, reader.schema), accepts)
        except Unreadable:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver failure: the row path reads it (and maps its errors)
            raise Unreadable(f"{type(exc).__name__}: {exc}") from exc

    def _accepts(self, conn: Any, view: str) -> dict[str, pa.DataType]:
        """Column name (upper case) -> the one Arrow type the reader may return for it (SQLite), or {}."""
        if self.backend != "sqlite":
            return {}
        if view not in self._affinities:
            with conn.cursor() as cursor:
                cursor.execute("SELECT name, type FROM pragma_table_info(?)", [view])
                self._affinities[view] = {str(n).upper(): _sqlite_affinity(str(t or "")) for n, t in cursor.fetchall()}
        return {n: _SQLITE_ACCEPTS[a] for n, a in self._affinities[view].items() if a in _SQLITE_ACCEPTS}

    def _shaped(self, table: pa.Table, accepts: dict[str, pa.DataType]) -> pa.Table:
        """The table as the row path builds it: one chunk per column, its types, no schema metadata."""
        arrays: dict[str, pa.Array] = {}
        for name, column in zip(table.column_names, table.columns, strict=True):
            array = column.combine_chunks()
            if array.null_count == len(array):
                arrays[name] = pa.nulls(len(array))
                continue
            kind = array.type
            if self.backend == "sqlite":
                if accepts.get(name.upper()) != kind:
                    raise Unreadable(f"column {name}: {kind} from a column SQLite may hold other types in")
            elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
                array = array.cast(pa.string())
            elif pa.types.is_integer(kind) and pa.types.is_signed_integer(kind):
                array = array.cast(pa.int64())
            elif not pa.types.is_float64(kind):
                raise Unreadable(f"column {name}: {kind} converts differently on the row path")
            arrays[name] = array
        return pa.table(arrays)
