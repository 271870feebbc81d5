"""The declarative mapping: round trip, code tables, impossible dates become nulls (quarantined, not shifted)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa

from adapters.mapping import ProvinceMapping
from exchange.synthetic import DEFECT_COLUMN, generate

JIANGSU = Path(__file__).resolve().parents[2] / "adapters" / "jiangsu" / "mapping.yaml"


def test_native_round_trip_is_lossless() -> None:
    mapping = ProvinceMapping.load(JIANGSU).dataset("e_license")
    table = generate("e_license", "jiangsu", 2000, seed=9, start=datetime(2026, 11, 1, tzinfo=UTC),
                     end=datetime(2026, 11, 5, tzinfo=UTC)).drop([DEFECT_COLUMN])
    native = mapping.from_canonical(table)
    assert set(native.column("证照状态").to_pylist()) <= {"有效", "注销", "过期"}
    assert mapping.to_canonical(native, "test.csv").equals(table)


def test_impossible_dates_are_nulled_not_rolled_over() -> None:
    mapping = ProvinceMapping.load(JIANGSU).dataset("e_license")
    native = mapping.from_canonical(
        generate("e_license", "jiangsu", 5, seed=1, start=datetime(2026, 11, 1, tzinfo=UTC),
                 end=datetime(2026, 11, 2, tzinfo=UTC)).drop([DEFECT_COLUMN]))
    dates = ["2024-02-30", "2023-02-29", "2024-02-29", "2024-03-01", "2024-06-31"]
    native = native.set_column(native.schema.get_field_index("发证日期"), "发证日期", pa.array(dates))
    issued = mapping.to_canonical(native, "test.csv").column("issued_on").to_pylist()
    assert issued == [None, None, date(2024, 2, 29), date(2024, 3, 1), None]
