"""Targets, ratios and the rich tables every scenario prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.harness import Measurement


@dataclass
class Target:
    """One target from issue 8: `value` compared with `limit` (``at_most`` or ``at_least``)."""

    name: str
    value: float | None
    limit: float
    at_most: bool = True
    note: str = ""

    @property
    def passed(self) -> bool | None:
        """True/False, or None when the value could not be measured."""
        if self.value is None:
            return None
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def to_json(self) -> dict[str, Any]:
        """Plain dict including the verdict."""
        return {**asdict(self), "passed": self.passed}


def ratio(a: float, b: float) -> float | None:
    """a / b, or None if b is zero."""
    return round(a / b, 3) if b > 0 else None


def contenders_table(title: str, measurements: list[Measurement], records: int) -> Table:
    """Time, seconds per million records, peak RSS and notes of each contender."""
    table = Table(title=title)
    for col in ("contender", "seconds", "s / 1M rec", "peak RSS MB", "rows", "notes"):
        table.add_column(col, justify="left" if col in ("contender", "notes") else "right")
    for m in measurements:
        per_m = m.seconds / records * 1e6 if records else 0.0
        notes = []
        if m.extrapolated:
            notes.append(f"EXTRAPOLATED linearly from {m.sample_rows} rows")
        for key in ("stages", "phases"):
            if key in m.details:
                notes.append(", ".join(f"{k} {v:.2f}s" for k, v in m.details[key].items()))
        if "runs" in m.details and len(m.details["runs"]) > 1:
            notes.append("runs " + "/".join(f"{s:.2f}" for s in m.details["runs"]))
        table.add_row(m.name, f"{m.seconds:.2f}", f"{per_m:.2f}", f"{m.peak_rss_mb:.0f}", str(m.rows), "; ".join(notes))
    return table


def targets_table(title: str, targets: list[Target]) -> Table:
    """Each target with its measured value and PASS / MISS."""
    table = Table(title=title)
    for col in ("target", "measured", "limit", "verdict", "note"):
        table.add_column(col)
    for t in targets:
        verdict = {True: "[green]PASS[/]", False: "[red]MISS[/]", None: "[yellow]n/a[/]"}[t.passed]
        sign = "<=" if t.at_most else ">="
        value = "-" if t.value is None else f"{t.value:.3g}"
        table.add_row(t.name, value, f"{sign} {t.limit:g}", verdict, t.note)
    return table


def console() -> Console:
    """A console wide enough that tables do not wrap in logs and pipes."""
    return Console(width=160)
