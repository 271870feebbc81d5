"""Map the hub's errors onto Airflow's retry semantics.

A TerminalError (malformed payload, refused credentials, held batch) will not go away by retrying, so
the task fails at once with the hub's message; a TransientError keeps Airflow's retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from exchange.errors import TerminalError

T = TypeVar("T")


def run_stage(stage: Callable[..., T], *args: Any) -> T:
    """Call a pipeline stage; turn a TerminalError into a no-retry task failure with the same message."""
    try:
        return stage(*args)
    except TerminalError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
