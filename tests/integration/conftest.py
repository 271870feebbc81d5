"""Fixtures shared by the integration tests' files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.airflow_deployment import Deployment, deployed


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A real Airflow deployment of its own (PostgreSQL metadata DB, LocalExecutor, scheduler, dag-processor,
    api-server), stopped and its database dropped after the test."""
    with deployed(tmp_path) as dep:
        yield dep
