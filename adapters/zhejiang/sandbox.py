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
import sqlalchemy as sa

from adapters.mapping import DatasetMapping, ProvinceMapping
from adapters.zhejiang.adapter import MAPPING, ZhejiangAdapter
from exchange.synthetic import DEFECT_COLUMN

# The base table behind each shared view (the view name lives in mapping.yaml).
BASE_TABLES = {
    "e_license": "T_DZZZ", "enterprise_registration": "T_SCZTDJ",
    "administrative_penalty": "T_XZCF", "provident_fund_transfer": "T_GJJZYJX",
}
_INSERT_ROWS = 10_000
_LIVE = "0"


class ZhejiangSandbox:
    """Zhejiang's views in `url` (default ``<root>/zhejiang.sqlite``); seeding appends rows to the base tables."""

    province = "zhejiang"

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root
        self.path = root / "zhejiang.sqlite"
        self.url = url or f"sqlite:///{self.path}"
        self.mapping = ProvinceMapping.load(MAPPING)
        self._metadata = sa.MetaData()
        self._tables = {
            name: _base_table(self._metadata, BASE_TABLES[name], dm) for name, dm in self.mapping.datasets.items()
        }
        self._engine: sa.Engine | None = None
        self._installed = False

    def install(self) -> None:
        """Create the base tables and views that do not exist yet (idempotent)."""
        if self._installed:
            return
        with self._connect().begin() as conn:
            inspector = sa.inspect(conn)
            tables = {n.upper() for n in inspector.get_table_names()}
            views = {n.upper() for n in inspector.get_view_names()}
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
        with self._connect().begin() as conn:
            for batch in native.to_batches(max_chunksize=_INSERT_ROWS):
                if batch.num_rows:
                    conn.execute(target.insert(), batch.to_pylist())

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
            conn.execute(statement)

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
        return ZhejiangAdapter(self.url)

    def _connect(self) -> sa.Engine:
        if self._engine is None:
            if sa.make_url(self.url).get_backend_name() == "sqlite":
                self.root.mkdir(parents=True, exist_ok=True)
            self._engine = sa.create_engine(self.url)
        return self._engine


def create(root: Path, url: str | None = None) -> ZhejiangSandbox:
    """A Zhejiang sandbox under `root` (or in the database at `url`), its tables and views created."""
    sandbox = ZhejiangSandbox(root, url)
    sandbox.install()
    return sandbox


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
