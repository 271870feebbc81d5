"""verify's part 1 (exchange/provenance/chaincheck.py) on a log without a lake: entries, archives, truncations.

An auditor relies on the chain check to name an edited, forged, reordered or cut provenance entry, an archive
missing, renamed or out of place, and a log cut without a signed truncate entry; and to count what it checked
(the counts go into the verdict). Each test builds a small log with the hub's key (no pipeline, no lake),
tampers with one thing, and runs the chain checks the way verify does (issue 21).
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exchange.provenance.archive import HEADER, archive_paths, read_header, truncate_to_archive, write_archive
from exchange.provenance.chaincheck import (
    LogCheck,
    check_numbered_archives,
    verify_archive_chain,
    verify_log,
    verify_log_and_archives,
)
from exchange.provenance.checkpoint import VerifiedState
from exchange.provenance.events import Query
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.problems import problem_json
from exchange.provenance.verify_result import ChainFacts, VerifyReport
from exchange.signing.canonical import canonical_bytes, sha256_hex
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

    def resumed_at(self, index: int, **extra: Any) -> VerifiedState:
        """What an earlier verify recorded when the log's entry `index` was its head and checkpoint."""
        entry = self.log.read()[index]
        offset = [pos for _, pos, _ in self.log.lines()][index]
        return VerifiedState(verified_at=entry.at, head_seq=entry.seq, head_hash=entry.entry_hash,
                             checkpoint_seq=entry.seq, checkpoint_hash=entry.entry_hash, checkpoint_offset=offset,
                             checkpoint_line=index + 1, **extra)

    def checked(self, start: VerifiedState | None = None,
                known: dict[str, str] | None = None) -> tuple[VerifyReport, ChainFacts, LogCheck]:
        report, facts = VerifyReport(), ChainFacts()
        got = verify_log_and_archives(self.log, lambda: self.archives, self.bundle, report, facts, start, known)
        return report, facts, got

    def known(self) -> dict[str, str]:
        """What an earlier verify recorded of the archives: their header digests by file name."""
        return {p.name: read_header(p).digest() for p in self.archives}


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
    assert [(e.seq, line) for e, _, line in facts.checkpoints] == [(4, 4), (7, 7)]  # where a resume starts
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
    assert len(report.problems) == 1  # the break is named once, not again at every entry after it
    assert report.entries == 1  # only the entry before the break counts as verified
    assert sorted(facts.hashes) == [4, 7]  # facts from after the break are still read for the cross-checks


def _resigned(chain: Chain, bodies: list[dict[str, object]]) -> None:
    """Write `bodies` as the live log, chained from the first one's prev_hash and signed with the hub's own key
    (the strongest forger: only what the hub cannot sign away is left to catch it)."""
    signer, out = chain.signer, []
    prev_seq, prev_hash = int(bodies[0]["seq"]) - 1, str(bodies[0]["prev_hash"])  # type: ignore[call-overload]
    for body in bodies:
        body = {**body, "seq": prev_seq + 1, "prev_hash": prev_hash}
        digest = sha256_hex(canonical_bytes(body))
        out.append(ProvenanceEntry.model_validate(
            {**body, "entry_hash": digest, "signature": signer.sign(digest.encode()).model_dump()}))
        prev_seq, prev_hash = prev_seq + 1, digest
    chain.log.path.write_text("".join(e.model_dump_json() + "\n" for e in out), encoding="utf-8")


def _bodies(chain: Chain) -> list[dict[str, object]]:
    return [e.body() for e in chain.log.read()]


def test_an_archive_missing_before_the_others_is_named_with_the_segment_expected(archived: Chain) -> None:
    first, second = archived.archives
    first.unlink()
    report, _, got = archived.checked()
    assert [problem_json(p) for p in report.problems] == [{
        "item": f"provenance archive {second.name}", "problem": "archives missing before this one",
        "expected": "segment 1", "found": "segment 2"}]
    assert got.archives == [] and report.archives == 0


def test_an_archive_after_a_gap_is_still_checked_against_the_one_after_it(archived: Chain) -> None:
    archived.query(2)
    third = archived.archive()
    archived.archives[1].unlink()
    report, _, got = archived.checked()
    assert [p.item for p in report.problems] == [f"provenance archive {third.name}"]
    assert report.problems[0].problem == "archives missing before this one"
    assert [c.header.segment for c in got.archives] == [1]


def test_every_archive_after_a_missing_one_is_named_not_only_the_first(archived: Chain) -> None:
    archived.query(2)
    third = archived.archive()
    first, second, _ = archived.archives
    first.unlink()
    report, _, got = archived.checked()
    assert [(p.item, p.problem) for p in report.problems] == [
        (f"provenance archive {second.name}", "archives missing before this one"),
        (f"provenance archive {third.name}", "archives missing before this one")]
    assert got.archives == []


def test_an_archive_that_differs_from_the_live_log_is_named(archived: Chain) -> None:
    # The live log's closing checkpoint of archive 1 (seq 4) rewritten with another hash: the log breaks there,
    # and the archive, which still holds the original, is named as differing from what the log says.
    forged = "f" * 64

    def edit(lines: list[str]) -> list[str]:
        entry = json.loads(lines[3])
        entry["entry_hash"] = forged
        return [*lines[:3], json.dumps(entry, ensure_ascii=False), *lines[4:]]

    original = read_header(archived.archives[0]).last_entry_hash
    _rewrite(archived, edit)
    report, _, _ = archived.checked()
    named = [problem_json(p) for p in report.problems if p.item == f"provenance archive {archived.archives[0].name}"]
    assert named == [{"item": f"provenance archive {archived.archives[0].name}",
                      "problem": "differs from the live log", "expected": forged, "found": original}]


def test_archives_verified_before_are_skipped_by_their_header_digest(archived: Chain) -> None:
    known = {p.name: read_header(p).digest() for p in archived.archives}
    report, facts = VerifyReport(), ChainFacts()
    contents, last = check_numbered_archives(archived.archives, archived.bundle, report, facts, known)
    assert contents == [] and report.skipped == {"archives": 2} and report.archives == 0
    assert last == read_header(archived.archives[1])
    # One whose header changed since is checked again, and the skipped one before it links it.
    known[archived.archives[1].name] = "0" * 64
    report = VerifyReport()
    contents, _ = check_numbered_archives(archived.archives, archived.bundle, report, facts, known)
    assert report.problems == [] and report.skipped == {"archives": 1} and report.archives == 1
    assert [c.header.segment for c in contents] == [2]


def test_a_resumed_verify_starts_at_the_checkpoint_and_reads_only_what_follows(archived: Chain) -> None:
    entries = archived.log.read()
    state = archived.resumed_at(6)  # archive 2's closing checkpoint, seq 7
    assert state.checkpoint_seq == 7
    report, facts = VerifyReport(), ChainFacts()
    chain = verify_log(archived.log, archived.bundle, report, facts, state)
    assert report.problems == [] and report.entries == 1  # seq 8 only
    assert (chain.seq, chain.head) == (8, entries[7].entry_hash)
    assert sorted(facts.hashes) == [7]  # the checkpoint itself is observed, not re-verified
    # where it is, so the next incremental verify can resume there again
    assert [(e.seq, offset, line) for e, offset, line in facts.checkpoints] == [(7, state.checkpoint_offset, 7)]

    changed = state.model_copy(update={"checkpoint_hash": "e" * 64})
    report = VerifyReport()
    verify_log(archived.log, archived.bundle, report, ChainFacts(), changed)
    assert [problem_json(p) for p in report.problems] == [{
        "item": "provenance entry log.jsonl:7", "problem": "the last verified checkpoint is gone or changed",
        "expected": f"seq 7 {'e' * 64}", "found": f"seq 7 {entries[6].entry_hash}"}]
    assert report.entries == 0


def test_a_resumed_verify_whose_checkpoint_line_is_no_entry_is_named(archived: Chain) -> None:
    state = archived.resumed_at(6)  # seq 7
    _rewrite(archived, lambda lines: [*lines[:6], "{not json", *lines[7:]])
    report = VerifyReport()
    verify_log(archived.log, archived.bundle, report, ChainFacts(), state)
    assert [problem_json(p) for p in report.problems] == [{
        "item": "provenance entry log.jsonl:7", "problem": "the last verified checkpoint is gone or changed",
        "expected": f"seq 7 {state.checkpoint_hash}", "found": "no entry"}]


def test_an_incremental_verify_skips_the_archives_it_verified_before(archived: Chain) -> None:
    report, _, got = archived.checked(known=archived.known())
    assert report.problems == [] and report.skipped == {"archives": 2} and report.archives == 0
    assert got.archives == [] and got.first_seq == 1


def test_a_log_cut_below_the_resumed_checkpoint_names_the_checkpoint_gone(archived: Chain) -> None:
    state = archived.resumed_at(6)  # seq 7, line 7
    _rewrite(archived, lambda lines: lines[:5])  # an insider cuts the tail: the log ends at seq 5
    report = VerifyReport()
    chain = verify_log(archived.log, archived.bundle, report, ChainFacts(), state)
    assert [problem_json(p) for p in report.problems] == [{
        "item": "provenance entry log.jsonl:7", "problem": "the last verified checkpoint is gone or changed",
        "expected": f"seq 7 {state.checkpoint_hash}", "found": "no entry: the log ends before it"}]
    assert report.entries == 0 and chain.seq == 0  # nothing verified in this run


# -- a truncated log and the archives that hold what was cut -------------------------------------------------


def test_a_log_cut_right_after_its_first_entry_verifies_with_its_archive(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "home")
    chain.query()
    chain.archive()  # seq 1 and its closing checkpoint, seq 2
    assert truncate_to_archive(chain.log, chain.signer) is not None
    report, _, got = chain.checked()
    assert report.problems == [] and got.first_seq == 2
    assert report.entries == 3 and report.archives == 1  # seq 1 from the archive, 2 and 3 (truncate) from the log


def test_an_incremental_verify_of_a_truncated_log_skips_the_archives_before_the_cut(truncated: Chain) -> None:
    report, _, got = truncated.checked(known=truncated.known())
    assert report.problems == [] and report.skipped == {"archives": 2} and report.archives == 0
    assert got.first_seq == 7


def test_a_truncated_log_and_its_archives_verify_as_one_chain_counting_each_entry_once(truncated: Chain) -> None:
    report, facts, got = truncated.checked()
    head = truncated.log.head()
    assert head is not None and report.problems == []
    assert got.first_seq == 7 and [c.header.segment for c in got.archives] == [1, 2]
    assert report.entries == head.seq == 10 and report.archives == 2
    assert (got.chain.seq, got.chain.head) == (head.seq, head.entry_hash)
    assert [t.seq for t in facts.truncations] == [9]


def test_a_truncated_log_whose_last_archive_is_gone_is_named_as_losing_entries(truncated: Chain) -> None:
    truncated.archives[1].unlink()
    report, _, _ = truncated.checked()
    assert problem_json(report.problems[0]) == {
        "item": "provenance log log.jsonl", "problem": "starts at seq 7, but no archive ends there (entries before "
        "it are lost)", "expected": "an archive ending at seq 7", "found": "archives up to seq 4"}


def test_a_truncated_log_without_any_archive_is_named(truncated: Chain) -> None:
    for path in truncated.archives:
        path.unlink()
    report, _, got = truncated.checked()
    assert [problem_json(p) for p in report.problems] == [{
        "item": "provenance log log.jsonl", "problem": "starts at seq 7, but no archive ends there (entries before "
        "it are lost)", "expected": "an archive ending at seq 7", "found": "no archive"}]
    assert got.archives == [] and report.entries == 4  # seq 7 to 10, from the log


def test_a_truncated_log_whose_first_entry_is_not_the_archives_last_is_named(truncated: Chain) -> None:
    last = read_header(truncated.archives[1])
    bodies = _bodies(truncated)
    bodies[0] = {**bodies[0], "actor": "someone.else"}  # the kept checkpoint, re-signed by the hub's key
    _resigned(truncated, bodies)
    report, _, _ = truncated.checked()
    first = truncated.log.first()
    assert first is not None
    assert problem_json(report.problems[0]) == {
        "item": "provenance log log.jsonl",
        "problem": f"its first entry (seq 7) differs from the last entry of archive {last.file_name()}",
        "expected": last.last_entry_hash, "found": first.entry_hash}
    assert len(report.problems) == 1  # the archives before the cut are the chain, not compared with the log again


def test_a_cut_without_its_signed_truncate_entry_is_named(truncated: Chain) -> None:
    bodies = _bodies(truncated)
    _resigned(truncated, [b for b in bodies if b["action"] != "truncate"])
    report, _, _ = truncated.checked()
    last = read_header(truncated.archives[1])
    assert [problem_json(p) for p in report.problems] == [{
        "item": "provenance log log.jsonl", "problem": "starts at seq 7 but no signed truncate entry records the cut",
        "expected": f"a truncate entry naming {last.file_name()}", "found": "none"}]


def test_a_truncate_entry_naming_another_archive_is_named(truncated: Chain) -> None:
    bodies = _bodies(truncated)
    cut = next(i for i, b in enumerate(bodies) if b["action"] == "truncate")
    bodies[cut] = {**bodies[cut], "digests": {**bodies[cut]["digests"], "archive": "a" * 64}}  # type: ignore[dict-item]
    _resigned(truncated, bodies)
    report, _, _ = truncated.checked()
    last = read_header(truncated.archives[1])
    assert [problem_json(p) for p in report.problems] == [{
        "item": "provenance log log.jsonl",
        "problem": f"the truncate entry seq 9 names another archive than {last.file_name()}",
        "expected": last.digest(), "found": "a" * 64}]


def test_a_truncate_entry_for_another_cut_does_not_record_this_one(truncated: Chain) -> None:
    bodies = _bodies(truncated)
    cut = next(i for i, b in enumerate(bodies) if b["action"] == "truncate")
    bodies[cut] = {**bodies[cut], "details": {**bodies[cut]["details"], "first_seq": 4}}  # type: ignore[dict-item]
    _resigned(truncated, bodies)
    report, _, _ = truncated.checked()
    assert [p.problem for p in report.problems] == ["starts at seq 7 but no signed truncate entry records the cut"]


def test_an_archive_added_after_the_cut_is_checked_against_the_log(truncated: Chain) -> None:
    truncated.query()
    third = truncated.archive()
    report, facts, got = truncated.checked()
    assert report.problems == [] and [c.header.segment for c in got.archives] == [1, 2, 3]
    assert report.archives == 3 and report.entries == truncated.log.head().seq  # type: ignore[union-attr]
    # its closing checkpoint edited in the live log: the archive is named as differing from the log
    header = read_header(third)

    def edit(lines: list[str]) -> list[str]:
        entry = json.loads(lines[-1])
        entry["entry_hash"] = "f" * 64
        return [*lines[:-1], json.dumps(entry, ensure_ascii=False)]

    _rewrite(truncated, edit)
    report, _, _ = truncated.checked()
    assert {"item": f"provenance archive {third.name}", "problem": "differs from the live log",
            "expected": "f" * 64, "found": header.last_entry_hash} in [problem_json(p) for p in report.problems]


def test_an_archive_after_the_cut_links_to_the_one_before_and_is_skipped_once_verified(truncated: Chain) -> None:
    truncated.query()
    third = truncated.archive()
    report, _, _ = truncated.checked(known=truncated.known())
    assert report.problems == [] and report.skipped == {"archives": 3} and report.archives == 0
    # re-signed with the hub's key to link elsewhere: its entries still match the log, only the link tells
    moved = _relinked(truncated, third, prev_archive="0" * 64)
    report, _, _ = truncated.checked()
    assert [(p.item, p.problem) for p in report.problems] == [
        (f"provenance archive {moved.name}", "does not link to the previous archive (one missing, replaced or "
         "reordered?)")]

def test_an_incremental_verify_after_a_new_cut_rereads_the_log_from_its_start(truncated: Chain) -> None:
    # Byte offsets recorded before the log was cut at seq 7 point nowhere now: verify reads the whole tail.
    entries = truncated.log.read()
    stale = VerifiedState(verified_at=entries[0].at, head_seq=4, head_hash="0" * 64, checkpoint_seq=4,
                          checkpoint_hash="0" * 64, checkpoint_offset=0, checkpoint_line=1, log_first_seq=1)
    report, _, got = truncated.checked(stale)
    assert report.problems == [] and got.first_seq == 7
    assert report.entries == 10


def test_an_incremental_verify_of_the_same_cut_resumes_at_its_checkpoint(truncated: Chain) -> None:
    state = truncated.resumed_at(0, log_first_seq=7)
    assert state.checkpoint_seq == 7  # the cut log's first entry
    report, _, got = truncated.checked(state)
    assert report.problems == [] and got.first_seq == 7
    # resumed: the truncate entry's check is not repeated, and only what follows the checkpoint is read
    assert report.entries == 6 + 3
    # a checkpoint changed since: named, and what follows still feeds the facts (the store checks' cross-links)
    changed = state.model_copy(update={"checkpoint_hash": "e" * 64})
    report, facts, _ = truncated.checked(changed)
    assert [p.problem for p in report.problems] == ["the last verified checkpoint is gone or changed"]
    assert [t.seq for t in facts.truncations] == [9]
    # ... also when the checkpoint lies after the truncate entry, which this verify therefore does not read
    report, facts, _ = truncated.checked(truncated.resumed_at(3, log_first_seq=7))
    assert report.problems == [] and facts.truncations == []


def test_an_incremental_verify_after_a_new_cut_checks_the_cut_was_logged(truncated: Chain) -> None:
    # The state recorded before the cut cannot vouch for it: the truncate entry is looked for as in a full verify.
    _resigned(truncated, [b for b in _bodies(truncated) if b["action"] != "truncate"])
    entries = truncated.log.read()
    stale = VerifiedState(verified_at=entries[0].at, head_seq=4, head_hash="0" * 64, checkpoint_seq=4,
                          checkpoint_hash="0" * 64, checkpoint_offset=0, checkpoint_line=1, log_first_seq=1)
    report, _, _ = truncated.checked(stale)
    assert [p.problem for p in report.problems] == ["starts at seq 7 but no signed truncate entry records the cut"]


# -- offline: the archives are the chain --------------------------------------------------------------------


def test_offline_archives_verify_end_to_end(archived: Chain) -> None:
    report, facts = VerifyReport(), ChainFacts()
    contents = verify_archive_chain(archived.archives, archived.bundle, report, facts)
    assert report.problems == [] and report.notes == []
    assert [c.header.segment for c in contents] == [1, 2] and report.archives == 2 and report.entries == 7
    assert sorted(facts.hashes) == [4, 7]


def test_offline_a_copy_starting_at_a_later_archive_says_what_was_not_checked(archived: Chain) -> None:
    second = archived.archives[1]
    report = VerifyReport()
    contents = verify_archive_chain([second], archived.bundle, report, ChainFacts())
    assert report.problems == [] and len(contents) == 1 and report.entries == 3
    assert report.notes == [f"{second.name} starts at seq 5: earlier entries are not in this copy and were not "
                            "checked"]


def test_offline_a_broken_archive_is_named_and_the_next_checked_on_its_own(archived: Chain) -> None:
    first, second = archived.archives
    first.write_bytes(first.read_bytes()[:2048])
    report = VerifyReport()
    contents = verify_archive_chain([first, second], archived.bundle, report, ChainFacts())
    assert [p.item for p in report.problems] == [f"provenance archive {first.name}"]
    assert [c.header.segment for c in contents] == [2] and report.archives == 1
    assert report.notes == [f"{second.name} starts at seq 5: earlier entries are not in this copy and were not "
                            "checked"]


def _relinked(chain: Chain, path: Path, **changes: object) -> Path:
    """Archive `path` with its signed header changed and signed again with the hub's own key, under the name
    the new header gives it (the entries are untouched: they still chain)."""
    header = read_header(path)
    forged = header.model_copy(update=changes)
    forged = forged.model_copy(update={"signature": chain.signer.sign(forged.signed_bytes())})
    target = path.with_name(forged.file_name())
    staged = target.with_suffix(".new")
    with tarfile.open(path, "r:") as old, tarfile.open(staged, "w:", format=tarfile.PAX_FORMAT) as new:
        for member in old.getmembers():
            if member.name == HEADER:
                data = forged.model_dump_json(indent=2).encode()
                member.size = len(data)
                new.addfile(member, io.BytesIO(data))
            else:
                new.addfile(member, old.extractfile(member))
    path.unlink()
    staged.rename(target)
    return target


def test_offline_an_archive_re_signed_to_link_elsewhere_is_named(archived: Chain) -> None:
    # The hub's key can re-sign a header, but not make it link to the archive before it: the entries still
    # chain across the two archives, so only the link between the headers tells.
    first, second = archived.archives
    moved = _relinked(archived, second, prev_archive="0" * 64)
    report = VerifyReport()
    contents = verify_archive_chain([first, moved], archived.bundle, report, ChainFacts())
    assert [(p.item, p.problem) for p in report.problems] == [
        (f"provenance archive {moved.name}", "does not link to the previous archive (one missing, replaced or "
         "reordered?)")]
    assert [c.header.segment for c in contents] == [1]


def test_an_unreadable_archive_beside_the_log_is_named_and_the_next_still_checked(archived: Chain) -> None:
    first, second = archived.archives
    first.write_bytes(first.read_bytes()[:2048])
    report, _, got = archived.checked()
    assert [p.item for p in report.problems] == [f"provenance archive {first.name}"]
    assert report.problems[0].problem.startswith("archive is truncated or unreadable: ")
    assert [c.header.segment for c in got.archives] == [2] and report.archives == 1
