"""verify's output (verdict, first broken item, --json), incremental mode from checkpoints, chained archives,
offline mode, and the auditor CLI around keys and provenance."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.base import sandbox_for
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.lake.commit import files_added, ledger_rows, snapshot_of
from exchange.lake.connect import catalog_and_data, connect
from exchange.pipeline import run_exchange
from exchange.provenance import manifeststream
from exchange.provenance.archive import archive_paths, read_header, write_archive
from exchange.provenance.checkpoint import append_checkpoint, load_state
from exchange.provenance.hashing import Prefetcher
from exchange.provenance.lakecheck import read_catalog
from exchange.provenance.verify import verify_home, verify_offline
from exchange.synthetic import generate
from tests.fixture_cache import built_once

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)


def _hub(home: Path) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    return Hub(ExchangeSettings(home=home, **env))


def _second_batch(hub: Hub) -> None:
    sandbox = sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu")
    sandbox.seed("e_license", generate("e_license", "jiangsu", 150, seed=8, start=MID, end=END))
    assert run_exchange("jiangsu", "e_license", MID, END, hub).status == "committed"


def _one_batch(root: Path) -> None:
    hub = _hub(root / "home")
    sandbox = sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu")
    sandbox.seed("e_license", generate("e_license", "jiangsu", 200, seed=7, start=START, end=MID))
    assert run_exchange("jiangsu", "e_license", START, MID, hub).status == "committed"


@pytest.fixture(scope="module")
def one_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("verify", _one_batch, tmp_path_factory) / "home"


def _checkpointed(one_batch: Path, root: Path) -> None:
    """One batch, a checkpoint, a passing verify (recorded), then a second batch."""
    shutil.copytree(one_batch, root / "home", symlinks=True)
    hub = _hub(root / "home")
    append_checkpoint(hub.log, hub.signer, lake_snapshot=None, manifests=1)
    assert verify_home(hub.settings).ok
    _second_batch(hub)


@pytest.fixture(scope="module")
def checkpointed(one_batch: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("checkpointed", lambda root: _checkpointed(one_batch, root), tmp_path_factory) / "home"


def _archived(one_batch: Path, root: Path) -> None:
    """One batch, archive 1, a second batch, archive 2."""
    shutil.copytree(one_batch, root / "home", symlinks=True)
    hub = _hub(root / "home")
    assert write_archive(hub.log, hub.signer, hub.layout.home, lake_snapshot=None, manifests=1) is not None
    assert write_archive(hub.log, hub.signer, hub.layout.home, lake_snapshot=None, manifests=1) is None
    _second_batch(hub)
    assert write_archive(hub.log, hub.signer, hub.layout.home, lake_snapshot=None, manifests=2) is not None


@pytest.fixture(scope="module")
def archived(one_batch: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("archived", lambda root: _archived(one_batch, root), tmp_path_factory) / "home"


def _copy(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    home = tmp_path / "home"
    shutil.copytree(source, home, symlinks=True)
    monkeypatch.setenv("EXCHANGE_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    return _hub(home)


@pytest.fixture
def hub(one_batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    return _copy(one_batch, tmp_path, monkeypatch)


@pytest.fixture
def hub2(checkpointed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    return _copy(checkpointed, tmp_path, monkeypatch)


@pytest.fixture
def hub_archived(archived: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    return _copy(archived, tmp_path, monkeypatch)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _first_lake_file(hub: Hub) -> tuple[str, Path]:
    manifest = json.loads(sorted(hub.layout.manifests.rglob("*.json"))[0].read_text())
    name = manifest["manifest"]["files"][0]["name"]
    return name, hub.layout.lake_data / name


def test_json_names_the_first_broken_item_with_expected_and_found(hub: Hub) -> None:
    name, path = _first_lake_file(hub)
    _flip(path)
    out = CliRunner().invoke(app, ["verify", "--json"])
    assert out.exit_code == 1, out.output
    result = json.loads(out.output)
    assert result["verdict"] == "BROKEN" and result["ok"] is False
    first = result["first_problem"]
    assert first["item"] == f"lake file {name}"
    assert len(first["expected"]) == 64 and len(first["found"]) == 64 and first["expected"] != first["found"]
    assert result["counts"]["manifests"] == 1


def test_human_output_has_a_verdict_and_the_first_broken_item(hub: Hub) -> None:
    runner = CliRunner()
    clean = runner.invoke(app, ["verify"])
    assert clean.exit_code == 0 and clean.output.startswith("intact:"), clean.output
    _flip(_first_lake_file(hub)[1])
    out = runner.invoke(app, ["verify"])
    assert out.exit_code == 1
    assert out.output.startswith("BROKEN")
    assert "first broken item: lake file" in out.output and "expected:" in out.output and "found:" in out.output


def test_incremental_rechecks_only_what_is_new_since_the_checkpoint(hub2: Hub) -> None:
    hub = hub2
    state = load_state(hub.layout.provenance)
    assert state is not None and state.checkpoint_seq == state.head_seq
    # An old file changed after the last verify: by design only a full verify re-hashes it.
    _flip(_first_lake_file(hub)[1])
    report = verify_home(hub.settings, incremental=True)
    assert report.ok, [str(p) for p in report.problems]
    assert report.manifests == 1 and report.skipped["manifests"] == 1
    # Only the new batch's entries: pull, validate, commit_intent, commit, and quarantine when it had rejects.
    assert report.entries in (4, 5)
    assert not verify_home(hub.settings).ok


def test_incremental_still_names_tampering_in_the_new_range_and_old_manifests(hub2: Hub) -> None:
    hub = hub2
    lines = hub.log.path.read_text().splitlines()
    entry = json.loads(lines[-1])
    entry["details"]["accepted"] += 1
    lines[-1] = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    hub.log.path.write_text("\n".join(lines) + "\n")
    report = verify_home(hub.settings, incremental=True)
    assert any("entry was altered" in p.problem for p in report.problems)
    old = sorted(hub.layout.manifests.rglob("*.json"))[0]
    doc = json.loads(old.read_text())
    doc["manifest"]["counts"]["pulled"] += 1
    old.write_text(json.dumps(doc))
    report = verify_home(hub.settings, incremental=True)
    assert any(old.name in p.item for p in report.problems)


def test_a_checkpoint_removed_from_under_incremental_mode_is_named(hub: Hub) -> None:
    append_checkpoint(hub.log, hub.signer, lake_snapshot=None, manifests=1)
    assert verify_home(hub.settings).ok
    lines = hub.log.path.read_text().splitlines()
    hub.log.path.write_text("\n".join(lines[:-1]) + "\n")
    report = verify_home(hub.settings, incremental=True)
    assert not report.ok
    assert any("checkpoint" in p.problem or "truncated" in p.problem for p in report.problems)


def test_archives_chain_and_an_auditor_verifies_them_offline(hub_archived: Hub, tmp_path: Path) -> None:
    hub = hub_archived
    first, second = archive_paths(hub.layout.provenance / "archives")
    h1, h2 = read_header(first), read_header(second)
    assert h2.segment == 2 and h2.prev_archive == h1.digest() and h2.first_seq == h1.last_seq + 1
    assert h1.digest()[:16] in second.name and len(h2.manifests) == 1
    assert verify_home(hub.settings).ok
    # The auditor's copy: the archives, the lake folder and the exported trust bundle; nothing else.
    audit = tmp_path / "audit"
    shutil.copytree(hub.layout.provenance / "archives", audit / "archives")
    shutil.copytree(hub.layout.lake, audit / "lake")
    trust = audit / "trust.json"
    out = CliRunner().invoke(app, ["keys", "export-trust", "--out", str(trust)])
    assert out.exit_code == 0, out.output
    shutil.rmtree(hub.layout.home)  # no EXCHANGE_HOME needed
    report = verify_offline(audit / "archives", trust, audit / "lake")
    assert report.ok, [str(p) for p in report.problems]
    assert report.archives == 2 and report.manifests == 2
    out = CliRunner().invoke(app, ["verify", "--offline", "--json", "--provenance", str(audit / "archives"),
                                   "--trust-bundle", str(trust), "--lake", str(audit / "lake")])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["verdict"] == "intact"
    archives = archive_paths(audit / "archives")
    archives[0].unlink()  # a missing archive: its batch is in the lake without a signed manifest
    report = verify_offline(audit / "archives", trust, audit / "lake")
    assert not report.ok and report.notes
    assert any("has no signed manifest" in p.problem for p in report.problems)


def test_a_missing_or_renamed_archive_is_named_at_home(hub_archived: Hub) -> None:
    hub = hub_archived
    first, second = archive_paths(hub.layout.provenance / "archives")
    renamed = second.with_name(second.name.replace("prev", "prevf"))
    second.rename(renamed)
    report = verify_home(hub.settings)
    assert any(renamed.name in p.item for p in report.problems)
    renamed.rename(second)
    first.unlink()
    report = verify_home(hub.settings)
    assert any("archives missing" in p.problem for p in report.problems)


def test_keys_cli_rotate_revoke_list_and_export(hub: Hub, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).output)
    owners = {k["owner"] for k in listed["keys"]}
    assert {"hub", "jiangsu.data_office", "anhui.data_office"} <= owners
    old_hub = next(k["key_id"] for k in listed["keys"] if k["owner"] == "hub")
    assert runner.invoke(app, ["keys", "rotate", "hub"]).exit_code == 0
    province = next(k["key_id"] for k in listed["keys"] if k["owner"] == "zhejiang.data_office")
    out = runner.invoke(app, ["keys", "revoke", province, "--reason", "left service"])
    assert out.exit_code == 0, out.output
    table = runner.invoke(app, ["keys", "list"]).output
    assert "retired" in table and "revoked" in table
    assert verify_home(hub.settings).ok  # the old hub key's signatures stay valid after rotation
    out = runner.invoke(app, ["verify", "--offline", "--provenance", str(hub.layout.provenance),
                              "--trust-bundle", str(hub.layout.keys / "trust-bundle.json"),
                              "--lake", str(hub.layout.lake), "--manifests", str(hub.layout.manifests),
                              "--anchor", old_hub])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["provenance", "checkpoint"])
    assert out.exit_code == 0 and "checkpoint seq" in out.output
    out = runner.invoke(app, ["provenance", "archive"])
    assert out.exit_code == 0 and "archive 1" in out.output


def _new_manifest(hub: Hub) -> dict[str, Any]:
    """The manifest of the batch committed after the last recorded verify."""
    state = load_state(hub.layout.provenance)
    assert state is not None
    docs = [json.loads(p.read_text())["manifest"] for p in sorted(hub.layout.manifests.rglob("*.json"))]
    (new,) = [m for m in docs if m["batch_id"] not in state.manifests]
    return new


@pytest.mark.parametrize("kind", ["lake", "landing", "lake missing"])
def test_incremental_hashes_every_file_the_new_batch_added(hub2: Hub, kind: str) -> None:
    hub = hub2
    m = _new_manifest(hub)
    if kind == "landing":
        f = m["landing"][0]
        path = hub.layout.landing / m["province"] / m["dataset"] / m["batch_id"] / f["name"]
        item = f"landing file {m['batch_id']}/{f['name']}"
    else:
        f = m["files"][0]
        path, item = hub.layout.lake_data / f["name"], f"lake file {f['name']}"
    if kind == "lake missing":
        path.unlink()
    else:
        _flip(path)
    report = verify_home(hub.settings, incremental=True)
    assert [p.item for p in report.problems] == [item], [str(p) for p in report.problems]
    assert getattr(report.problems[0], "expected", None) == f["sha256"]
    assert report.skipped["manifests"] == 1  # the old batch stayed skipped; the new one was checked


def test_the_catalog_read_once_answers_as_the_commit_helpers(hub2: Hub) -> None:
    """verify reads the catalog in one pass without bound parameters; it must agree with lake/commit.py."""
    root = catalog_and_data(hub2.settings)[1]
    with connect(hub2.settings, read_only=True) as con:
        catalog = read_catalog(con, root)
        ledger = [r.batch_id for r in ledger_rows(con)]
        assert catalog.batches == ledger and len(ledger) == 2
        for batch in ledger:
            snapshot = catalog.snapshot_of(batch)
            assert snapshot is not None and snapshot == snapshot_of(con, batch)
            ours = {(f.kind, f.table, f.relative, f.rows) for f in catalog.added_by(snapshot)}
            theirs = {(f.kind, f.table, f.relative, f.rows) for f in files_added(con, snapshot, root)}
            assert ours == theirs and ours
    assert catalog.snapshot_of("no.such.batch") is None and catalog.added_by(None) == []


def test_the_manifest_stream_reads_ahead_within_its_bound(hub2: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = hub2
    monkeypatch.setattr(manifeststream, "LOOKAHEAD_BYTES", 1)  # one manifest with files fills the look-ahead
    paths = sorted(hub.layout.manifests.rglob("*.json"))
    listing = [(p.name, p.read_bytes) for p in paths] * 2  # every manifest twice: the repeats are dropped
    where = manifeststream.Locations(str(hub.layout.lake_data), hub.layout.landing)
    with Prefetcher(workers=1) as hashes:
        stream = manifeststream.ManifestStream(listing, {}, where, hashes)
        stream.prime()
        assert len(stream._ahead) == 1 and stream.listed.batches == {stream._ahead[0][0].batch_id}
        docs = list(stream)
        assert [d.item for d in docs] == [p.name for p in paths]
        assert all(d.signed is not None and d.error is None for d in docs)
        first = docs[0].signed
        assert first is not None
        f = first.manifest.files[0]
        assert hashes.digest(hub.layout.lake_data / f.name) == (f.sha256, f.size)
    assert len(stream.listed.batches) == len(paths) and len(stream.listed.files) >= len(paths)


def test_the_prefetcher_hashes_like_sha256sum(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 10_000)
    with Prefetcher() as hashes:
        hashes.want(data)
        hashes.want(tmp_path / "missing")
        assert hashes.digest(data) == (hashlib.sha256(data.read_bytes()).hexdigest(), data.stat().st_size)
        assert hashes.digest(tmp_path / "missing") is None
        assert hashes.digest(data) == hashes.digest(data)  # asked again: hashed again, same answer
