"""`exchange provenance archive --truncate`: the live log keeps only the tail after the last archive, verify
still checks the whole chain across archives and log, and a damaged archive (now the only copy) is named."""

from __future__ import annotations

import io
import json
import multiprocessing
import shutil
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.base import sandbox_for
from exchange.cli import app
from exchange.config import ExchangeSettings, Layout
from exchange.errors import TerminalError
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.provenance.archive import (
    ENTRIES,
    archive_paths,
    history_lines,
    truncate_to_archive,
    write_archive,
)
from exchange.provenance.events import Checkpoint, Query
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.trace import trace_record
from exchange.provenance.verify import verify_home, verify_offline
from exchange.signing.keyring import Keyring
from exchange.synthetic import generate
from tests.fixture_cache import built_once
from tests.hubs import assert_named, sandbox_hub, verify_copy
from tests.unit.sample_events import H, InFlight, pull

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)


def _hub(home: Path) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    return sandbox_hub(home, sandbox)


def _batch(hub: Hub, start: datetime, end: datetime, seed: int) -> str:
    sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu").seed(
        "e_license", generate("e_license", "jiangsu", 150, seed=seed, start=start, end=end))
    result = run_exchange("jiangsu", "e_license", start, end, hub)
    assert result.status == "committed"
    return str(result.batch_id)


def _archive_and_truncate(hub: Hub) -> None:
    assert write_archive(hub.log, hub.signer, hub.layout.home, lake_snapshot=None, manifests=0) is not None
    assert truncate_to_archive(hub.log, hub.signer) is not None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("truncate", _build, tmp_path_factory) / "home"


def _build(root: Path) -> None:
    """Batch 1, archive 1 + truncate, batch 2, archive 2 + truncate, then one more entry in the live tail."""
    hub = _hub(root / "home")
    _batch(hub, START, MID, 7)
    hub.log.append(hub.signer, Query(token_id=None, grants={}, snapshot_id=1, columns=[], rows=0),
                   actor="js.public_security", subject="e_license", digests={"sql": H, "result": H})
    _archive_and_truncate(hub)
    _batch(hub, MID, END, 8)
    _archive_and_truncate(hub)
    hub.log.append(hub.signer, Checkpoint(lake_snapshot=None, manifests=0), actor="hub", subject="provenance")


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(built, copy, symlinks=True)
    return copy






def _entries(home: Path) -> list[ProvenanceEntry]:
    return ProvenanceLog(home / "provenance").read()


def test_the_live_log_keeps_the_tail_and_verify_checks_the_whole_chain(built: Path) -> None:
    live = _entries(built)
    second = archive_paths(built / "provenance" / "archives")[-1]
    # The tail starts at archive 2's closing checkpoint, then the signed truncate entry naming archive 2.
    assert live[0].action == "checkpoint" and live[0].seq > 1 and second.name.find(f"{live[0].seq:08d}") > 0
    cut = live[1]
    assert cut.action == "truncate" and cut.details["archive"] == second.name
    assert cut.details["first_seq"] == live[0].seq
    history = [ProvenanceEntry.model_validate_json(line) for line in history_lines(ProvenanceLog(built / "provenance"))]
    assert [e.seq for e in history] == list(range(1, live[-1].seq + 1))
    report = verify_copy(built)
    assert report.ok, [str(p) for p in report.problems]
    assert report.entries == live[-1].seq and report.archives == 2 and report.manifests == 2


def test_trace_still_finds_the_provenance_the_log_no_longer_holds(built: Path) -> None:
    first_batch = json.loads(next(iter(sorted((built / "manifests").rglob("*.json")))).read_text())["manifest"]
    key = None
    from exchange.lake.connect import LAKE, connect

    with connect(ExchangeSettings(home=built), read_only=True) as con:
        row = con.execute(f"SELECT license_id FROM {LAKE}.e_license WHERE batch_id = ? LIMIT 1",
                          [first_batch["batch_id"]]).fetchone()
        assert row is not None
        key = str(row[0])
    result = trace_record(ExchangeSettings(home=built), "e_license", key)
    batch = next(b for b in result.batches if b.batch_id == first_batch["batch_id"])
    assert {p.split()[1] for p in batch.provenance} >= {"pull", "validate", "commit"}


def test_an_auditor_verifies_the_truncated_log_with_its_archives_offline(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "provenance"
    shutil.copytree(built / "provenance", copy)
    trust = tmp_path / "trust.json"
    trust.write_text(Keyring(built / "keys").export_trust().model_dump_json())
    report = verify_offline(copy, trust, built / "lake", manifests=built / "manifests")
    assert report.ok, [str(p) for p in report.problems]
    assert report.archives == 2 and report.manifests == 2


def test_an_archive_truncated_after_the_log_was_cut(home: Path) -> None:
    first = archive_paths(home / "provenance" / "archives")[0]
    first.write_bytes(first.read_bytes()[:4096])
    assert_named(verify_copy(home), f"provenance archive {first.name}", "truncated")


def _rewrite_entries(archive: Path, edit: bytes, replacement: bytes) -> None:
    """Re-pack an archive with one entry's bytes changed, keeping its signed header."""
    with tarfile.open(archive, "r:") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(archive, "w:", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            if member.name == ENTRIES:
                assert edit in data
                data = data.replace(edit, replacement, 1)
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_an_entry_edited_in_an_archive_the_log_no_longer_holds(home: Path) -> None:
    first = archive_paths(home / "provenance" / "archives")[0]
    _rewrite_entries(first, b'"action":"pull"', b'"action":"pulL"')
    assert_named(verify_copy(home), f"provenance archive {first.name}", "entry was altered")


def test_an_archive_removed_after_the_log_was_cut(home: Path) -> None:
    archive_paths(home / "provenance" / "archives")[-1].unlink()
    assert_named(verify_copy(home), "provenance log log.jsonl", "no archive ends there")


def test_the_live_tail_cut_further_by_hand(home: Path) -> None:
    log = home / "provenance" / "log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[1:]) + "\n")  # drop the kept checkpoint: the log starts mid-segment
    assert_named(verify_copy(home), "provenance log log.jsonl", "no archive ends there")


def test_the_truncate_entry_removed_with_the_hub_key(home: Path) -> None:
    # A cut at an archive boundary with no signed record of it is named, even when the rest re-chains.
    signer = Keyring(home / "keys").signer()
    log = home / "provenance" / "log.jsonl"
    entries = [ProvenanceEntry.model_validate_json(line) for line in log.read_text().splitlines()]
    kept = [entries[0]]
    for entry in entries[2:]:
        body = {**entry.body(), "seq": kept[-1].seq + 1, "prev_hash": kept[-1].entry_hash}
        from exchange.signing.canonical import canonical_bytes, sha256_hex

        digest = sha256_hex(canonical_bytes(body))
        kept.append(ProvenanceEntry.model_validate(
            {**body, "entry_hash": digest, "signature": signer.sign(digest.encode()).model_dump()}))
    log.write_text("".join(e.model_dump_json() + "\n" for e in kept))
    assert_named(verify_copy(home), "provenance log log.jsonl", "no signed truncate entry")


def test_incremental_verify_resumes_across_a_truncation(home: Path) -> None:
    hub = _hub(home)
    assert verify_home(hub.settings).ok  # recorded: offsets into the live log as it is now
    _archive_and_truncate(hub)  # the recorded offsets are void now
    report = verify_home(hub.settings, incremental=True)
    assert report.ok, [str(p) for p in report.problems]
    assert report.skipped.get("manifests") == 2
    assert verify_home(hub.settings, incremental=True).ok


def test_truncation_refuses_when_an_archive_does_not_hold_the_live_entries(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    for i in range(3):
        log.append(keyring.signer(), pull(), actor="hub", subject=f"b{i}")
    archive = write_archive(log, keyring.signer(), tmp_path, lake_snapshot=None, manifests=0)
    assert archive is not None
    _rewrite_entries(archive, b'"subject":"b1"', b'"subject":"bX"')
    before = log.path.read_bytes()
    with pytest.raises(TerminalError, match="differ from archive"):
        truncate_to_archive(log, keyring.signer())
    assert log.path.read_bytes() == before


def _append_many(home: str, worker: int, n: int) -> None:
    keyring = Keyring(Path(home) / "keys")
    log = ProvenanceLog(Path(home) / "provenance")
    for i in range(n):
        log.append(keyring.signer(), pull(), actor=f"adapter:worker-{worker}", subject=f"b{worker}-{i}")


def test_appenders_racing_a_truncation_lose_nothing(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    log.append(keyring.signer(), pull(), actor="hub", subject="first")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 40)) for w in range(3)]
    for p in workers:
        p.start()
    cuts = 0
    while any(p.is_alive() for p in workers) or cuts == 0:
        if write_archive(log, keyring.signer(), tmp_path, lake_snapshot=None, manifests=0) is not None:
            cuts += truncate_to_archive(log, keyring.signer()) is not None
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    entries = [ProvenanceEntry.model_validate_json(line) for line in history_lines(log)]
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert sum(e.action == "pull" for e in entries) == 1 + 3 * 40
    assert log.first() is not None and log.first().seq > 1  # type: ignore[union-attr]
    report = verify_home(ExchangeSettings(home=tmp_path), record=False)
    assert report.ok, [str(p) for p in report.problems]
    assert report.entries == len(entries)


def test_an_append_in_flight_behind_the_checkpoint_is_neither_read_nor_archived(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Archiving and truncating hold the archives' lock, not the log's: appends go on while they read the log,
    so they must stop at the entry they are after instead of parsing a line still being written (a race the
    suite met on a loaded machine, test_appenders_racing_a_truncation_lose_nothing)."""
    from exchange.provenance import archive as archive_module

    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    for i in range(3):
        log.append(keyring.signer(), pull(), actor="hub", subject=f"b{i}")
    checkpoint = archive_module.append_checkpoint
    flights: list[InFlight] = []

    def checkpoint_then_an_append_starts(*args: object, **kwargs: object) -> ProvenanceEntry:
        entry = checkpoint(*args, **kwargs)  # type: ignore[arg-type]
        flights.append(InFlight(log, keyring))
        return entry

    with monkeypatch.context() as patched:
        patched.setattr(archive_module, "append_checkpoint", checkpoint_then_an_append_starts)
        archived = write_archive(log, keyring.signer(), tmp_path, lake_snapshot=None, manifests=0)
    assert archived is not None
    with tarfile.open(archived, "r:") as tar:
        lines = tar.extractfile(ENTRIES).read().splitlines()  # type: ignore[union-attr]
    assert [json.loads(line)["action"] for line in lines] == ["pull"] * 3 + ["checkpoint"]
    flights[0].finish()

    # Again while truncating: the log's last complete line is the newest archive's checkpoint.
    assert write_archive(log, keyring.signer(), tmp_path, lake_snapshot=None, manifests=0) is not None
    flight = InFlight(log, keyring)
    truncate_before = log.truncate_before

    def once_the_append_is_done(*args: object, **kwargs: object) -> ProvenanceEntry | None:
        flight.finish()
        return truncate_before(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(log, "truncate_before", once_the_append_is_done)
    assert truncate_to_archive(log, keyring.signer()) is not None
    assert [e.action for e in log.read()] == ["checkpoint", "pull", "truncate"]
    report = verify_home(ExchangeSettings(home=tmp_path), record=False)
    assert report.ok, [str(p) for p in report.problems]


def test_cli_archive_truncate(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    out = runner.invoke(app, ["provenance", "archive", "--truncate"])
    assert out.exit_code == 0, out.output
    assert "archive 3" in out.output and "live log truncated" in out.output
    again = runner.invoke(app, ["provenance", "archive", "--truncate"])
    assert again.exit_code == 0, again.output
    assert "archive 4" in again.output  # the truncate entry of the first run is new since archive 3
    verified = runner.invoke(app, ["verify"])
    assert verified.exit_code == 0, verified.output


def test_the_auditor_report_counts_access_entries_the_log_no_longer_holds(built: Path) -> None:
    from exchange.report.auditor import collect

    layout = Layout(built)
    data = collect(layout, verify_copy(built), Keyring(layout.keys).export_trust())
    assert [(e.actor, e.action) for e in data.access if e.action == "query"] == [("js.public_security", "query")]
    assert all(e.action != "query" for e in _entries(built)), "the query entry lives only in archive 1"
