"""The stages end to end without Airflow, against the Jiangsu file-drop sandbox and a real DuckLake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest

from adapters.base import sandbox_for
from adapters.jiangsu.sandbox import JiangsuSandbox
from exchange.config import ExchangeSettings
from exchange.errors import SourceFormatError
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from exchange.provenance.verify import verify_home
from exchange.synthetic import DEFECT_COLUMN, generate
from tests.hubs import sandbox_hub

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)


@pytest.fixture
def hub(home: Path) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    return sandbox_hub(home, sandbox)


def _seed(hub: Hub, n: int, start: datetime, end: datetime, seed: int = 7) -> int:
    table = generate("e_license", "jiangsu", n, seed=seed, start=start, end=end)
    sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu").seed("e_license", table)
    return int(pc.sum(pc.is_valid(table[DEFECT_COLUMN])).as_py() or 0)


def _count(hub: Hub, sql: str) -> int:
    with connect(hub.settings, read_only=True) as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_a_batch_is_split_conserved_committed_and_verified(hub: Hub) -> None:
    defects = _seed(hub, 3000, START, MID)
    result = run_exchange("jiangsu", "e_license", START, END, hub)
    assert result.status == "committed"
    assert result.pulled == 3000
    assert result.quarantined == defects
    assert result.accepted + result.quarantined == result.pulled
    assert _count(hub, f"SELECT count(*) FROM {LAKE}.e_license") == 3000 - defects
    assert _count(hub, f"SELECT count(*) FROM {LAKE}.quarantine") == defects
    assert _count(hub, f"SELECT count(*) FROM {LAKE}.quarantine WHERE reason IS NULL OR rule_id IS NULL") == 0
    assert verify_home(hub.settings).ok
    report = hub.layout.reports / "jiangsu" / f"{result.batch_id}.rejections.csv"
    text = report.read_bytes().decode("utf-8-sig")
    assert len(text.strip().splitlines()) == defects + 1  # header + one line per rejected record
    assert "holder_id.resident_id_checksum" in text


def test_same_window_again_adds_nothing_and_no_new_data_pulls_nothing(hub: Hub) -> None:
    _seed(hub, 500, START, MID)
    first = run_exchange("jiangsu", "e_license", START, MID, hub)
    snapshots = _count(hub, f"SELECT count(*) FROM {LAKE}.snapshots()")
    again = run_exchange("jiangsu", "e_license", START, MID, hub)
    assert again.status == "already_committed"
    later = run_exchange("jiangsu", "e_license", MID, END, hub)
    assert later.status == "empty" and later.pulled == 0
    assert _count(hub, f"SELECT count(*) FROM {LAKE}.snapshots()") == snapshots
    _seed(hub, 200, MID, END, seed=8)
    newer = run_exchange("jiangsu", "e_license", MID, END, hub)
    assert newer.pulled == 200
    assert _count(hub, f"SELECT count(*) FROM {LAKE}.exchange_batches") == 2
    assert first.pulled == 500
    assert verify_home(hub.settings).ok


def test_a_malformed_file_fails_the_run_and_leaves_the_lake_as_it_was(hub: Hub) -> None:
    _seed(hub, 300, START, MID)
    run_exchange("jiangsu", "e_license", START, MID, hub)
    snapshots = _count(hub, f"SELECT count(*) FROM {LAKE}.snapshots()")
    drop = Path(hub.settings.jiangsu_drop_dir or "")
    # A complete drop (its manifest lists the file) whose file is not valid GB18030.
    JiangsuSandbox(drop.parent).deliver("电子证照_20261105.csv", b"\xff\xfe\x00garbage\x81\x00")
    with pytest.raises(SourceFormatError, match="电子证照_20261105.csv"):
        run_exchange("jiangsu", "e_license", MID, END, hub)
    assert _count(hub, f"SELECT count(*) FROM {LAKE}.snapshots()") == snapshots
    assert verify_home(hub.settings).ok


def test_a_crash_between_snapshot_and_manifest_is_repaired_by_the_retry(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exchange.lake.protocol as protocol
    import exchange.pipeline as pipeline

    _seed(hub, 400, START, MID)
    pulled = pipeline.pull("jiangsu", "e_license", START, MID, hub)
    pipeline.validate(pulled.batch_id, hub)
    real_write = protocol.write_manifest

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("power cut after the lake commit")

    monkeypatch.setattr(protocol, "write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        pipeline.commit(pulled.batch_id, hub)
    assert not verify_home(hub.settings).ok  # a committed batch without a manifest is reported
    monkeypatch.setattr(protocol, "write_manifest", real_write)
    retried = pipeline.commit(pulled.batch_id, hub)
    assert retried.status == "committed" and retried.pulled == 400
    assert _count(hub, f"SELECT count(*) FROM {LAKE}.exchange_batches") == 1
    assert pipeline.commit(pulled.batch_id, hub).status == "already_committed"
    assert verify_home(hub.settings).ok


def _exchange_in_process(home: str, drop: str, dataset: str) -> None:
    hub = Hub(ExchangeSettings(home=Path(home), jiangsu_drop_dir=Path(drop)))
    result = run_exchange("jiangsu", dataset, START, END, hub)
    assert result.status == "committed", result


def test_parallel_processes_share_the_file_catalog_without_lock_errors(hub: Hub) -> None:
    import multiprocessing

    for dataset in ("e_license", "enterprise_registration"):
        table = generate(dataset, "jiangsu", 2000, seed=3, start=START, end=MID)
        sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu").seed(dataset, table)
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=_exchange_in_process, args=(str(hub.settings.home), str(hub.settings.jiangsu_drop_dir), d))
        for d in ("e_license", "enterprise_registration")
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(300)
        assert p.exitcode == 0
    assert _count(hub, f"SELECT count(*) FROM {LAKE}.exchange_batches") == 2
    assert verify_home(hub.settings).ok
