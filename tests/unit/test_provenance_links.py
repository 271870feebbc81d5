"""verify's cross-links: a replay batch to its origin through a provenance replay entry, and every DuckLake
snapshot's commit info to the signed manifest of the batch it names (both ways).

One home (a Jiangsu origin batch and its replay under a relaxed contract) is built once; each test tampers
with its own copy. The strongest forger here holds the hub key and re-signs the whole chain after an edit,
so only the cross-link itself can catch it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from exchange.config import ExchangeSettings
from exchange.lake.commit import batch_digest, commit_infos
from exchange.lake.connect import connect
from exchange.provenance.links import ledger_row_of, origin_of
from exchange.provenance.log import ProvenanceEntry
from exchange.provenance.manifest import read_manifest
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.keyring import Keyring
from tests.fixture_cache import built_once
from tests.hubs import assert_named, replay_home, verify_copy

CHECKSUM = "holder_id.resident_id_checksum"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("links", replay_home, tmp_path_factory) / "home"


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(built, copy, symlinks=True)
    return copy




def _manifests(home: Path) -> tuple[Path, Path]:
    """(origin manifest, replay manifest)."""
    paths = sorted((home / "manifests").rglob("*.json"))
    replays = [p for p in paths if origin_of(p.stem) != p.stem]
    assert len(paths) == 2 and len(replays) == 1
    return next(p for p in paths if p not in replays), replays[0]




def _reforge_log(home: Path, edit_seq: int, edit: dict[str, object] | None) -> None:
    """Rewrite the log as a forger holding the hub key would: change (or drop, when `edit` is None) the entry at
    `edit_seq`, then re-number, re-chain and re-sign everything after it, so the chain itself verifies."""
    signer = Keyring(home / "keys").signer()
    path = home / "provenance" / "log.jsonl"
    entries = [ProvenanceEntry.model_validate_json(line) for line in path.read_text().splitlines()]
    out: list[str] = []
    prev: ProvenanceEntry | None = None
    for entry in entries:
        if entry.seq == edit_seq and edit is None:
            continue
        body = entry.body()
        if entry.seq == edit_seq and edit is not None:
            body.update(edit)
        if prev is not None:
            body.update(seq=prev.seq + 1, prev_hash=prev.entry_hash)
        entry_hash = sha256_hex(canonical_bytes(body))
        prev = ProvenanceEntry.model_validate(
            {**body, "entry_hash": entry_hash, "signature": signer.sign(entry_hash.encode()).model_dump()})
        out.append(prev.model_dump_json())
    path.write_text("\n".join(out) + "\n")


def _replay_entry(home: Path) -> ProvenanceEntry:
    lines = (home / "provenance" / "log.jsonl").read_text().splitlines()
    return next(e for e in map(ProvenanceEntry.model_validate_json, lines) if e.action == "replay")


# -- the clean home -----------------------------------------------------------------------------------------


def test_every_snapshot_commit_info_carries_its_batch_and_the_digest_its_manifest_gives(built: Path) -> None:
    settings = ExchangeSettings(home=built)
    with connect(settings, read_only=True) as con:
        infos = commit_infos(con)
    signed = [read_manifest(p) for p in _manifests(built)]
    assert {info["batch_id"] for info in infos.values()} == {s.manifest.batch_id for s in signed}
    for s in signed:
        info = infos[s.manifest.snapshot_id]
        assert info["batch_id"] == s.manifest.batch_id
        assert info["batch_sha256"] == batch_digest(ledger_row_of(s.manifest))


def test_a_replay_entry_links_the_replay_to_its_origins_manifest(built: Path) -> None:
    origin, replayed = (read_manifest(p) for p in _manifests(built))
    entry = _replay_entry(built)
    assert entry.subject == replayed.manifest.batch_id
    assert entry.details["origin"] == origin.manifest.batch_id
    assert entry.digests["origin_manifest"] == origin.digest()


# -- replay links -------------------------------------------------------------------------------------------


def test_the_replay_entry_removed(home: Path) -> None:
    _reforge_log(home, _replay_entry(home).seq, None)
    report = verify_copy(home)
    assert_named(report, _manifests(home)[1].name, "no provenance replay entry")
    assert len(report.problems) == 1  # the re-signed chain itself is intact: only the missing link names it


def test_the_replay_entrys_origin_digest_edited(home: Path) -> None:
    entry = _replay_entry(home)
    _reforge_log(home, entry.seq, {"digests": {**entry.digests, "origin_manifest": "0" * 64}})
    report = verify_copy(home)
    assert_named(report, _manifests(home)[1].name, "another digest than the origin's signed manifest")
    assert report.problems[0].found == "0" * 64  # type: ignore[attr-defined]


def test_the_replay_entrys_origin_renamed(home: Path) -> None:
    entry = _replay_entry(home)
    _reforge_log(home, entry.seq, {"details": {**entry.details, "origin": "jiangsu.e_license.elsewhere"}})
    assert_named(verify_copy(home), _manifests(home)[1].name, "names another origin batch")


def test_the_replay_entry_edited_without_the_key(home: Path) -> None:
    path = home / "provenance" / "log.jsonl"
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if json.loads(line)["action"] == "replay")
    doc = json.loads(lines[index])
    doc["digests"]["origin_manifest"] = "f" * 64
    lines[index] = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    report = verify_copy(home)
    assert_named(report, f"log.jsonl:{index + 1}", "entry was altered")
    assert_named(report, _manifests(home)[1].name, "another digest than the origin's signed manifest")


def test_the_origin_manifest_removed(home: Path) -> None:
    origin, replayed = _manifests(home)
    origin.unlink()
    report = verify_copy(home)
    assert_named(report, replayed.name, "origin missing")
    assert_named(report, f"lake batch {origin.stem}", "no signed manifest")


# -- snapshot commit info <-> manifest ---------------------------------------------------------------------


def _edit_commit_info(home: Path, snapshot: int, edit: dict[str, object]) -> None:
    with duckdb.connect(str(home / "lake" / "catalog.ducklake")) as con:
        row = con.execute("SELECT commit_extra_info FROM ducklake_snapshot_changes WHERE snapshot_id = ?",
                          [snapshot]).fetchone()
        assert row is not None
        info = {**json.loads(row[0]), **edit}
        con.execute("UPDATE ducklake_snapshot_changes SET commit_extra_info = ? WHERE snapshot_id = ?",
                    [json.dumps(info, sort_keys=True), snapshot])


def test_a_snapshots_batch_digest_edited(home: Path) -> None:
    path = _manifests(home)[0]
    _edit_commit_info(home, read_manifest(path).manifest.snapshot_id, {"batch_sha256": "1" * 64})
    report = verify_copy(home)
    assert_named(report, path.name, "commit info carries another batch digest")
    assert report.problems[0].found == "1" * 64  # type: ignore[attr-defined]


def test_a_snapshot_relabelled_as_another_batch(home: Path) -> None:
    origin_path, replay_path = _manifests(home)
    origin, replayed = read_manifest(origin_path).manifest, read_manifest(replay_path).manifest
    # The origin's snapshot now claims to hold the replay (an older snapshot re-labelled, as a second commit would).
    _edit_commit_info(home, origin.snapshot_id, {"batch_id": replayed.batch_id})
    report = verify_copy(home)
    assert_named(report, f"lake snapshot {origin.snapshot_id}", f"names batch {replayed.batch_id}, whose signed "
                  "manifest names another snapshot")
    assert_named(report, origin_path.name, "snapshot")
