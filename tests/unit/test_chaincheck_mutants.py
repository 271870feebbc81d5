"""verify's part 1 (exchange/provenance/chaincheck.py) on a log without a lake: entries, archives, truncations.

An auditor relies on the chain check to name an edited, forged, reordered or cut provenance entry, an archive
missing, renamed or out of place, and a log cut without a signed truncate entry; and to count what it checked
(the counts go into the verdict). Each test builds a small log with the hub's key (no pipeline, no lake),
tampers with one thing, and runs the chain checks the way verify does (issue 21).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange.provenance.archive import archive_paths, read_header, truncate_to_archive, write_archive
from exchange.provenance.chaincheck import (
    LogCheck,
    check_numbered_archives,
    verify_archive_chain,
    verify_log,
    verify_log_and_archives,
)
from exchange.provenance.checkpoint import VerifiedState
from exchange.provenance.events import Checkpoint, Query
from exchange.provenance.log import ChainVerifier, ProvenanceLog
from exchange.provenance.problems import problem_json
from exchange.provenance.verify_result import ChainFacts, VerifyReport
from exchange.signing.keyring import Keyring
from exchange.signing.signers import Signer
from exchange.signing.trust import TrustBundle
from tests.unit.sample_events import H


@dataclass
class Chain:
    """A hub's provenance folder and its key, as verify sees them."""

    home: Path

    @property
    def log(self) -> ProvenanceLog:
        return ProvenanceLog(self.home / "provenance")

    @property
    def signer(self) -> Signer:
        return Keyring(self.home / "keys").signer()

    @property
    def bundle(self) -> TrustBundle:
        return Keyring(self.home / "keys").trust_bundle()

    @property
    def archives(self) -> list[Path]:
        return archive_paths(self.home / "provenance" / "archives")

    def query(self, n: int = 1) -> None:
        for _ in range(n):
            self.log.append(self.signer, Query(token_id=None, grants={}, snapshot_id=1, columns=[], rows=0),
                            actor="js.public_security", subject="e_license", digests={"sql": H, "result": H})

    def archive(self) -> Path:
        path = write_archive(self.log, self.signer, self.home, lake_snapshot=None, manifests=0)
        assert path is not None
        return path

    def checked(self, start: VerifiedState | None = None) -> tuple[VerifyReport, ChainFacts, LogCheck]:
        report, facts = VerifyReport(), ChainFacts()
        got = verify_log_and_archives(self.log, lambda: self.archives, self.bundle, report, facts, start)
        return report, facts, got


def _copy(built: Path, tmp_path: Path) -> Chain:
    shutil.copytree(built, tmp_path / "home", symlinks=True)
    return Chain(tmp_path / "home")


@pytest.fixture(scope="module")
def built_archived(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 queries, archive 1 (closing checkpoint seq 4), 2 queries, archive 2 (seq 7), 1 query: 8 entries."""
    chain = Chain(tmp_path_factory.mktemp("chain") / "home")
    chain.query(3)
    chain.archive()
    chain.query(2)
    chain.archive()
    chain.query()
    return chain.home


@pytest.fixture(scope="module")
def built_truncated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As built_archived, but the log truncated at archive 2: it starts at seq 7 (the closing checkpoint), then
    the truncate entry (seq 9) and one more query."""
    chain = Chain(tmp_path_factory.mktemp("chain") / "home")
    chain.query(3)
    chain.archive()
    chain.query(2)
    chain.archive()
    chain.query()
    assert truncate_to_archive(chain.log, chain.signer) is not None
    chain.query()
    return chain.home


@pytest.fixture
def archived(built_archived: Path, tmp_path: Path) -> Chain:
    return _copy(built_archived, tmp_path)


@pytest.fixture
def truncated(built_truncated: Path, tmp_path: Path) -> Chain:
    return _copy(built_truncated, tmp_path)


def _lines(chain: Chain) -> list[str]:
    return chain.log.path.read_text(encoding="utf-8").splitlines()


def _rewrite(chain: Chain, edit: Callable[[list[str]], list[str]]) -> None:
    chain.log.path.write_text("".join(line + "\n" for line in edit(_lines(chain))), encoding="utf-8")


def _named(report: VerifyReport) -> list[tuple[str, str]]:
    return [(p.item, p.problem) for p in report.problems]


# -- an untruncated log and its archives -------------------------------------------------------------------


def test_an_untouched_log_and_its_archives_verify_and_are_counted(archived: Chain) -> None:
    report, facts, got = archived.checked()
    assert report.problems == [] and report.notes == []
    assert (report.entries, report.archives, got.first_seq) == (8, 2, 1)
    assert [c.header.segment for c in got.archives] == [1, 2]
    assert (got.chain.seq, got.chain.head) == (8, archived.log.head().entry_hash)  # type: ignore[union-attr]
    assert sorted(facts.hashes) == [4, 7]  # the closing checkpoints, for the archives' cross-check


def test_an_edited_entry_is_named_and_later_entries_still_feed_the_facts(archived: Chain) -> None:
    def edit(lines: list[str]) -> list[str]:
        entry = json.loads(lines[1])
        entry["actor"] = "someone.else"
        return [lines[0], json.dumps(entry, ensure_ascii=False), *lines[2:]]

    _rewrite(archived, edit)
    report, facts, _ = archived.checked()
    assert _named(report)[0][0].startswith("provenance entry log.jsonl:2 ")
    assert report.entries == 1  # only the entry before the break counts as verified
    assert sorted(facts.hashes) == [4, 7]  # facts from after the break are still read for the cross-checks
