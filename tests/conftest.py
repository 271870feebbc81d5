"""Shared fixtures: an isolated EXCHANGE_HOME per test and the project's paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh EXCHANGE_HOME, also exported so code reading settings from the environment sees it."""
    root = tmp_path / "home"
    monkeypatch.setenv("EXCHANGE_HOME", str(root))
    yield root
