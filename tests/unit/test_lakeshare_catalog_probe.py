"""The PostgreSQL catalog's stamp when the server cannot be reached: nothing raises, the pollers are told
"unknown" (so nothing is warmed and queries attach as before), and a dead server is not hammered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exchange.access.lakeshare import CatalogProbe, SharedLake
from exchange.config import ExchangeSettings
from tests.integration.scaleout_servers import free_port


def _closed() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"  # nobody listens there


def test_an_unreachable_catalog_answers_unknown_and_is_retried_after_a_delay(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    probe = CatalogProbe(_closed(), retry_seconds=1.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="exchange.access.lakeshare"):
        assert probe.newest() is None and probe.failures == 1
        now[0] = 0.5
        assert probe.newest() is None and probe.failures == 1  # within the delay: not even tried
        now[0] = 1.5
        assert probe.newest() is None and probe.failures == 2
    assert len([r for r in caplog.records if "newest snapshot" in r.message]) == 1  # once per outage
    probe.close()
    assert probe.newest() is None and probe.failures == 3  # a deliberate close waits for nothing


def test_a_shared_lake_on_an_unreachable_catalog_reports_no_change_and_no_known_snapshot(tmp_path: Path) -> None:
    lake = SharedLake(ExchangeSettings(home=tmp_path, lake_catalog=_closed()))
    assert lake.probe is not None and lake.stamp() is None
    assert not lake.changed() and not lake.catalog_busy()
    lake.probe.close()
    assert lake.known_current() is None and lake.attaches == 0


def test_a_file_catalog_has_no_probe(tmp_path: Path) -> None:
    lake = SharedLake(ExchangeSettings(home=tmp_path))
    assert lake.probe is None and lake.known_current() is None and not lake.changed()
