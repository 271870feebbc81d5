"""`exchange quarantine replay`: quarantined records re-checked with a corrected contract, committed once.

The origin batch runs through the real stages (Jiangsu file-drop sandbox, real DuckLake); the contract is
then "corrected" by a copy in tmp_path whose resident-ID checksum rule is relaxed from error to warning.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from adapters.base import sandbox_for
from exchange.cli import app
from exchange.contracts.load import CONTRACTS_DIR_ENV, contract_path, load_contract
from exchange.contracts.validate import QUARANTINE_SCHEMA, record_json
from exchange.datasets import E_LICENSE
from exchange.hub import Hub
from exchange.lake.commit import watermark
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from exchange.provenance.manifest import manifest_path, read_manifest
from exchange.provenance.verify import verify_home
from exchange.replay import (
    OPEN,
    RECHECKED,
    RESOLVED,
    ReplayRebuildError,
    RowStatus,
    next_replay_id,
    origin_of,
    pending_rows,
    quarantine_status,
    rebuild,
    records_digest,
    replay,
    resolve_family,
    with_rule,
)
from exchange.synthetic import DEFECT_COLUMN, generate
from tests.hubs import sandbox_hub

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 4, tzinfo=UTC)
CHECKSUM = "holder_id.resident_id_checksum"


# --- pure logic -----------------------------------------------------------------------------------------


def _quarantine_rows(records: pa.Table, rule_ids: list[str]) -> pa.Table:
    n = records.num_rows
    return pa.table(
        {
            "batch_id": ["b"] * n, "province": ["jiangsu"] * n, "dataset": ["e_license"] * n,
            "record_key": records.column("license_id").to_pylist(), "rule_id": rule_ids,
            "reason": ["r"] * n, "severity": ["error"] * n, "record_json": record_json(records),
            "as_sent": [None] * n,
        },
        schema=QUARANTINE_SCHEMA,
    )


def _records(n: int) -> pa.Table:
    return generate("e_license", "jiangsu", n, seed=11, start=START, end=END).drop_columns([DEFECT_COLUMN])


def test_replay_ids_and_origins() -> None:
    origin = "jiangsu.e_license.20261101T000000Z-20261104T000000Z"
    assert next_replay_id(origin, []) == f"{origin}.replay-1"
    assert next_replay_id(origin, [f"{origin}.replay-1", f"{origin}.replay-3", "other.replay-9"]) == (
        f"{origin}.replay-4"
    )
    assert origin_of(f"{origin}.replay-12") == origin
    assert origin_of(origin) == origin


def test_rebuild_returns_exactly_the_quarantined_records() -> None:
    records = _records(50)
    rebuilt = rebuild(_quarantine_rows(records, ["x"] * 50), "e_license")
    assert rebuilt.schema == E_LICENSE.schema
    assert rebuilt.equals(records)


def test_rebuild_refuses_a_record_that_does_not_fit_the_schema() -> None:
    rows = _quarantine_rows(_records(2), ["x", "x"])
    tampered = rows.set_column(7, "record_json", pa.array(['{"license_id":"A","colour":"red"}'] * 2))
    with pytest.raises(ReplayRebuildError, match="canonical schema"):
        rebuild(tampered, "e_license")


def test_pending_is_a_multiset_difference_and_rules_select_rows() -> None:
    records = _records(3)
    twice = pa.concat_tables([records, records.slice(0, 1)])  # record 0 was rejected twice (same bytes)
    pending = pending_rows(twice, records.slice(0, 1))  # one copy of record 0 was replayed already
    assert pending.to_pylist() == [1, 2, 3]
    rows = _quarantine_rows(records, [CHECKSUM, f"license_id.not_null,{CHECKSUM}", "status.in_enum"])
    assert with_rule(rows, CHECKSUM).to_pylist() == [0, 1]
    assert records_digest(rows) == records_digest(rows.take([2, 1, 0]))  # order-free, lake-recomputable


# --- against a real lake --------------------------------------------------------------------------------


@pytest.fixture
def hub(home: Path) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    return sandbox_hub(home, sandbox)


@pytest.fixture
def relaxed(tmp_path: Path) -> Path:
    """A contracts folder whose e_license contract (next minor version) only warns about resident-ID checksums."""
    folder = tmp_path / "contracts"
    shutil.copytree(contract_path("e_license").parent, folder)
    path = contract_path("e_license", folder)
    text = path.read_text(encoding="utf-8")
    block = text.index(f"- name: {CHECKSUM}")
    severity = text.index("severity: error", block)
    text = text[:severity] + "severity: warning" + text[severity + len("severity: error"):]
    current = load_contract("e_license").version
    path.write_text(text.replace(f"version: {current}", f"version: {_relaxed_version()}", 1), encoding="utf-8")
    assert next(r for r in load_contract("e_license", folder).rules if r.id == CHECKSUM).severity == "warning"
    return folder


def _relaxed_version() -> str:
    major, minor, _ = load_contract("e_license").version.split(".")
    return f"{major}.{int(minor) + 1}.0"


def _origin(hub: Hub, n: int = 600) -> dict[str, object]:
    table = generate("e_license", "jiangsu", n, seed=7, start=START, end=END)
    sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu").seed("e_license", table)
    result = run_exchange("jiangsu", "e_license", START, END, hub)
    assert result.status == "committed" and result.quarantined
    return result


def _scalar(hub: Hub, sql: str, params: list[object] | None = None) -> object:
    with connect(hub.settings, read_only=True) as con:
        row = con.execute(sql, params or []).fetchone()
    assert row is not None
    return row[0]


def _only_checksum_keys(hub: Hub, batch_id: str) -> list[str]:
    """Records of the batch whose one and only failed rule is the checksum: what the relaxed contract admits."""
    with connect(hub.settings, read_only=True) as con:
        rows = con.execute(f"SELECT record_key FROM {LAKE}.quarantine WHERE batch_id = ? AND rule_id = ? "
                           "ORDER BY record_key", [batch_id, CHECKSUM]).fetchall()
    return [str(r[0]) for r in rows]


def test_replay_commits_the_now_passing_records_once_with_linked_provenance(hub: Hub, relaxed: Path) -> None:
    origin = _origin(hub)
    origin_id = str(origin.batch_id)
    expected = _only_checksum_keys(hub, origin_id)
    assert expected, "the seed must produce records that fail only the checksum rule"
    snapshots = _scalar(hub, f"SELECT count(*) FROM {LAKE}.snapshots()")
    entries = len(hub.log.read())
    with connect(hub.settings, read_only=True) as con:
        mark = watermark(con, "jiangsu", "e_license")

    preview = replay(origin_id, hub, dry_run=True, contracts_dir=relaxed)
    assert preview.status == "dry_run"
    assert sorted(preview.accepted_keys) == expected
    # Repeats of a key the origin committed are held back: checked alone they would pass in-batch uniqueness.
    repeats = preview.repeats_held_back
    assert repeats and preview.replayed + len(repeats) == origin.quarantined
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.e_license WHERE batch_id = ? AND list_contains(?, license_id)",
                   [origin_id, repeats]) == len(set(repeats))
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.snapshots()") == snapshots  # nothing written
    assert len(hub.log.read()) == entries

    done = replay(origin_id, hub, contracts_dir=relaxed)
    replay_id = f"{origin_id}.replay-1"
    assert done.status == "committed" and done.replay_id == replay_id
    assert done.contract_version == _relaxed_version()
    assert done.origin_contract_version == load_contract("e_license").version
    assert done.accepted == len(expected)
    assert done.replayed == preview.replayed == done.accepted + done.quarantined
    keys = _scalar(hub, f"SELECT list(license_id ORDER BY license_id) FROM {LAKE}.e_license WHERE batch_id = ?",
                   [replay_id])
    assert keys == expected
    # The records still failing are quarantined again under the replay, with the current contract's reasons.
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.quarantine WHERE batch_id = ?", [replay_id]) == (
        done.quarantined)
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.quarantine WHERE batch_id = ? AND rule_id LIKE ?",
                   [replay_id, f"%{CHECKSUM}%"]) == 0
    ledger = _scalar(hub, f"SELECT watermark IS NULL AND contract_version = ? FROM {LAKE}.exchange_batches "
                          "WHERE batch_id = ?", [_relaxed_version(), replay_id])
    assert ledger is True
    with connect(hub.settings, read_only=True) as con:
        assert watermark(con, "jiangsu", "e_license") == mark

    origin_manifest = read_manifest(manifest_path(hub.layout.manifests, "jiangsu", "e_license", origin_id))
    signed = read_manifest(manifest_path(hub.layout.manifests, "jiangsu", "e_license", replay_id))
    m = signed.manifest
    assert (m.counts.pulled, m.counts.accepted, m.counts.quarantined) == (
        done.replayed, done.accepted, done.quarantined)
    assert m.contract_version == _relaxed_version() and m.landing == [] and m.watermark is None
    by_action = {e.action: e for e in hub.log.read() if e.subject == replay_id}
    assert set(by_action) == {"replay", "commit_intent", "commit"}  # the commit protocol logs its intent
    link = by_action["replay"]
    assert link.details["origin"] == origin_id
    assert link.digests["origin_manifest"] == origin_manifest.digest()
    with connect(hub.settings, read_only=True) as con:
        origin_rows = con.execute(f"SELECT * FROM {LAKE}.quarantine WHERE batch_id = ? "
                                  "AND NOT list_contains(?, record_key)", [origin_id, repeats]).to_arrow_table()
    assert link.digests["replayed_records"] == records_digest(origin_rows)
    assert by_action["commit"].digests["manifest"] == signed.digest()
    assert verify_home(hub.settings).ok

    # Once: the same replay again (even with the relaxed contract) commits nothing new.
    snapshots = _scalar(hub, f"SELECT count(*) FROM {LAKE}.snapshots()")
    again = replay(origin_id, hub, contracts_dir=relaxed)
    assert again.status == "nothing_passes" and again.accepted == 0
    assert again.already_replayed == len(expected)
    assert again.replayed == done.quarantined
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.snapshots()") == snapshots
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.e_license WHERE batch_id LIKE '%replay%'") == len(expected)
    assert verify_home(hub.settings).ok


def test_replay_with_the_unchanged_contract_commits_nothing(hub: Hub) -> None:
    origin_id = str(_origin(hub, 300).batch_id)
    snapshots = _scalar(hub, f"SELECT count(*) FROM {LAKE}.snapshots()")
    result = replay(origin_id, hub)
    assert result.status == "nothing_passes" and result.accepted == 0
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.snapshots()") == snapshots


def test_rule_option_limits_the_replay_to_records_that_failed_it(hub: Hub, relaxed: Path) -> None:
    origin_id = str(_origin(hub).batch_id)
    expected = _only_checksum_keys(hub, origin_id)
    other = "region_code.in_province"
    none = replay(origin_id, hub, rule=other, contracts_dir=relaxed)
    assert none.status == "nothing_passes" and none.replayed > 0
    chosen = replay(origin_id, hub, rule=CHECKSUM, contracts_dir=relaxed)
    assert chosen.status == "committed" and chosen.accepted == len(expected)
    assert chosen.replayed == _scalar(
        hub, f"SELECT count(*) FROM {LAKE}.quarantine WHERE batch_id = ? AND rule_id LIKE ?",
        [origin_id, f"%{CHECKSUM}%"])
    assert verify_home(hub.settings).ok


def test_a_crash_between_snapshot_and_manifest_is_finished_by_the_next_replay(
    hub: Hub, relaxed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exchange.lake.protocol as protocol

    origin_id = str(_origin(hub).batch_id)
    expected = _only_checksum_keys(hub, origin_id)
    real_write = protocol.write_manifest

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("power cut after the lake commit")

    monkeypatch.setattr(protocol, "write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        replay(origin_id, hub, contracts_dir=relaxed)
    assert not verify_home(hub.settings).ok  # a committed replay without a manifest is reported
    monkeypatch.setattr(protocol, "write_manifest", real_write)
    again = replay(origin_id, hub, contracts_dir=relaxed)
    assert again.status == "nothing_passes"  # replay-1 was finished, not repeated as replay-2
    assert manifest_path(hub.layout.manifests, "jiangsu", "e_license", f"{origin_id}.replay-1").exists()
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.exchange_batches WHERE batch_id LIKE '%replay%'") == 1
    assert _scalar(hub, f"SELECT count(*) FROM {LAKE}.e_license WHERE batch_id LIKE '%replay%'") == len(expected)
    assert verify_home(hub.settings).ok


def test_a_batch_not_in_the_lake_cannot_be_replayed(hub: Hub) -> None:
    _origin(hub, 200)
    with pytest.raises(Exception, match="not in the lake"):
        replay("jiangsu.e_license.20200101T000000Z-20200102T000000Z", hub)


def test_cli_replay_dry_run_then_commit(hub: Hub, relaxed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origin_id = str(_origin(hub, 400).batch_id)
    expected = _only_checksum_keys(hub, origin_id)
    monkeypatch.setenv(CONTRACTS_DIR_ENV, str(relaxed))
    runner = CliRunner()
    preview = runner.invoke(app, ["quarantine", "replay", origin_id, "--dry-run", "--json"])
    assert preview.exit_code == 0, preview.output
    assert json.loads(preview.output)["accepted"] == len(expected)
    done = runner.invoke(app, ["quarantine", "replay", origin_id, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["status"] == "committed"
    human = runner.invoke(app, ["quarantine", "replay", origin_id])
    assert human.exit_code == 0, human.output
    assert "nothing" in human.output
    missing = runner.invoke(app, ["quarantine", "replay", "jiangsu.e_license.nope"])
    assert missing.exit_code == 2 and "not in the lake" in missing.output


# --- status of quarantine rows after replays ----------------------------------------------------------


def test_resolve_family_follows_each_record_to_its_latest_replay() -> None:
    origin, r1, r2 = "o", "o.replay-1", "o.replay-2"
    statuses = resolve_family(
        [(origin, ["A", "B", "C", "D", "A"]), (r1, ["B", "D"]), (r2, ["D"])],
        {origin: ["A", "B"], r1: ["A"], r2: ["B"]},  # the origin's own accepted rows resolve nothing
    )
    assert statuses[origin] == [
        RowStatus(RESOLVED, r1),  # A committed by replay-1
        RowStatus(RESOLVED, r2),  # B re-rejected by replay-1, committed by replay-2
        RowStatus(OPEN),  # C never re-checked
        RowStatus(RECHECKED, r2),  # D re-rejected twice: replay-2's row is the one to act on
        RowStatus(OPEN),  # the second, identical A: only one A was committed
    ]
    assert statuses[r1] == [RowStatus(RESOLVED, r2), RowStatus(RECHECKED, r2)]
    assert statuses[r2] == [RowStatus(OPEN)]


def test_quarantine_list_and_show_mark_what_a_replay_resolved(
    hub: Hub, relaxed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin_id = str(_origin(hub, 400).batch_id)
    expected = _only_checksum_keys(hub, origin_id)
    before = quarantine_status(hub.settings)
    assert before and all(r["status"] == OPEN for r in before)
    done = replay(origin_id, hub, contracts_dir=relaxed)
    replay_id = done.replay_id
    rows = quarantine_status(hub.settings)
    origin_rows = [r for r in rows if r["batch_id"] == origin_id]
    resolved = sorted(r["record_key"] for r in origin_rows if r["status"] == RESOLVED)
    assert resolved == expected and {r["by"] for r in origin_rows if r["status"] == RESOLVED} == {replay_id}
    # Re-rejected by the replay: the replay's own row (current contract, current reason) is the open one.
    rechecked = [r for r in origin_rows if r["status"] == RECHECKED]
    assert len(rechecked) == done.quarantined and {r["by"] for r in rechecked} == {replay_id}
    assert all(r["status"] == OPEN for r in rows if r["batch_id"] == replay_id)
    held = [r for r in origin_rows if r["status"] == OPEN]  # repeats of a committed key were not replayed
    assert sorted(r["record_key"] for r in held) == sorted(done.repeats_held_back)
    open_rows = quarantine_status(hub.settings, include_closed=False)
    assert len(open_rows) == done.quarantined + len(held)

    monkeypatch.setenv("EXCHANGE_HOME", str(hub.layout.home))
    monkeypatch.setenv("COLUMNS", "400")
    runner = CliRunner()
    default = runner.invoke(app, ["quarantine", "list", "--limit", "1000"])
    assert default.exit_code == 0, default.output
    assert "resolved by" not in default.output and expected[0] not in default.output
    everything = runner.invoke(app, ["quarantine", "list", "--all", "--limit", "1000"])
    assert everything.exit_code == 0, everything.output
    assert f"resolved by {replay_id}" in everything.output and expected[0] in everything.output
    shown = runner.invoke(app, ["quarantine", "show", expected[0]])
    assert shown.exit_code == 0, shown.output
    assert f"status: resolved by {replay_id}" in shown.output
