"""A stand-in for Zhejiang's shared-data database: the province's tables and views in a SQL database.

Like the real system, each dataset is a base table (no primary key: the source may hold duplicate keys,
which the contract catches) and a view over it that the hub reads. The embedded default is a SQLite file;
the integration tests install the same tables and views in MariaDB and PostgreSQL.

All DDL uses unquoted names, as the adapter's queries do, so each database folds them the same way on
both sides (PostgreSQL to lower case, the others keep or ignore case).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from adapters.authenticity import SourceTrust, office, sandbox_keyring, sign_digest
from adapters.mapping import DatasetMapping, ProvinceMapping
from adapters.zhejiang import batches
from adapters.zhejiang.adapter import MAPPING, ZhejiangAdapter
from exchange.signing.keyring import Keyring
from exchange.synthetic import DEFECT_COLUMN

# The base table behind each shared view (the view name lives in mapping.yaml).
BASE_TABLES = {
    "e_license": "T_DZZZ", "enterprise_registration": "T_SCZTDJ",
    "administrative_penalty": "T_XZCF", "provident_fund_transfer": "T_GJJZYJX",
}
_INSERT_ROWS = 50_000
# Positional placeholder per DBAPI paramstyle (SQLite: qmark; pymysql and psycopg: pyformat, which takes %s).
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_LIVE = "0"


class ZhejiangSandbox:
    """Zhejiang's views in `url` (default ``<root>/zhejiang.sqlite``); seeding appends rows to the base tables."""

    province = "zhejiang"

    def __init__(self, root: Path, url: str | None = None, keyring: Keyring | None = None) -> None:
        self.root = root
        # Zhejiang's data office signs each day's change batch; its public key is in this keyring's bundle.
        self.keyring = keyring or sandbox_keyring(root)
        self.path = root / "zhejiang.sqlite"
        self.url = url or f"sqlite:///{self.path}"
        self.mapping = ProvinceMapping.load(MAPPING)
        self._metadata = sa.MetaData()
        self._tables = {
            name: _base_table(self._metadata, BASE_TABLES[name], dm) for name, dm in self.mapping.datasets.items()
        }
        self._signatures = batches.signature_table(self._metadata)
        self._engine: sa.Engine | None = None
        self._installed = False

    @property
    def trust(self) -> SourceTrust:
        """The trust bundle that holds this sandbox's signing key (what a hub reading it must trust)."""
        return SourceTrust(self.keyring.dir)

    def resign(self, dataset: str) -> None:
        """Re-sign every day of the dataset's view (after the province changed rows by hand)."""
        dm = self.mapping.dataset(dataset)
        with self._connect().begin() as conn:
            table = self._signatures
            signed = {str(d) for (d,) in conn.execute(sa.select(table.c.RQ).where(table.c["ST"] == dm.source))}
            self.sign_days(conn, dataset, signed | set(batches.days_with_rows(conn, dm, None, "9999")))

    def sign_days(self, conn: sa.Connection, dataset: str, days: set[str]) -> None:
        """(Re)sign the view's change batch of each local day, in the transaction that changed it, and its batch of
        rows without a readable update time (batches.UNDATED) if that changed."""
        dm = self.mapping.dataset(dataset)
        signer = self.keyring.signer(office(self.province))
        table = self._signatures
        for day in sorted({*days, batches.UNDATED}):
            count, digest = batches.day_digest(conn, dm, day)
            if day == batches.UNDATED:
                # Its signing time is where the hub places these rows: re-signed only when they changed.
                kept = conn.execute(sa.select(table.c.ZY).where(table.c["ST"] == dm.source,
                                                                table.c["RQ"] == day)).scalar()
                if kept == digest or (kept is None and count == 0):
                    continue
            conn.execute(table.delete().where(table.c["ST"] == dm.source, table.c["RQ"] == day))
            if count:
                signed = sign_digest(signer, self.province, batches.subject(dm.source, day, count), digest)
                conn.execute(table.insert().values(ST=dm.source, RQ=day, HS=count, ZY=digest,
                                                   QM=signed.model_dump_json()))

    def install(self) -> None:
        """Create the base tables and views that do not exist yet (idempotent)."""
        if self._installed:
            return
        with self._connect().begin() as conn:
            inspector = sa.inspect(conn)
            tables = {n.upper() for n in inspector.get_table_names()}
            views = {n.upper() for n in inspector.get_view_names()}
            if batches.TABLE not in tables:
                self._signatures.create(conn)
            for name, dm in self.mapping.datasets.items():
                table = self._tables[name]
                if table.name.upper() not in tables:
                    table.create(conn)
                if dm.source.upper() not in views:
                    columns = ", ".join(c.name for c in table.columns)
                    conn.execute(sa.text(f"CREATE VIEW {dm.source} AS SELECT {columns} FROM {table.name}"))
        self._installed = True

    def seed(self, dataset: str, table: pa.Table) -> None:
        """Append canonical records (the generator's output) to the dataset's base table in native form."""
        self.install()
        if DEFECT_COLUMN in table.column_names:
            table = table.drop_columns([DEFECT_COLUMN])
        dm = self.mapping.dataset(dataset)
        native = dm.from_canonical(table)
        if dm.deleted is not None:
            native = native.append_column(dm.deleted.native, pa.repeat(pa.scalar(_LIVE), native.num_rows))
        target = self._tables[dataset]
        stamps = native.column(batches.stamp(dm))
        days = {d for d in pc.utf8_slice_codeunits(stamps, 0, 10).to_pylist() if d}
        with self._connect().begin() as conn:
            _bulk_insert(conn, target, native)
            self.sign_days(conn, dataset, days)

    def delete(self, dataset: str, keys: Sequence[str], at: datetime) -> None:
        """Soft-delete records as Zhejiang does: set the delete flag and stamp the update time with `at`."""
        dm = self.mapping.dataset(dataset)
        if dm.deleted is None:
            raise ValueError(f"{dataset} has no delete flag in {MAPPING}")
        stamp = next(f for f in dm.fields if f.canonical == "updated_at")
        assert stamp.timestamp is not None
        local = at.astimezone(ZoneInfo(dm.timezone)).strftime(stamp.timestamp)
        table = self._tables[dataset]
        key = table.c[dm.native_name(dm.dataset.key)]
        statement = (
            table.update()
            .where(key.in_(list(keys)))
            .values({dm.deleted.native: dm.deleted.value, stamp.native: local})
        )
        with self._connect().begin() as conn:
            # A deleted row moves to the deletion's day: re-sign the days it leaves and the day it joins.
            before = sa.select(sa.func.substr(table.c[stamp.native], 1, 10)).where(key.in_(list(keys))).distinct()
            days = {str(d) for (d,) in conn.execute(before) if d is not None} | {local[:10]}
            conn.execute(statement)
            self.sign_days(conn, dataset, days)

    def start(self) -> None:
        """Nothing to serve: the adapter connects to the database directly."""
        self.install()

    def stop(self) -> None:
        """Close pooled connections so the file (or the test schema) can be removed."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def env(self) -> dict[str, str]:
        """Point the hub's Zhejiang adapter at this database."""
        return {"EXCHANGE_ZHEJIANG_DB_URL": self.url}

    def adapter(self) -> ZhejiangAdapter:
        """An adapter reading this sandbox's views."""
        return ZhejiangAdapter(self.url, trust=self.trust)

    def _connect(self) -> sa.Engine:
        if self._engine is None:
            if sa.make_url(self.url).get_backend_name() == "sqlite":
                self.root.mkdir(parents=True, exist_ok=True)
            self._engine = sa.create_engine(self.url)
        return self._engine


def create(root: Path, url: str | None = None, keyring: Keyring | None = None) -> ZhejiangSandbox:
    """A Zhejiang sandbox under `root` (or in the database at `url`), its tables and views created, signing
    with the office key in `keyring` (default: see :func:`adapters.authenticity.sandbox_keyring`)."""
    sandbox = ZhejiangSandbox(root, url, keyring)
    sandbox.install()
    return sandbox


def _bulk_insert(conn: sa.Connection, target: sa.Table, native: pa.Table) -> None:
    """Insert `native`'s rows into `target` in one transaction, `_INSERT_ROWS` rows per executemany.

    Rows go to the driver as tuples built column-wise (``to_pylist`` per column, then ``zip``): a dict per
    row through SQLAlchemy's parameter processing was most of the seeding time (the values stored are the
    same Python str/float/None). Drivers with another paramstyle keep SQLAlchemy's insert.
    """
    names = [c.name for c in target.columns if c.name in native.column_names]
    marker = _PLACEHOLDERS.get(conn.dialect.paramstyle)
    sql = f"INSERT INTO {target.name} ({', '.join(names)}) VALUES ({', '.join([marker or ''] * len(names))})"
    for batch in native.select(names).to_batches(max_chunksize=_INSERT_ROWS):
        if not batch.num_rows:
            continue
        if marker is None:
            conn.execute(target.insert(), batch.to_pylist())
        else:
            conn.exec_driver_sql(sql, list(zip(*(column.to_pylist() for column in batch.columns), strict=True)))


def _base_table(metadata: sa.MetaData, name: str, dm: DatasetMapping) -> sa.Table:
    """Columns as the source system types them: text everywhere except numeric amounts, then the flag."""
    columns = [
        sa.Column(
            f.native,
            sa.Double() if pa.types.is_floating(dm.dataset.schema.field(f.canonical).type) else sa.String(255),
            quote=False,
        )
        for f in dm.fields
    ]
    if dm.deleted is not None:
        columns.append(sa.Column(dm.deleted.native, sa.String(1), quote=False))
    return sa.Table(name, metadata, *columns, quote=False)
