"""verify, the accounting: everything the log says was recorded must still be there.

Each check reads what the chain recorded (ChainFacts) and names what is gone or changed: a committed batch
without its manifest (a batch rolled away), an archive segment a checkpoint closed but no archive holds, a
published extract whose folder is gone, an office rejection report whose file is missing or edited, and the
verifier's own signed record deleted or replayed from before a checkpoint that names a later verify.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from exchange.errors import VerificationError
from exchange.provenance.checkpoint import STATE_FILE, VerifiedState
from exchange.provenance.problems import Mismatch
from exchange.provenance.verify_result import ChainFacts
from exchange.signing.canonical import file_sha256

REPORT_SUFFIXES = (".rejections.csv", ".rejections.html", ".summary.json")


def report_digests(reports: Path, province: str, batch_id: str) -> dict[str, str]:
    """The digests a validate entry carries for a batch's office report files, keyed `<province>/<file>`."""
    found: dict[str, str] = {}
    for suffix in REPORT_SUFFIXES:
        path = reports / province / f"{batch_id}{suffix}"
        if path.is_file():
            found[f"{province}/{path.name}"] = file_sha256(path)
    return found


def committed_without_manifest(facts: ChainFacts, listed: Iterable[str], head: int | None) -> list[VerificationError]:
    """Every signed commit entry must still have its manifest (and its snapshot in the lake)."""
    have = set(listed)
    problems: list[VerificationError] = []
    for batch, entry in facts.commits.items():
        if batch in have:
            continue
        snapshot = entry.details.get("snapshot_id")
        gone = f"; its snapshot {snapshot} is not in the lake either" if isinstance(snapshot, int) and (
            head is None or snapshot > head) else ""
        problems.append(Mismatch(f"batch {batch}", f"committed (provenance seq {entry.seq}) but its signed "
                                 f"manifest is missing (batch rolled away?){gone}",
                                 expected=str(entry.details.get("manifest", "a manifest")), found="no manifest"))
    return problems


def missing_archives(facts: ChainFacts, archives: int) -> list[VerificationError]:
    """Every archive segment a checkpoint closed must be among the archives (numbered 1..n without gaps)."""
    # A crash between the closing checkpoint and the archive file leaves the same picture: the next
    # `exchange provenance archive` writes the segment; until then the gap is named, never passed.
    return [Mismatch(f"provenance archive segment {segment}", f"missing: checkpoint seq {seq} closed it (deleted, "
                     "or an archive run stopped before writing it: `exchange provenance archive` writes it)",
                     expected=f"archive segment {segment}", found=f"{archives} archives")
            for segment, seq in sorted(facts.archive_segments.items()) if segment > archives]


def missing_extracts(facts: ChainFacts, seen: set[str]) -> list[VerificationError]:
    """Every extract the log recorded (by its manifest digest) must still be published."""
    return [Mismatch(f"extract {entry.subject}", f"recorded (provenance seq {entry.seq}) but its folder or "
                     "manifest is missing", expected=digest, found="no extract")
            for digest, entry in facts.extract_entries.items() if digest not in seen]


def office_reports(facts: ChainFacts, reports: Path) -> list[VerificationError]:
    """Every office rejection report file a validate entry recorded is there and unchanged."""
    problems: list[VerificationError] = []
    for batch, entry in facts.validations.items():
        for key, digest in entry.digests.items():
            if key == "contract":
                continue
            path = reports / key
            item = f"office report reports/{key}"
            if not path.is_file():
                problems.append(Mismatch(item, f"missing (recorded for batch {batch} at seq {entry.seq})",
                                         expected=digest, found="no file"))
                continue
            found = file_sha256(path)
            if found != digest:
                problems.append(Mismatch(item, f"SHA-256 mismatch: edited after it was recorded for batch {batch}",
                                         expected=digest, found=found))
    return problems


def verified_record(facts: ChainFacts, previous: VerifiedState | None) -> list[VerificationError]:
    """The verifier's signed record must not be older than the newest verify a checkpoint names."""
    item = f"provenance/{STATE_FILE} (the last verify's record)"
    if not facts.verified_seq:
        return []
    if previous is None:
        return [Mismatch(item, "missing, though a signed checkpoint records a verify", expected=f"a record of a verify "
                         f"up to seq >= {facts.verified_seq}", found="no signed record")]
    if previous.head_seq < facts.verified_seq:
        return [Mismatch(item, "an older record replayed: a signed checkpoint records a later verify",
                         expected=f"head seq >= {facts.verified_seq}", found=f"head seq {previous.head_seq}")]
    return []
