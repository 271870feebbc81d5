"""verify, part 1: the provenance chain, from the live log or from a chain of archives."""

from __future__ import annotations

import json
import tarfile
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
from exchange.signing.keys import TrustBundle


def verify_log(
    log: ProvenanceLog, bundle: TrustBundle, report: VerifyReport, facts: ChainFacts,
    start: VerifiedState | None = None,
) -> ChainVerifier:
    """Verify the log (from `start`'s checkpoint, if given); after the first break, keep reading facts only."""
    chain = ChainVerifier(bundle)
    offset, first_line = 0, 1
    if start is not None and start.checkpoint_seq:
        chain = ChainVerifier(bundle, seq=start.checkpoint_seq - 1)
        offset, first_line = start.checkpoint_offset, start.checkpoint_line
    broken = False
    for number, pos, raw in log.lines(offset, first_line):
        item = f"provenance entry {log.path.name}:{number}"
        if start is not None and start.checkpoint_seq and pos == start.checkpoint_offset:
            # Resume: the checkpoint line must still be the one verified last time.
            entry = _parse(raw)
            if entry is None or entry.seq != start.checkpoint_seq or entry.entry_hash != start.checkpoint_hash:
                report.problems.append(Mismatch(item, "the last verified checkpoint is gone or changed",
                                                expected=f"seq {start.checkpoint_seq} {start.checkpoint_hash}",
                                                found=f"seq {entry.seq} {entry.entry_hash}" if entry else "no entry"))
                broken = True
                continue
            chain.seq, chain.head = entry.seq, entry.entry_hash
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
    return chain


def _parse(raw: bytes | str) -> ProvenanceEntry | None:
    try:
        return ProvenanceEntry.model_validate(json.loads(raw))
    except ValueError:
        return None


def verify_archives_against_log(
    paths: list[Path], bundle: TrustBundle, report: VerifyReport, facts: ChainFacts,
    known: dict[str, str] | None = None,
) -> list[ArchiveContents]:
    """Each archive on its own (signed header, links, its entries' chain) and against the live log."""
    previous: ArchiveHeader | None = None
    contents: list[ArchiveContents] = []
    for number, path in enumerate(paths, start=1):
        if not _numbered(path, number, report):
            previous = None
            continue
        try:
            if known is not None:
                header = read_header(path)
                if known.get(path.name) == header.digest():
                    report.skipped["archives"] = report.skipped.get("archives", 0) + 1
                    previous = header
                    continue
            got = check_archive(path, bundle, previous)
        except VerificationError as exc:
            report.problems.append(exc)
            previous = None
            continue
        report.archives += 1
        contents.append(got)
        previous = got.header
        logged = facts.hashes.get(got.header.last_seq)
        if logged is not None and logged != got.header.last_entry_hash:
            report.problems.append(Mismatch(f"provenance archive {path.name}", "differs from the live log",
                                            expected=logged, found=got.header.last_entry_hash))
    return contents


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
            chain = ChainVerifier(bundle, seq=got.header.last_seq, head=got.header.last_entry_hash)
        report.archives += 1
        contents.append(got)
        previous = got.header
    return contents


@dataclass
class _Counter:
    report: VerifyReport
    facts: ChainFacts

    def __call__(self, entry: ProvenanceEntry) -> None:
        self.report.entries += 1
        self.facts.observe(entry)


