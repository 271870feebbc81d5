"""Stage records: staging files read back with validation, the ledger row's digest unchanged by the model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import sandbox_for
from exchange.errors import BadFile
from exchange.hub import Hub
from exchange.lake.commit import batch_digest, commit_infos, ledger_rows
from exchange.lake.connect import connect
from exchange.pipeline import commit, pull, validate
from exchange.provenance.manifest import FileDigest, RuleCount
from exchange.stages import (
    PULL_FILE,
    VALIDATION_FILE,
    LedgerRow,
    PullRecord,
    StageRecord,
    ValidationRecord,
    read_record,
    write_record,
)
from exchange.synthetic import generate
from tests.hubs import sandbox_hub

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)
CST = timezone(timedelta(hours=8))

PULL = PullRecord(
    batch_id="jiangsu.e_license.20261101T000000Z-20261103T000000Z", province="jiangsu", dataset="e_license",
    window_start=START, window_end=END, since=None, watermark=datetime(2026, 11, 2, 13, 5, tzinfo=UTC),
    pulled=300, deleted=2, landing=[FileDigest(name="drop-001.csv", sha256="ab" * 32, size=4096)],
    drift=[], source_signatures=[],
)
VALIDATION = ValidationRecord(
    batch_id=PULL.batch_id, contract_id="urn:yrd:contract:e_license", contract_version="1.2.0",
    contract_sha256="cd" * 32, pulled=300, accepted=294, quarantined=6, warned=1, gx_success=False, held=False,
    rules=[RuleCount(rule_id="holder_id.resident_id_checksum", severity="error", unexpected=6)],
)

Edit = Callable[[dict[str, Any]], None]


def _set(key: str, value: object) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        doc[key] = value
    return edit


def _drop(*path: str | int) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
    return edit


# (record, the hand edit, the field the error must name)
EDITS: list[tuple[StageRecord, Edit, str]] = [
    (PULL, _set("pulled", "many"), "pulled"),
    (PULL, _set("pulled", -1), "pulled"),
    (PULL, _drop("window_end"), "window_end"),
    (PULL, _set("window_start", "2026-11-01T00:00:00"), "window_start"),  # no offset: which day is it?
    (PULL, _set("since", "last tuesday"), "since"),
    (PULL, _set("format_version", 2), "format_version"),
    (PULL, _set("records", 5), "records"),  # an unknown key is refused, not ignored
    (PULL, _drop("landing", 0, "sha256"), "landing.0.sha256"),
    (VALIDATION, _set("accepted", "294 or so"), "accepted"),
    (VALIDATION, _drop("held"), "held"),
    (VALIDATION, _drop("rules", 0, "unexpected"), "rules.0.unexpected"),
    (VALIDATION, _set("gx_success", "maybe"), "gx_success"),
]


@pytest.mark.parametrize(("record", "edit", "field"), EDITS)
def test_a_hand_edited_staging_file_is_a_terminal_error_naming_file_and_field(
    tmp_path: Path, record: StageRecord, edit: Edit, field: str
) -> None:
    path = tmp_path / "record.json"
    doc = json.loads(record.model_dump_json())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(BadFile) as raised:
        read_record(path, type(record))
    assert str(path) in str(raised.value) and f"{field}:" in str(raised.value), str(raised.value)


@settings(max_examples=60, deadline=None)
@given(record=st.sampled_from([PULL, VALIDATION]), data=st.data())
def test_a_truncated_staging_file_is_a_terminal_error_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, record: StageRecord, data: st.DataObject
) -> None:
    text = record.model_dump_json(indent=2)
    cut = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    path = tmp_path_factory.mktemp("truncated") / "record.json"
    path.write_text(text[:cut])
    with pytest.raises(BadFile) as raised:
        read_record(path, type(record))
    message = str(raised.value)
    assert str(path) in message and "not complete JSON" in message
    # A required field the cut removed entirely is named (a cut inside the last value leaves every key present).
    after_cut = [name for name, spec in type(record).model_fields.items() if spec.is_required()
                 and f'"{name}":' not in text[:cut]]
    for name in after_cut:
        assert f"{name}: Field required" in message, message


@settings(max_examples=40, deadline=None)
@given(
    stamps=st.lists(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                                 timezones=st.sampled_from([UTC, CST])), min_size=3, max_size=3),
    counts=st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)),
)
def test_records_round_trip_through_their_files(
    tmp_path_factory: pytest.TempPathFactory, stamps: list[datetime], counts: tuple[int, int]
) -> None:
    folder = tmp_path_factory.mktemp("round")
    pulled = PullRecord.model_validate({**PULL.model_dump(), "window_start": stamps[0], "window_end": stamps[1],
                                        "watermark": stamps[2], "pulled": counts[0] + counts[1]})
    assert all(t is not None and t.utcoffset() == timedelta(0)
               for t in (pulled.window_start, pulled.window_end, pulled.watermark)), "stored in UTC"
    write_record(folder / PULL_FILE, pulled)
    assert read_record(folder / PULL_FILE, PullRecord) == pulled
    row = LedgerRow(batch_id="b", province="p", dataset="d", window_start=stamps[0], window_end=stamps[1],
                    watermark=stamps[2], pulled=sum(counts), accepted=counts[0], quarantined=counts[1],
                    contract_id="c", contract_version="1")
    again = LedgerRow.model_validate_json(row.model_dump_json())
    assert batch_digest(again) == batch_digest(row), "a ledger row's digest survives JSON"
    assert not list(folder.glob("*.tmp")), "the temporary file was renamed into place"


def test_a_staging_file_written_before_records_were_versioned_still_reads(tmp_path: Path) -> None:
    # As pipeline.pull wrote pull.json (no format_version) and as a replay wrote it (no "deleted").
    old = {"batch_id": "b", "province": "jiangsu", "dataset": "e_license", "replay_of": "a",
           "window_start": "2026-11-01T00:00:00+00:00", "window_end": "2026-11-03T00:00:00+00:00",
           "since": None, "watermark": None, "pulled": 3, "landing": [], "drift": [], "source_signatures": []}
    (tmp_path / PULL_FILE).write_text(json.dumps(old))
    record = read_record(tmp_path / PULL_FILE, PullRecord)
    assert (record.format_version, record.deleted, record.window_end) == (1, 0, END)


# Digests the ledger row's dict gave before it became a model (computed with the code at main 88d662e):
# existing snapshots' commit infos carry these, and verify recomputes them from the manifests.
GOLDEN = [
    (LedgerRow(batch_id="jiangsu.e_license.20261101T000000Z-20261103T000000Z", province="jiangsu",
               dataset="e_license", window_start=START, window_end=END,
               watermark=datetime(2026, 11, 2, 13, 5, 7, 123456, tzinfo=UTC), pulled=300, accepted=294,
               quarantined=6, contract_id="urn:yrd:contract:e_license", contract_version="1.2.0"),
     "5da9da3a3a579cb4427eea3e7bb6d61d630a2c66494e133192ab03a620d99dde"),
    (LedgerRow(batch_id="anhui.enterprise_registration.20261101T000000Z-20261103T000000Z.replay-2",
               province="anhui", dataset="enterprise_registration", window_start=datetime(2026, 11, 1, 8, tzinfo=CST),
               window_end=datetime(2026, 11, 3, 8, tzinfo=CST), watermark=None, pulled=4, accepted=3,
               quarantined=1, contract_id="urn:yrd:contract:enterprise_registration", contract_version="2.0.0"),
     "f83dc3599fe4713a309bd89668e1292e216a89e5f5bac5d59eeef61ae04ba8e6"),
    (LedgerRow(batch_id="上海.x", province="shanghai", dataset="e_license",
               window_start=datetime(2026, 1, 1, tzinfo=UTC), window_end=datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
               watermark=datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=CST), pulled=0, accepted=0, quarantined=0,
               contract_id="c", contract_version="0"),
     "b21b354bc7d66b323c5ee53055a909d3fbde2cec7fc5d42fe5dfdbd40ac8530c"),
]


@pytest.mark.parametrize(("row", "digest"), GOLDEN)
def test_the_ledger_row_digest_is_what_it_was_before_the_model(row: LedgerRow, digest: str) -> None:
    assert batch_digest(row) == digest


@pytest.fixture
def staged(tmp_path: Path) -> tuple[Hub, str]:
    """A Jiangsu batch pulled and validated, not committed."""
    home = tmp_path / "home"
    sandbox = sandbox_for("jiangsu", tmp_path / "sandbox")
    sandbox.seed("e_license", generate("e_license", "jiangsu", 200, seed=5, start=START, end=END))
    shutil.copytree(tmp_path / "sandbox" / "keys", home / "keys")  # the hub trusts the office key the sandbox uses
    hub = sandbox_hub(home, sandbox)
    batch = pull("jiangsu", "e_license", START, END, hub).batch_id
    validate(batch, hub)
    return hub, batch


def test_the_stages_refuse_an_edited_hand_over_file(staged: tuple[Hub, str]) -> None:
    hub, batch = staged
    checked = hub.staging(batch) / VALIDATION_FILE
    checked.write_text(checked.read_text().replace('"accepted": ', '"accepted": "all", "was": '))
    with pytest.raises(BadFile, match=rf"{VALIDATION_FILE}.*accepted:"):
        commit(batch, hub)
    pulled = hub.staging(batch) / PULL_FILE
    pulled.write_text(pulled.read_text()[: len(pulled.read_text()) // 2])
    with pytest.raises(BadFile, match=rf"{PULL_FILE}.*not complete JSON"):
        validate(batch, hub)


def test_the_ledger_row_read_back_is_the_row_the_snapshot_vouches_for(staged: tuple[Hub, str]) -> None:
    hub, batch = staged
    done = commit(batch, hub)
    with connect(hub.settings, read_only=True) as con:
        [row] = ledger_rows(con, batch)
        claimed = commit_infos(con)[done.snapshot_id or -1]["batch_sha256"]
    assert (row.batch_id, row.pulled, row.accepted + row.quarantined) == (batch, done.pulled, done.pulled)
    assert batch_digest(row) == claimed
