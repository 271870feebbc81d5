"""Named crash points at every write boundary, for the crash harness (tests/unit/test_crash_points.py).

``crash_point("commit.after_snapshot")`` ends the process at once (``os._exit``, no cleanup, no flush, like a
kill -9 or a power cut as far as the hub's files are concerned) when EXCHANGE_CRASH_AT names that point, and
does nothing otherwise: one environment lookup. Every point is declared in POINTS, so the harness iterates
the registry and a new point is tested as soon as it is declared; calling an undeclared name is a bug.
"""

from __future__ import annotations

import os

CRASH_ENV = "EXCHANGE_CRASH_AT"
CRASH_EXIT = 86  # what a process ended by a crash point exits with, so the harness can tell it happened

# name -> the write boundary it sits on. The prefix before the dot is the stage the harness runs.
POINTS: dict[str, str] = {
    "pull.mid_staged": "pull: the staged records file is half written (one chunk in)",
    "pull.after_staged": "pull: landing copy and staged records written, pull.json not yet",
    "pull.after_record": "pull: pull.json written, the pull entry not yet logged",
    "validate.mid_split": "validate: accepted/quarantined files half written",
    "validate.after_split": "validate: accepted/quarantined written, validation.json not yet",
    "validate.after_record": "validate: validation.json written, the validate entry not yet logged",
    "commit.after_intent_file": "commit: intent marker in staging, commit_intent entry not yet logged",
    "commit.after_intent": "commit: commit_intent logged, nothing in the lake yet",
    "commit.before_lake_commit": "commit: lake data files written, the catalog transaction not committed",
    "commit.after_snapshot": "commit: snapshot committed, no manifest yet",
    "commit.after_manifest": "commit: manifest written, commit entry not yet logged",
    "commit.after_commit_entry": "commit: commit entry logged, staging not yet removed",
    "replay.after_stage": "replay: the replay batch staged, its replay entry not yet logged",
    "replay.after_entry": "replay: replay entry logged, its commit not started",
    "extract.after_cut": "extract: files and signed manifest in a .partial folder, not yet published",
    "extract.after_entry": "extract: the extract entry logged, its folder not yet moved into place",
    "archive.after_checkpoint": "archive: the closing checkpoint logged, the archive file not yet written",
    "archive.mid_write": "archive: the archive's entries file half written",
    "checkpoint.before_append": "checkpoint: the lake head read, the checkpoint entry not yet logged",
}


def crash_point(name: str) -> None:
    """Die here, without any cleanup, if EXCHANGE_CRASH_AT names this point; otherwise do nothing."""
    if os.environ.get(CRASH_ENV) == name:
        if name not in POINTS:
            raise AssertionError(f"crash point {name!r} is not declared in exchange.faults.POINTS")
        os._exit(CRASH_EXIT)
