"""A small e-licence lake written straight into DuckLake, for access tests that need data but not adapters.

The access layer reads lake tables only, so these tests seed them directly (one snapshot per call)
instead of going through a province adapter, whose source checks are another issue's concern.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from exchange.access.models import Department, Grant, RowCondition
from exchange.access.registry import Registry
from exchange.config import ExchangeSettings
from exchange.datasets import dataset as canonical_dataset
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect, ensure_table
from exchange.synthetic import DEFECT_COLUMN, generate

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)
DEP = "js.public_security"


def clean_e_licenses(n: int, seed: int, province: str = "jiangsu") -> pa.Table:
    """`n` synthetic e-licences minus the deliberately defective ones, in the canonical schema."""
    table = generate("e_license", province, n, seed=seed, start=START, end=END)
    table = table.filter(pc.is_null(table[DEFECT_COLUMN]))
    return table.select(canonical_dataset("e_license").schema.names)


def seed_lake(hub: Hub, rows: pa.Table, province: str = "jiangsu", batch_id: str = "test-batch") -> None:
    """Append `rows` to the lake's e_license table with lineage columns, as one snapshot."""
    schema = canonical_dataset("e_license").schema
    lake_rows = rows.append_column("province", pa.array([province] * rows.num_rows, pa.string())) \
        .append_column("batch_id", pa.array([batch_id] * rows.num_rows, pa.string()))
    with connect(hub.settings) as con:
        ensure_table(con, "e_license", schema.append(pa.field("province", pa.string()))
                     .append(pa.field("batch_id", pa.string())))
        con.register("incoming_rows", lake_rows)
        con.execute(f"INSERT INTO {LAKE}.e_license BY NAME SELECT * FROM incoming_rows")
        con.unregister("incoming_rows")


def region_grant(grant_id: str, prefix: str) -> Grant:
    """DEP's grant on three e-licence columns, rows limited to region codes starting with `prefix`."""
    return Grant(id=grant_id, department=DEP, dataset="e_license", columns=["license_id", "region_code", "holder_id"],
                 row_filter=[RowCondition(column="region_code", op="prefix_in", values=[prefix])], purpose="test",
                 legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
                 expires_on=datetime.now(UTC).date() + timedelta(days=5), issued_at=datetime.now(UTC))


def granted_hub(home: Path) -> Hub:
    """A hub on `home` with 300 clean Jiangsu e-licences in the lake and DEP granted region 32's rows."""
    hub = Hub(ExchangeSettings(home=home))
    seed_lake(hub, clean_e_licenses(300, seed=3))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEP, name=DEP, province="jiangsu"))
    registry.add_grant(region_grant("g-1", "32"), hub.signer)
    return hub
