"""What a verify run found (VerifyReport) and what the chain told it (ChainFacts)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from exchange.errors import VerificationError
from exchange.provenance.events import Kind
from exchange.provenance.log import ProvenanceEntry
from exchange.provenance.problems import Mismatch, problem_json
from exchange.provenance.witness import WitnessedHead


@dataclass
class VerifyReport:
    """What verify checked and what it found broken (in the order found)."""

    entries: int = 0
    manifests: int = 0
    files: int = 0
    extracts: int = 0
    problems: list[VerificationError] = field(default_factory=list)
    archives: int = 0
    landing: int = 0
    mode: str = "full"
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    witnessed: WitnessedHead | None = None  # the newest head parties other than the hub countersigned
    interrupted: list[VerificationError] = field(default_factory=list)
    anchor: str | None = None  # the pinned hub key ids the trust bundle chained from, and their source
    unpinned: list[str] = field(default_factory=list)  # no anchor was pinned: the root key ids to pin

    @property
    def ok(self) -> bool:
        """True when nothing is broken and the trust bundle was checked against a pinned anchor."""
        return not self.problems and not self.unpinned

    @property
    def recoverable(self) -> bool:
        """Every problem is what an interrupted commit or write leaves (a signed intent names it): `exchange
        recover` (or the next stage) settles it. Nothing points at tampering."""
        return bool(self.problems) and all(any(p is i for i in self.interrupted) for p in self.problems)

    @property
    def verdict(self) -> str:
        """intact, INTERRUPTED (recoverable: run `exchange recover`), BROKEN (tampered or damaged), or UNANCHORED
        (nothing found broken, but the trust bundle vouched only for itself)."""
        if self.problems:
            return "INTERRUPTED" if self.recoverable else "BROKEN"
        return "UNANCHORED" if self.unpinned else "intact"

    def counts(self) -> dict[str, int]:
        """What was checked, by kind."""
        return {"entries": self.entries, "archives": self.archives, "manifests": self.manifests,
                "lake_files": self.files, "landing_files": self.landing, "extracts": self.extracts}

    def summary(self) -> str:
        """One line: the verdict and the counts."""
        text = (f"{self.verdict}: {self.entries} provenance entries, {self.manifests} manifests, "
                f"{self.files} lake files, {self.extracts} extracts")
        if self.archives:
            text += f", {self.archives} archives"
        if self.witnessed is not None:
            text += f"; latest witnessed head {self.witnessed.describe()}"
        if self.mode == "incremental":
            already = ", ".join(f"{v} {k}" for k, v in self.skipped.items() if v)
            text += f" (incremental; already verified: {already or 'nothing'})"
        return text

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result of `exchange verify --json`."""
        return {
            "verdict": self.verdict,
            "ok": self.ok,
            "recoverable": self.recoverable,
            "mode": self.mode,
            "counts": self.counts(),
            "skipped": self.skipped,
            "first_problem": problem_json(self.problems[0]) if self.problems else None,
            "problems": [problem_json(p) for p in self.problems],
            "notes": self.notes,
            "witnessed": None if self.witnessed is None else {
                "seq": self.witnessed.seq, "time": self.witnessed.time, "witnesses": self.witnessed.witnesses},
            "anchor": self.anchor,
            "unpinned_root_keys": self.unpinned,
        }


@dataclass
class ChainFacts:
    """What the provenance chain says, gathered while it is verified, for the cross-checks."""

    commits: dict[str, ProvenanceEntry] = field(default_factory=dict)
    pulls: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    extracts: set[str] = field(default_factory=set)
    hashes: dict[int, str] = field(default_factory=dict)
    checkpoints: list[tuple[ProvenanceEntry, int, int]] = field(default_factory=list)
    watch: set[int] = field(default_factory=set)
    lake_floor: int | None = None
    replays: dict[str, ProvenanceEntry] = field(default_factory=dict)
    truncations: list[ProvenanceEntry] = field(default_factory=list)
    witnesses: list[ProvenanceEntry] = field(default_factory=list)
    verified_seq: int = 0  # the newest head a checkpoint says a recorded verify covered
    archive_segments: dict[int, int] = field(default_factory=dict)  # segment -> seq of its closing checkpoint
    extract_entries: dict[str, ProvenanceEntry] = field(default_factory=dict)  # extract manifest digest -> entry
    validations: dict[str, ProvenanceEntry] = field(default_factory=dict)  # batch -> its last validate entry
    _previous: tuple[int, str] = (0, "")
    intents: set[str] = field(default_factory=set)
    left: dict[str, str] = field(default_factory=dict)  # lake file recovery could not delete -> its batch

    def observe(self, entry: ProvenanceEntry, offset: int = -1, line: int = -1) -> None:
        """Remember what later checks need from this entry (small: digests and ids, not the entry stream)."""
        if entry.action == Kind.COMMIT:
            self.commits[entry.subject] = entry
        elif entry.action == Kind.COMMIT_INTENT:
            self.intents.add(entry.subject)
        elif entry.action == Kind.RECOVERED:
            self.left.update(dict.fromkeys(entry.details.get("left", []), entry.subject))
        elif entry.action == Kind.PULL:
            self.pulls.setdefault(entry.subject, []).append(entry.digests)
        elif entry.action == Kind.REPLAY:
            self.replays[entry.subject] = entry  # a replay retried after a crash logs again: the last one counts
        elif entry.action == Kind.TRUNCATE:
            self.truncations.append(entry)
        elif entry.action == Kind.EXTRACT and "extract_manifest" in entry.digests:
            self.extracts.add(entry.digests["extract_manifest"])
            self.extract_entries[entry.digests["extract_manifest"]] = entry
        elif entry.action == Kind.VALIDATE:
            self.validations[entry.subject] = entry  # a retried validate rewrites the reports: the last counts
        elif entry.action == Kind.WITNESS:
            self.witnesses.append(entry)
            if self._previous[0] == entry.details.get("head_seq"):  # the usual case: the head just before
                self.hashes[self._previous[0]] = self._previous[1]
        elif entry.action == Kind.CHECKPOINT:
            self.hashes[entry.seq] = entry.entry_hash
            self.checkpoints.append((entry, offset, line))
            snap = entry.details.get("lake_snapshot")
            if isinstance(snap, int):
                self.lake_floor = max(self.lake_floor or snap, snap)
            verified = entry.details.get("verified_seq")
            if isinstance(verified, int):
                self.verified_seq = max(self.verified_seq, verified)
            segment = entry.details.get("archive_segment")
            if isinstance(segment, int):
                self.archive_segments[segment] = entry.seq
        if entry.seq in self.watch:
            self.hashes[entry.seq] = entry.entry_hash
        self._previous = (entry.seq, entry.entry_hash)


def check(report: VerifyReport, fn: Callable[[], None]) -> None:
    """Run one check; a VerificationError becomes a reported problem and verify carries on."""
    try:
        fn()
    except VerificationError as exc:
        report.problems.append(exc)


@contextmanager
def unreadable_as_problem(report: VerifyReport, item: str) -> Iterator[None]:
    """Whatever a check did not foresee (a malformed file, a DuckDB read error, a full disk) ends verify as a
    problem naming `item`, so there is always a verdict, and it is BROKEN, never a traceback or "intact"."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - verify's promise is a verdict; the problem carries the error
        report.problems.append(Mismatch(item, f"verify could not read it: {type(exc).__name__}: "
                                        f"{' '.join(str(exc).split())}", expected="a readable file",
                                        found="unreadable"))
