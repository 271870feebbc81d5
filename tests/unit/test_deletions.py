"""Records a province deletes (Zhejiang's soft-delete flag) leave the lake as DuckLake deletions in the batch's
snapshot: gone from the head, still in earlier snapshots, counted in the signed manifest, verified."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from adapters.zhejiang.sandbox import ZhejiangSandbox
from exchange.config import ExchangeSettings
from exchange.datasets import TIMESTAMP
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from exchange.provenance.manifest import read_manifest
from exchange.provenance.trace import trace_record
from exchange.provenance.verify import verify_home
from exchange.synthetic import DEFECT_COLUMN, generate

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
DELETED = datetime(2026, 11, 6, 9, tzinfo=UTC)


@pytest.fixture
def hub(home: Path) -> tuple[Hub, ZhejiangSandbox]:
    sandbox = ZhejiangSandbox(home / "sandboxes" / "zhejiang")
    sandbox.install()
    clean = generate("e_license", "zhejiang", 400, seed=5, start=START, end=MID, defect_rate=0.0)
    sandbox.seed("e_license", clean)
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    return Hub(ExchangeSettings(home=home, **env)), sandbox


def _keys(hub: Hub, snapshot: int | None = None) -> set[str]:
    at = f" AT (VERSION => {snapshot})" if snapshot is not None else ""
    with connect(hub.settings, read_only=True) as con:
        return {k for (k,) in con.execute(f"SELECT license_id FROM {LAKE}.e_license{at}").fetchall()}


def test_a_deleted_record_leaves_the_head_but_not_history(hub: tuple[Hub, ZhejiangSandbox]) -> None:
    h, sandbox = hub
    first = run_exchange("zhejiang", "e_license", START, MID, h)
    before = _keys(h)
    assert len(before) == 400
    gone = sorted(before)[:5]
    sandbox.delete("e_license", gone, DELETED)

    second = run_exchange("zhejiang", "e_license", MID, END, h)
    assert second.status == "committed" and second.pulled == 0

    assert _keys(h) == before - set(gone)
    assert _keys(h, first.snapshot_id) == before, "time travel still shows the records before deletion"
    manifest = read_manifest(Path(second.manifest)).manifest
    assert manifest.counts.deleted == 5
    assert [(f.table, f.rows) for f in manifest.files if f.kind == "delete"] == [("e_license", 5)]
    assert verify_home(h.settings).ok
    events = [e.kind for e in trace_record(h.settings, "e_license", gone[0]).events]
    assert events == ["insert", "delete"]

    # The same deletions reported again by the next pull's overlap change nothing and still verify.
    third = run_exchange("zhejiang", "e_license", END, datetime(2026, 11, 9, tzinfo=UTC), h)
    assert third.status in ("committed", "empty")
    assert _keys(h) == before - set(gone)
    assert verify_home(h.settings).ok


def test_a_version_newer_than_the_deletion_stays(hub: tuple[Hub, ZhejiangSandbox]) -> None:
    h, sandbox = hub
    run_exchange("zhejiang", "e_license", START, MID, h)
    keep = sorted(_keys(h))[0]
    sandbox.delete("e_license", [keep], DELETED)
    # Re-issued after its deletion (a later, live version of the same licence).
    reissued = generate("e_license", "zhejiang", 400, seed=5, start=START, end=MID, defect_rate=0.0)
    reissued = reissued.filter(pc.equal(reissued["license_id"], keep)).drop_columns([DEFECT_COLUMN])
    reissued = reissued.set_column(reissued.schema.get_field_index("updated_at"), "updated_at",
                                   pa.array([datetime(2026, 11, 7, tzinfo=UTC)], TIMESTAMP))
    sandbox.seed("e_license", reissued)
    run_exchange("zhejiang", "e_license", MID, END, h)
    assert keep in _keys(h)
    assert verify_home(h.settings).ok
