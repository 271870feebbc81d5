"""The tamper matrix: every kind of tampering an auditor worries about is detected and named by verify.

One small lake (two Jiangsu batches, an extract, an archive) is built once per module; every test works
on its own copy (shutil.copytree), tampers with one thing, and expects verify to name it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from adapters.base import sandbox_for
from exchange.access.registry import Registry
from exchange.access.service import extract_for_department
from exchange.config import ExchangeSettings
from exchange.demo import SAMPLE_DEPARTMENTS, sample_grant
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.provenance.archive import archive_paths, write_archive
from exchange.provenance.events import Commit
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.manifest import SignedManifest, sign_manifest
from exchange.provenance.verify import verify_home, verify_offline
from exchange.recovery import reconcile
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.keyring import Keyring
from exchange.signing.rotation import revoke
from exchange.signing.trust import record_of
from exchange.synthetic import generate
from tests.fixture_cache import built_once
from tests.hubs import assert_named, verify_copy

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
DEPARTMENT = "js.public_security"


def _hub(home: Path) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    return Hub(ExchangeSettings(home=home, **env))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("tamper", _build, tmp_path_factory) / "home"


def _build(root: Path) -> None:
    home = root / "home"
    hub = _hub(home)
    sandbox = sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu")
    sandbox.seed("e_license", generate("e_license", "jiangsu", 300, seed=7, start=START, end=MID))
    assert run_exchange("jiangsu", "e_license", START, MID, hub).status == "committed"
    sandbox.seed("e_license", generate("e_license", "jiangsu", 200, seed=8, start=MID, end=END))
    assert run_exchange("jiangsu", "e_license", MID, END, hub).status == "committed"
    registry = Registry(hub.layout.access)
    registry.add_department(next(d for d in SAMPLE_DEPARTMENTS if d.id == DEPARTMENT))
    registry.add_grant(sample_grant(datetime.now(UTC).date()), hub.signer)
    extract_for_department(hub, DEPARTMENT, "e_license", hub.layout.extracts / DEPARTMENT)
    assert write_archive(hub.log, hub.signer, hub.layout.home, lake_snapshot=None, manifests=2) is not None
    (root / "trust.json").write_text(hub.keyring.export_trust().model_dump_json())
    report = verify_home(hub.settings)
    assert report.ok, report.problems
    assert report.files == 6 and report.manifests == 2 and report.extracts == 1 and report.archives == 1


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(built, copy, symlinks=True)
    return copy




def _manifests(home: Path) -> list[Path]:
    return sorted((home / "manifests").rglob("*.json"))


def _lake_file(home: Path, manifest: Path, table: str = "e_license") -> tuple[str, Path]:
    doc = json.loads(manifest.read_text())
    name = next(f["name"] for f in doc["manifest"]["files"] if f["table"] == table)
    return name, home / "lake" / "data" / name




def _rewrite_log(home: Path, edit: Callable[[list[str]], list[str]]) -> None:
    log = home / "provenance" / "log.jsonl"
    log.write_text("\n".join(edit(log.read_text().splitlines())) + "\n")


def test_the_untouched_copy_verifies(home: Path) -> None:
    assert verify_copy(home).ok


# -- lake data files ---------------------------------------------------------------------------------------


def test_a_byte_flipped_in_a_data_file(home: Path) -> None:
    name, path = _lake_file(home, _manifests(home)[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify_copy(home)
    assert_named(report, f"lake file {name}", "SHA-256 mismatch")
    assert report.problems[0].found != report.problems[0].expected  # type: ignore[attr-defined]


def test_a_data_file_deleted(home: Path) -> None:
    name, path = _lake_file(home, _manifests(home)[1])
    path.unlink()
    assert_named(verify_copy(home), f"lake file {name}", "missing")


def test_a_data_file_added(home: Path) -> None:
    _, path = _lake_file(home, _manifests(home)[0])
    extra = path.with_name("ducklake-extra-rows.parquet")
    shutil.copy(path, extra)
    assert_named(verify_copy(home), "ducklake-extra-rows.parquet", "unknown to the catalog")


def test_a_data_file_swapped_with_another_batchs(home: Path) -> None:
    first, a = _lake_file(home, _manifests(home)[0])
    _, b = _lake_file(home, _manifests(home)[1])
    tmp = a.with_suffix(".swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    assert_named(verify_copy(home), f"lake file {first}", "differs")


# -- manifests ----------------------------------------------------------------------------------------------


def test_a_manifest_edited(home: Path) -> None:
    path = _manifests(home)[0]
    doc = json.loads(path.read_text())
    doc["manifest"]["counts"]["quarantined"] -= 1
    doc["manifest"]["counts"]["accepted"] += 1
    path.write_text(json.dumps(doc, indent=2))
    assert_named(verify_copy(home), path.name, "does not match the content")


@pytest.mark.parametrize("who", ["a key outside the bundle", "a province key in the bundle"])
def test_a_manifest_re_signed_with_another_key(home: Path, tmp_path: Path, who: str) -> None:
    path = _manifests(home)[0]
    signed = SignedManifest.model_validate_json(path.read_text())
    if who == "a key outside the bundle":
        signer = Keyring(tmp_path / "forger").signer()
        expected = "not in the trust bundle"
    else:
        signer = Keyring(home / "keys").signer("jiangsu.data_office")
        expected = "not the hub's"
    path.write_text(sign_manifest(signed.manifest, signer).model_dump_json(indent=2))
    assert_named(verify_copy(home), path.name, expected)


# -- provenance log ---------------------------------------------------------------------------------------


def test_a_provenance_entry_edited(home: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        entry = json.loads(lines[2])
        entry["details"]["pulled"] = 1
        lines[2] = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
        return lines

    _rewrite_log(home, edit)
    assert_named(verify_copy(home), "log.jsonl:3", "entry was altered")


def test_a_provenance_entry_deleted(home: Path) -> None:
    _rewrite_log(home, lambda lines: lines[:3] + lines[4:])
    report = verify_copy(home)
    assert_named(report, "log.jsonl:4", "sequence gap")
    assert report.problems[0].expected == "seq 4"  # type: ignore[attr-defined]


def test_provenance_entries_reordered(home: Path) -> None:
    _rewrite_log(home, lambda lines: [*lines[:2], lines[3], lines[2], *lines[4:]])
    assert_named(verify_copy(home), "log.jsonl:3", "sequence gap")


def test_a_provenance_entry_inserted_even_with_the_hub_key(home: Path) -> None:
    # The strongest forger: holds the hub key and chains the inserted entry correctly to its predecessor.
    signer = Keyring(home / "keys").signer()

    def insert(lines: list[str]) -> list[str]:
        prev = ProvenanceEntry.model_validate_json(lines[1])
        body = {**prev.body(), "seq": prev.seq + 1, "prev_hash": prev.entry_hash, "action": "pull",
                "subject": "forged", "details": {}, "digests": {}}
        entry_hash = sha256_hex(canonical_bytes(body))
        forged = {**body, "entry_hash": entry_hash,
                  "signature": signer.sign(entry_hash.encode()).model_dump()}
        return [*lines[:2], json.dumps(forged, ensure_ascii=False), *lines[2:]]

    _rewrite_log(home, insert)
    assert_named(verify_copy(home), "log.jsonl:4", "sequence gap")


def test_the_log_truncated_after_a_verify(home: Path) -> None:
    _rewrite_log(home, lambda lines: lines[:-3])
    assert_named(verify_copy(home), "provenance log", "truncated")


@pytest.mark.parametrize("junk", [b" ", b"\t \r", b'{"seq": 13, "at": "2026-1', b"\x00" * 7])
def test_bytes_after_the_logs_last_line_are_an_unfinished_write_that_recovery_cuts_exactly(home: Path,
                                                                                          junk: bytes) -> None:
    # What a writer killed mid-append leaves, or anything appended without a newline, blanks included.
    log = home / "provenance" / "log.jsonl"
    whole = log.read_bytes()
    log.write_bytes(whole + junk)
    report = verify_copy(home)
    assert_named(report, "log.jsonl:13", "unreadable entry")
    assert report.recoverable
    assert reconcile(_hub(home)).torn_log_bytes == len(junk)
    assert log.read_bytes().startswith(whole) and verify_copy(home).ok  # every entry kept, the cut logged


# -- archives ---------------------------------------------------------------------------------------------


def test_an_archive_truncated(home: Path) -> None:
    archive = archive_paths(home / "provenance" / "archives")[0]
    archive.write_bytes(archive.read_bytes()[:4096])
    assert_named(verify_copy(home), f"provenance archive {archive.name}", "truncated")


# -- the lake catalog ---------------------------------------------------------------------------------------


def test_a_ducklake_snapshot_rolled_back_in_the_catalog(home: Path) -> None:
    catalog = home / "lake" / "catalog.ducklake"
    with duckdb.connect(str(catalog)) as con:
        last = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshot").fetchone()[0]  # type: ignore[index]
        con.execute("DELETE FROM ducklake_snapshot WHERE snapshot_id = ?", [last])
        con.execute("DELETE FROM ducklake_snapshot_changes WHERE snapshot_id = ?", [last])
    report = verify_copy(home)
    assert_named(report, _manifests(home)[1].name, "snapshot")
    assert_named(report, "lake catalog", "rolled back")


# -- extracts, keys, trust bundle ----------------------------------------------------------------------------


def test_an_extract_file_edited(home: Path) -> None:
    target = home / "extracts" / DEPARTMENT / "e_license.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    assert_named(verify_copy(home), "e_license.parquet", "SHA-256 mismatch")


def test_a_signature_made_with_a_revoked_key_after_revocation(home: Path) -> None:
    keyring = Keyring(home / "keys")
    stolen = keyring.signer()
    log = ProvenanceLog(home / "provenance")
    # Revoked after the home's own last entry (revoking at "now - 1 s" also revoked the entries the fixture
    # had signed in that second, when it ran fast), and the forgery dated after the revocation.
    last = log.head()
    assert last is not None
    revoked_at = last.at + timedelta(milliseconds=1)
    revoke(keyring, stolen.key_id, at=revoked_at, reason="key compromised")
    entry = log.append(
        stolen, Commit(snapshot_id=1, accepted=0, quarantined=0, manifest="forged.json"), actor="hub",
        subject="forged", digests={"manifest": "0" * 64}, at=revoked_at + timedelta(seconds=1))
    report = verify_copy(home)
    assert_named(report, f"seq {entry.seq}", "revoked at")


def test_a_key_added_to_the_trust_bundle(home: Path, tmp_path: Path) -> None:
    path = home / "keys" / "trust-bundle.json"
    doc = json.loads(path.read_text())
    forged = record_of(Keyring(tmp_path / "evil").signer(), datetime.now(UTC) - timedelta(days=1))
    doc["keys"].append(json.loads(forged.model_dump_json()))
    path.write_text(json.dumps(doc))
    assert_named(verify_copy(home), "trust bundle", "does not match")


# -- offline -----------------------------------------------------------------------------------------------


def test_offline_copy_verifies_and_names_a_key_added_to_the_exported_bundle(built: Path, tmp_path: Path) -> None:
    archives = built / "provenance" / "archives"
    trust = built.parent / "trust.json"
    report = verify_offline(archives, trust, built / "lake", extracts=built / "extracts")
    assert report.ok, [str(p) for p in report.problems]
    assert report.entries > 0 and report.manifests == 2 and report.files == 6 and report.extracts == 1
    doc = json.loads(trust.read_text())
    forged = record_of(Keyring(tmp_path / "evil").signer(), datetime.now(UTC) - timedelta(days=1))
    doc["keys"].append(json.loads(forged.model_dump_json()))
    tampered = tmp_path / "trust.json"
    tampered.write_text(json.dumps(doc))
    assert_named(verify_offline(archives, tampered, built / "lake"), "trust bundle trust.json", "does not match")


def test_offline_names_a_truncated_archive(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "archives"
    shutil.copytree(built / "provenance" / "archives", copy)
    archive = archive_paths(copy)[0]
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert_named(verify_offline(copy, built.parent / "trust.json", built / "lake"),
                  f"provenance archive {archive.name}", "truncated")
