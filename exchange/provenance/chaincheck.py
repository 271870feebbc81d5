"""verify, part 1: the provenance chain, from the live log or from a chain of archives."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exchange.errors import VerificationError
from exchange.provenance.archive import (
    ArchiveContents,
    ArchiveHeader,
    check_archive,
    read_header,
)
from exchange.provenance.checkpoint import VerifiedState
from exchange.provenance.log import ChainVerifier, ProvenanceEntry, ProvenanceLog
from exchange.provenance.problems import Mismatch
from exchange.provenance.verify_result import ChainFacts, VerifyReport
from exchange.signing.trust import TrustBundle


def verify_log(
    log: ProvenanceLog, bundle: TrustBundle, report: VerifyReport, facts: ChainFacts,
    start: VerifiedState | None = None, chain: ChainVerifier | None = None,
) -> ChainVerifier:
    """Verify the log (from `start`'s checkpoint, if given, else from `chain`'s position: a truncated log
    starts after seq 1); after the first break, keep reading facts only. A log that now ends before that
    checkpoint was cut below it: named as the checkpoint gone."""
    chain = chain or ChainVerifier(bundle)
    resume = start if start is not None and start.checkpoint_seq else None
    offset, first_line = (resume.checkpoint_offset, resume.checkpoint_line) if resume else (0, 1)
    broken = reached = False
    for number, pos, raw in log.lines(offset, first_line):
        item = f"provenance entry {log.path.name}:{number}"
        if resume is not None and pos == resume.checkpoint_offset:
            # Resume: the checkpoint line must still be the one verified last time.
            reached, entry = True, _parse(raw)
            if entry is None or entry.seq != resume.checkpoint_seq or entry.entry_hash != resume.checkpoint_hash:
                report.problems.append(Mismatch(item, "the last verified checkpoint is gone or changed",
                                                expected=f"seq {resume.checkpoint_seq} {resume.checkpoint_hash}",
                                                found=f"seq {entry.seq} {entry.entry_hash}" if entry else "no entry"))
                broken = True
                continue
            chain = ChainVerifier(bundle, seq=entry.seq, head=entry.entry_hash)
            facts.observe(entry, pos, number)
            continue
        if broken:
            if (entry := _parse(raw)) is not None:
                facts.observe(entry, pos, number)
            continue
        try:
            entry = chain.feed(item, raw)
        except VerificationError as exc:
            report.problems.append(exc)
            broken = True
            if (late := _parse(raw)) is not None:
                facts.observe(late, pos, number)
            continue
        report.entries += 1
        facts.observe(entry, pos, number)
    if resume is not None and not reached:  # the log now ends before the checkpoint: cut below it
        report.problems.append(Mismatch(f"provenance entry {log.path.name}:{resume.checkpoint_line}",
                                        "the last verified checkpoint is gone or changed",
                                        expected=f"seq {resume.checkpoint_seq} {resume.checkpoint_hash}",
                                        found="no entry: the log ends before it"))
    return chain


def _parse(raw: bytes | str) -> ProvenanceEntry | None:
    try:
        return ProvenanceEntry.model_validate(json.loads(raw))
    except ValueError:
        return None


@dataclass
class LogCheck:
    """What verifying the live log and its archives found: where the chain ends, the archives' contents, and
    the seq the live log starts at (1 unless it was truncated)."""

    chain: ChainVerifier
    archives: list[ArchiveContents]
    first_seq: int


def verify_log_and_archives(
    log: ProvenanceLog, list_archives: Callable[[], list[Path]], bundle: TrustBundle, report: VerifyReport,
    facts: ChainFacts, start: VerifiedState | None = None, known: dict[str, str] | None = None,
) -> LogCheck:
    """The live log and the archives beside it, as one chain.

    An untruncated log holds every entry: it is verified on its own and each archive against it. A log
    truncated at archive k (its first entry is archive k's closing checkpoint) leaves entries only in
    archives 1..k: those are verified end to end as the chain (their facts feed the cross-checks), the log
    continues from that checkpoint, and archives after k are checked against the log as usual.
    """
    first = log.first()
    paths = list_archives()  # listed after reading the log's start: a truncation writes its archive first
    base = first.seq if first is not None and first.seq > 1 else 0
    if not base:
        chain = verify_log(log, bundle, report, facts, start)
        return LogCheck(chain, check_numbered_archives(paths, bundle, report, facts, known)[0], 1)
    assert first is not None
    headers = [_header_or_none(p) for p in paths]
    cut = max((i + 1 for i, h in enumerate(headers) if h is not None and h.first_seq <= base), default=0)
    contents, last = check_numbered_archives(paths[:cut], bundle, report, facts, known, chain_below=base)
    item = f"provenance log {log.path.name}"
    if last is None or last.last_seq != base:
        report.problems.append(Mismatch(item, f"starts at seq {base}, but no archive ends there (entries before it "
                                        "are lost)", expected=f"an archive ending at seq {base}",
                                        found=f"archives up to seq {last.last_seq}" if last else "no archive"))
    elif first.entry_hash != last.last_entry_hash:
        report.problems.append(Mismatch(item, f"its first entry (seq {base}) differs from the last entry of "
                                        f"archive {last.file_name()}", expected=last.last_entry_hash,
                                        found=first.entry_hash))
    if start is not None and start.log_first_seq != base:
        start = start.model_copy(update={"checkpoint_seq": 0})  # byte offsets from before a truncation are void
    resumed = start is not None and start.checkpoint_seq > 0
    chain = verify_log(log, bundle, report, facts, start, ChainVerifier(bundle, seq=base - 1, head=first.prev_hash))
    if last is not None and not resumed:
        _check_truncation_logged(item, base, last, facts, report)
    contents += check_numbered_archives(paths[cut:], bundle, report, facts, known, previous=last,
                                        first_number=cut + 1)[0]
    return LogCheck(chain, contents, base)


def _header_or_none(path: Path) -> ArchiveHeader | None:
    try:
        return read_header(path)
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError, VerificationError):
        return None


def _check_truncation_logged(
    item: str, base: int, last: ArchiveHeader, facts: ChainFacts, report: VerifyReport
) -> None:
    """A log cut at seq `base` carries a signed truncate entry naming the archive that holds what was cut."""
    logged = [t for t in facts.truncations if t.details.get("first_seq") == base]
    if not logged:
        report.problems.append(Mismatch(item, f"starts at seq {base} but no signed truncate entry records the cut",
                                        expected=f"a truncate entry naming {last.file_name()}", found="none"))
    elif logged[-1].digests.get("archive") != last.digest():
        report.problems.append(Mismatch(item, f"the truncate entry seq {logged[-1].seq} names another archive than "
                                        f"{last.file_name()}", expected=last.digest(),
                                        found=logged[-1].digests.get("archive")))


def check_numbered_archives(
    paths: list[Path], bundle: TrustBundle, report: VerifyReport, facts: ChainFacts,
    known: dict[str, str] | None = None, previous: ArchiveHeader | None = None, first_number: int = 1,
    *, chain_below: int | None = None,
) -> tuple[list[ArchiveContents], ArchiveHeader | None]:
    """Archives numbered from `first_number` without gaps, each signed and linked to the one before.

    Beside an untruncated log (`chain_below` None) each is checked on its own and against the live log.
    Before a log truncated at seq `chain_below`, their entries *are* the chain: carried across archives and
    counted (entries from `chain_below` on are read from the log). Returns what was read and the last header.
    """
    chained = chain_below is not None
    chain: ChainVerifier | None = None
    contents: list[ArchiveContents] = []
    for number, path in enumerate(paths, start=first_number):
        if not _numbered(path, number, report):
            previous, chain = None, None
            continue
        try:
            if known is not None:
                header = read_header(path)
                if known.get(path.name) == header.digest():
                    report.skipped["archives"] = report.skipped.get("archives", 0) + 1
                    previous, chain = header, _continuing(bundle, header) if chained else None
                    continue
            counter = _Counter(report, facts, below=chain_below) if chain_below is not None else None
            got = check_archive(path, bundle, previous, chain, counter)
        except VerificationError as exc:
            report.problems.append(exc)
            previous, chain = None, None
            continue
        report.archives += 1
        contents.append(got)
        previous = got.header
        if chained:
            chain = _continuing(bundle, got.header)
            continue
        logged = facts.hashes.get(got.header.last_seq)
        if logged is not None and logged != got.header.last_entry_hash:
            report.problems.append(Mismatch(f"provenance archive {path.name}", "differs from the live log",
                                            expected=logged, found=got.header.last_entry_hash))
    return contents, previous


def _continuing(bundle: TrustBundle, header: ArchiveHeader) -> ChainVerifier:
    """A chain verifier that expects the entry after `header`'s last."""
    return ChainVerifier(bundle, seq=header.last_seq, head=header.last_entry_hash)


def _numbered(path: Path, number: int, report: VerifyReport) -> bool:
    """Beside the live log every archive must be there, numbered from 1 without gaps."""
    try:
        segment = read_header(path).segment
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError, VerificationError):
        return True  # an unreadable archive is named by check_archive
    if segment != number:
        report.problems.append(Mismatch(f"provenance archive {path.name}", "archives missing before this one",
                                        expected=f"segment {number}", found=f"segment {segment}"))
        return False
    return True


def verify_archive_chain(
    paths: list[Path], bundle: TrustBundle, report: VerifyReport, facts: ChainFacts
) -> list[ArchiveContents]:
    """Offline without a log: the archives *are* the chain, verified end to end across archive boundaries."""
    previous: ArchiveHeader | None = None
    chain: ChainVerifier | None = None
    contents: list[ArchiveContents] = []
    for path in paths:
        counter = _Counter(report, facts)
        try:
            got = check_archive(path, bundle, previous, chain, counter)
        except VerificationError as exc:
            report.problems.append(exc)
            previous, chain = None, None
            continue
        if chain is None:
            if got.header.first_seq != 1:
                report.notes.append(f"{path.name} starts at seq {got.header.first_seq}: earlier entries are not "
                                    "in this copy and were not checked")
            chain = _continuing(bundle, got.header)
        report.archives += 1
        contents.append(got)
        previous = got.header
    return contents


@dataclass
class _Counter:
    report: VerifyReport
    facts: ChainFacts
    below: int = 0  # entries from this seq on are read from the live log instead

    def __call__(self, entry: ProvenanceEntry) -> None:
        if self.below and entry.seq >= self.below:
            return
        self.report.entries += 1
        self.facts.observe(entry)


