"""Integration tests use the real servers on loopback; skip when one is down, but never under CI."""

from __future__ import annotations

import os
import socket

import pytest


def require_server(host: str, port: int, what: str) -> None:
    """Skip (or fail when CI is set) if nothing listens at host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{what} is not reachable at {host}:{port} ({exc})"
        if os.environ.get("CI"):
            pytest.fail(message + " - CI must have it running (see .ci/run)")
        pytest.skip(message)
