"""Named crash points at every write boundary, for the crash harness (tests/unit/test_crash_points.py).

``crash_point("commit.after_snapshot")`` ends the process at once (``os._exit``, no cleanup, no flush, like a
kill -9 or a power cut as far as the hub's files are concerned) when EXCHANGE_CRASH_AT names that point, and
does nothing otherwise: two environment lookups. Every point is declared in POINTS, so the harness iterates
the registry and a new point is tested as soon as it is declared; calling an undeclared name is a bug.

``EXCHANGE_PAUSE_AT=<name>`` (with ``EXCHANGE_PAUSE_FILE=<path>``) stops the process at that point instead:
it writes ``<name> <pid>`` to the file and waits there for ever, so a test outside the process sees where
the run is and kills it (SIGKILL) exactly at that boundary (tests/unit/test_kill_loop.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from exchange import atomic

CRASH_ENV = "EXCHANGE_CRASH_AT"
CRASH_EXIT = 86  # what a process ended by a crash point exits with, so the harness can tell it happened
PAUSE_ENV = "EXCHANGE_PAUSE_AT"
PAUSE_FILE_ENV = "EXCHANGE_PAUSE_FILE"

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
    """Die here, without any cleanup, if EXCHANGE_CRASH_AT names this point; stop here for an outside kill if
    EXCHANGE_PAUSE_AT names it; otherwise do nothing."""
    crash, pause = os.environ.get(CRASH_ENV), os.environ.get(PAUSE_ENV)
    if name not in (crash, pause):
        return
    if name not in POINTS:
        raise AssertionError(f"crash point {name!r} is not declared in exchange.faults.POINTS")
    if crash == name:
        os._exit(CRASH_EXIT)
    _pause(name, os.environ[PAUSE_FILE_ENV])


def _pause(name: str, evidence: str) -> None:
    # Written atomically: the watcher reads either nothing or the whole line.
    atomic.write_text(Path(evidence), f"{name} {os.getpid()}\n")
    while True:  # until the watcher's SIGKILL
        time.sleep(3600)
