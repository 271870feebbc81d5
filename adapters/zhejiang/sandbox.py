"""A stand-in for Zhejiang's shared-data database: a SQLite file with the province's tables and views.

Like the real system, each dataset is a base table (no primary key: the source may hold duplicate keys,
which the contract catches) and a view over it that the hub reads.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from adapters.mapping import DatasetMapping, ProvinceMapping
from adapters.zhejiang.adapter import MAPPING, ZhejiangAdapter
from exchange.synthetic import DEFECT_COLUMN

# The base table behind each shared view (the view name lives in mapping.yaml).
BASE_TABLES = {"e_license": "T_DZZZ", "enterprise_registration": "T_SCZTDJ"}
_INSERT_ROWS = 10_000


class ZhejiangSandbox:
    """Zhejiang's views in ``<root>/zhejiang.sqlite``; seeding appends rows to the base tables."""

    province = "zhejiang"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "zhejiang.sqlite"
        self.url = f"sqlite:///{self.path}"
        self.mapping = ProvinceMapping.load(MAPPING)
        self._metadata = sa.MetaData()
        self._tables = {
            name: _base_table(self._metadata, BASE_TABLES[name], dm)
            for name, dm in self.mapping.datasets.items()
        }
        self._engine: sa.Engine | None = None

    def install(self) -> None:
        """Create the database file, base tables and views (idempotent)."""
        engine = self._connect()
        self._metadata.create_all(engine)
        with engine.begin() as conn:
            existing = set(sa.inspect(conn).get_view_names())
            for name, dm in self.mapping.datasets.items():
                if dm.source not in existing:
                    columns = ", ".join(dm.native_columns)
                    conn.execute(
                        sa.text(f"CREATE VIEW {dm.source} AS SELECT {columns} FROM {BASE_TABLES[name]}")
                    )

    def seed(self, dataset: str, table: pa.Table) -> None:
        """Append canonical records (the generator's output) to the dataset's base table in native form."""
        self.install()
        if DEFECT_COLUMN in table.column_names:
            table = table.drop_columns([DEFECT_COLUMN])
        native = self.mapping.dataset(dataset).from_canonical(table)
        target = self._tables[dataset]
        with self._connect().begin() as conn:
            for batch in native.to_batches(max_chunksize=_INSERT_ROWS):
                if batch.num_rows:
                    conn.execute(target.insert(), batch.to_pylist())

    def start(self) -> None:
        """Nothing to serve: the adapter opens the SQLite file directly."""
        self.install()

    def stop(self) -> None:
        """Close pooled connections so the file can be removed."""
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
            self.root.mkdir(parents=True, exist_ok=True)
            self._engine = sa.create_engine(self.url)
        return self._engine


def create(root: Path) -> ZhejiangSandbox:
    """A Zhejiang sandbox under `root`, with its tables and views already created."""
    sandbox = ZhejiangSandbox(root)
    sandbox.install()
    return sandbox


def _base_table(metadata: sa.MetaData, name: str, dm: DatasetMapping) -> sa.Table:
    """Columns as the source system types them: text everywhere except numeric amounts."""
    columns = [
        sa.Column(
            f.native,
            sa.Double()
            if pa.types.is_floating(dm.dataset.schema.field(f.canonical).type)
            else sa.String(255),
        )
        for f in dm.fields
    ]
    return sa.Table(name, metadata, *columns)
