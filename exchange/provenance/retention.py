"""Retention of the access records: nothing younger than three years is pruned.

Under the Network Data Security Management Regulations (网络数据安全管理条例, Art. 12) records of providing
personal or important data are kept at least three years. The hub's access records are its provenance log:
the live log and, after a truncation, the signed archives that hold what the live log dropped
(exchange/provenance/archive.py). The hub itself never deletes either. This module is the policy any
pruning of archives must pass (:func:`require_prunable`), and what `exchange retention show` reports.

An archive is dated by when it was written (``created_at``), which is no earlier than any entry it holds, so
keeping it three years from then keeps every entry in it at least three years.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from exchange.errors import Refused
from exchange.provenance.archive import ArchiveHeader, archive_paths, read_header

RETENTION_YEARS = 3


def keep_until(written: datetime) -> datetime:
    """The first instant an archive written at `written` may be pruned (29 February rolls on to 1 March)."""
    try:
        return written.replace(year=written.year + RETENTION_YEARS)
    except ValueError:
        return written.replace(year=written.year + RETENTION_YEARS, month=3, day=1)


class RetentionRefused(Refused):
    """Pruning records younger than the retention period."""


def require_prunable(name: str, header: ArchiveHeader, now: datetime) -> None:
    """Raise RetentionRefused unless the archive is past its retention period at `now`."""
    until = keep_until(header.created_at)
    if now < until:
        raise RetentionRefused(f"{name} holds access records (seq {header.first_seq}..{header.last_seq}) written "
                               f"{header.created_at:%Y-%m-%d}; they are kept until {until:%Y-%m-%d} (at least "
                               f"{RETENTION_YEARS} years, 网络数据安全管理条例 Art. 12) and may not be pruned before")


@dataclass(frozen=True)
class Retention:
    """One archive's retention."""

    path: Path
    first_seq: int
    last_seq: int
    written: datetime
    keep_until: datetime
    prunable: bool


def retention_plan(provenance_dir: Path, now: datetime) -> list[Retention]:
    """Every archive, when it was written, until when it must be kept, and whether it may be pruned at `now`."""
    plan = []
    for path in archive_paths(provenance_dir / "archives"):
        header = read_header(path)
        until = keep_until(header.created_at)
        plan.append(Retention(path, header.first_seq, header.last_seq, header.created_at, until, now >= until))
    return plan
