"""What the hub finished for a window outside Airflow (`exchange run`): one small JSON file per batch.

A window that brought nothing new leaves no manifest, so without this record nothing says the window was
done, or when. EXCHANGE_HOME/windows/<province>/<batch>.json names the province, dataset, window, how it
ended (committed, already_committed, empty) and when it was first finished; later runs of the window keep
that first time. The deadline alert (exchange/airflow/errors.py) and the recording of a window's run for
Airflow's scheduler (exchange/airflow/local_runs.py) read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from adapters.base import Window
from exchange.atomic import write_text
from exchange.config import Layout
from exchange.hub import batch_id_for

DONE = ("committed", "already_committed", "empty")


@dataclass(frozen=True)
class Outcome:
    """How one (province, dataset, window) ended, and when it first did."""

    province: str
    dataset: str
    batch_id: str
    window_start: datetime
    window_end: datetime
    status: str
    finished_at: datetime

    def as_json(self) -> str:
        return json.dumps({"province": self.province, "dataset": self.dataset, "batch_id": self.batch_id,
                           "window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
                           "status": self.status, "finished_at": self.finished_at.isoformat()}, indent=2) + "\n"


def folder(layout: Layout) -> Path:
    return layout.home / "windows"


def outcome_path(layout: Layout, province: str, batch_id: str) -> Path:
    return folder(layout) / province / f"{batch_id}.json"


def read(layout: Layout, province: str, dataset: str, window: Window) -> Outcome | None:
    """The recorded outcome of the window, or None when it was not finished outside Airflow."""
    path = outcome_path(layout, province, batch_id_for(province, dataset, window))
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Outcome(doc["province"], doc["dataset"], doc["batch_id"], datetime.fromisoformat(doc["window_start"]),
                       datetime.fromisoformat(doc["window_end"]), doc["status"],
                       datetime.fromisoformat(doc["finished_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(layout: Layout, province: str, dataset: str, window: Window, status: str,
           now: datetime | None = None) -> Outcome | None:
    """Record that the window ended with `status` (only a finished one); an earlier record's time is kept."""
    if status not in DONE:
        return None
    if (earlier := read(layout, province, dataset, window)) is not None:
        return earlier
    outcome = Outcome(province, dataset, batch_id_for(province, dataset, window), window.start, window.end, status,
                      now or datetime.now(UTC))
    path = outcome_path(layout, province, outcome.batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, outcome.as_json())
    return outcome


def finished(layout: Layout, province: str, datasets: list[str], window: Window) -> dict[str, Outcome]:
    """The datasets of `datasets` whose window is recorded as finished."""
    found = {name: read(layout, province, name, window) for name in datasets}
    return {name: outcome for name, outcome in found.items() if outcome is not None}
