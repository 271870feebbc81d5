"""The commit protocol's pure parts where the crash and recovery tests left mutants of exchange/lake/protocol.py
alive: the manifest must carry every fact the staged records hold, not only those verify re-checks, and a commit
entry counts for the attempt whose intent it follows, not for a later one.

An incremental pull's `since` and the warned count were left out or zeroed with every test green: the manifest is
what an auditor reads for the pull's window and the contract's warnings, so each field is compared one by one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.config import ExchangeSettings
from exchange.errors import TerminalError
from exchange.hub import Hub
from exchange.lake import protocol
from exchange.lake.commit import DataFile
from exchange.provenance import events
from exchange.provenance.events import HUB
from exchange.provenance.manifest import Counts, FileDigest, LakeFile, RuleCount
from exchange.stages import PullRecord, ValidationRecord

SINCE = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)  # an incremental pull: not the initial load (null)
PULL = PullRecord(
    batch_id="jiangsu.e_license.b1", province="jiangsu", dataset="e_license",
    window_start=datetime(2026, 11, 1, tzinfo=UTC), window_end=datetime(2026, 11, 8, tzinfo=UTC),
    since=SINCE, watermark=datetime(2026, 11, 7, 23, 59, tzinfo=UTC), pulled=10, deleted=2,
    landing=[FileDigest(name="page-0001.json", sha256="a" * 64, size=512)], drift=[], source_signatures=[],
)
CHECKED = ValidationRecord(
    batch_id=PULL.batch_id, contract_id="yrd-e-license", contract_version="1.2.0", contract_sha256="c" * 64,
    pulled=10, accepted=7, quarantined=3, warned=4, gx_success=False, held=False,
    rules=[RuleCount(rule_id="holder_id.resident_id_checksum", severity="error", unexpected=3),
           RuleCount(rule_id="holder_id.spelling", severity="warning", unexpected=4)],
)
FILES = [
    LakeFile(table="e_license", name="main/e_license/a.parquet", sha256="d" * 64, size=900, rows=7),
    LakeFile(table="quarantine", name="main/quarantine/b.parquet", sha256="e" * 64, size=400, rows=3),
    LakeFile(table="e_license", name="main/e_license/c-delete.parquet", sha256="f" * 64, size=100, rows=2,
             kind="delete"),
]


def test_the_manifest_carries_every_fact_of_the_staged_records() -> None:
    manifest = protocol.build_manifest(PULL, CHECKED, 42, FILES)
    from_pull = {"batch_id", "province", "dataset", "window_start", "window_end", "since", "watermark", "landing"}
    from_validation = {"contract_id", "contract_version", "contract_sha256", "rules", "gx_success"}
    for name in from_pull:
        assert getattr(manifest, name) == getattr(PULL, name), name
    for name in from_validation:
        assert getattr(manifest, name) == getattr(CHECKED, name), name
    assert manifest.counts == Counts(pulled=10, accepted=7, quarantined=3, warned=4, deleted=2)
    assert (manifest.snapshot_id, manifest.files) == (42, FILES)
    # Every field of the manifest is accounted for above (a field added later must be added here too).
    assert set(type(manifest).model_fields) == from_pull | from_validation | {"counts", "snapshot_id", "files",
                                                                                "created_at"}


def test_a_commit_entry_before_the_newest_intent_belongs_to_an_earlier_attempt(tmp_path: Path) -> None:
    # finish() logs the commit entry unless one was logged since the newest intent: one logged before it (the
    # same batch id committed again after a lake restore) must not stand in for this attempt's.
    hub = Hub(ExchangeSettings(home=tmp_path / "home"))
    batch, digest = PULL.batch_id, {"manifest": "1" * 64}

    def log(event: events.Event, digests: dict[str, str], subject: str = batch) -> None:
        hub.log.append(hub.signer, event, actor=HUB, subject=subject, digests=digests)

    intent = events.CommitIntent(staged=["pull.json"])
    log(intent, {"pull.json": "2" * 64})
    assert protocol.commit_logged(hub, batch) is None
    log(events.Commit(snapshot_id=1, accepted=7, quarantined=3, manifest="manifests/m.json"), digest)
    log(intent, {"pull.json": "3" * 64}, subject="zhejiang.e_license.b2")  # another batch's intent between
    assert protocol.commit_logged(hub, batch) == digest
    log(intent, {"pull.json": "2" * 64})
    assert protocol.commit_logged(hub, batch) is None


def test_a_lake_file_gone_right_after_its_commit_is_named_with_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The snapshot is committed but a file it names cannot be read back to hash: the batch cannot be signed, and
    # the operator must learn which file of which snapshot.
    gone = tmp_path / "main" / "e_license" / "gone.parquet"
    monkeypatch.setattr(protocol, "files_added", lambda con, snapshot_id, root: [
        DataFile("e_license", str(gone), "main/e_license/gone.parquet", 7, 900, "data")])
    with pytest.raises(TerminalError, match=f"lake file {gone} of snapshot 42 is missing right after its commit"):
        protocol.hashed_files(None, 42, str(tmp_path))  # type: ignore[arg-type]  # no catalog read: files_added is stubbed
