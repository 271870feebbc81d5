"""The pure parts of the Delta Sharing server: names, schema strings, versions from snapshots, profile expiry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.access.policy import Denial
from exchange.datasets import DATASETS
from exchange.deltasharing.profile import token_expiry
from exchange.deltasharing.protocol import (
    Snapshot,
    error_body,
    find_table,
    parse_timestamp,
    schema_string,
    share_name,
    shared_tables,
    version_at,
    version_starting,
)
from exchange.errors import BadInput

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_share_name_has_no_dot_and_tables_are_one_per_grant() -> None:
    assert share_name("js.public_security") == "js__public_security"
    tables = shared_tables("js.public_security", [("g2", "e_license"), ("g1", "administrative_penalty")])
    assert [t.name for t in tables] == ["administrative_penalty", "e_license"]
    assert find_table(tables, "js__public_security", "datasets", "e_license") == tables[1]
    assert find_table(tables, "js__public_security", "other", "e_license") is None
    assert find_table(tables, "sh__public_security", "datasets", "e_license") is None


def test_every_dataset_schema_has_a_delta_schema_string() -> None:
    for dataset in DATASETS.values():
        fields = json.loads(schema_string(dataset.schema))["fields"]
        assert [f["name"] for f in fields] == dataset.schema.names
        assert {f["type"] for f in fields} <= {"string", "date", "timestamp", "double", "long"}
    assert json.loads(schema_string(pa.schema([("x", pa.decimal128(12, 2))])))["fields"][0]["type"] == "decimal(12,2)"


def test_error_bodies_carry_the_protocols_codes() -> None:
    assert error_body(404, "no") == {"errorCode": "RESOURCE_DOES_NOT_EXIST", "message": "no"}
    assert error_body(403, "no")["errorCode"] == "PERMISSION_DENIED"
    assert error_body(599, "no")["errorCode"] == "INTERNAL_ERROR"


snapshot_lists = st.lists(st.integers(0, 10**6), min_size=1, max_size=20, unique=True).map(
    lambda offsets: [Snapshot(id=i + 1, time=T0 + timedelta(seconds=o)) for i, o in enumerate(sorted(offsets))])


@given(snapshots=snapshot_lists, offset=st.integers(-10, 10**6 + 10))
def test_a_timestamp_reads_the_latest_version_committed_by_then(snapshots: list[Snapshot], offset: int) -> None:
    moment = T0 + timedelta(seconds=offset)
    before = [s for s in snapshots if s.time <= moment]
    if not before:
        with pytest.raises(BadInput, match="before the first version"):
            version_at(snapshots, moment)
        return
    version = version_at(snapshots, moment)
    assert version == max(s.id for s in before)
    assert all(s.time > moment for s in snapshots if s.id > version)


@given(snapshots=snapshot_lists, offset=st.integers(-10, 10**6 + 10))
def test_a_starting_timestamp_gives_the_first_version_at_or_after_it(snapshots: list[Snapshot], offset: int) -> None:
    moment = T0 + timedelta(seconds=offset)
    after = [s for s in snapshots if s.time >= moment]
    if not after:
        with pytest.raises(BadInput, match="after the latest version"):
            version_starting(snapshots, moment)
        return
    assert version_starting(snapshots, moment) == min(s.id for s in after)


def test_timestamps_parse_with_z_offsets_or_as_utc() -> None:
    assert parse_timestamp("2026-12-06T10:00:00Z", "t") == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert parse_timestamp("2026-12-06T10:00:00", "t") == datetime(2026, 12, 6, 10, tzinfo=UTC)
    with pytest.raises(BadInput, match="ISO 8601"):
        parse_timestamp("yesterday", "timestamp")


@given(days=st.integers(1, 400), ends=st.lists(st.integers(0, 800), min_size=1, max_size=5))
def test_a_profile_token_never_outlives_the_first_grant_to_end(days: int, ends: list[int]) -> None:
    now = T0 + timedelta(hours=3)
    last_days = [now.date() + timedelta(days=e) for e in ends]
    expires = token_expiry("d", last_days, now, days)
    assert isinstance(expires, datetime)
    assert expires <= now + timedelta(days=days)
    assert expires <= datetime.combine(min(last_days) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    assert expires > now  # a usable grant's last day is today or later


def test_no_usable_grant_no_profile() -> None:
    assert isinstance(token_expiry("d", [], T0, 90), Denial)
