"""The department API served by uvicorn on a loopback ephemeral port, spoken to over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exchange.access.models import Department
from exchange.access.registry import Registry
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from tests.integration.serving import serving


@pytest.fixture
def served(home: Path) -> Iterator[tuple[str, str, Hub]]:
    hub = Hub(ExchangeSettings(home=home))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id="sh.public_security", name="上海市公安局", province="shanghai"))
    _, bearer = registry.issue_token("sh.public_security")
    with serving(hub) as url:
        yield url, bearer, hub


def test_me_over_http_and_a_refused_token(served: tuple[str, str, Hub]) -> None:
    url, bearer, hub = served
    with httpx.Client(base_url=url, timeout=10) as client:
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {bearer}"})
        assert me.status_code == 200 and me.json()["department"]["id"] == "sh.public_security"
        refused = client.get("/v1/me", headers={"Authorization": "Bearer nonsense"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == {"error": "unauthenticated", "reason": refused.json()["reason"]}
        assert client.get("/openapi.json").json()["info"]["title"].startswith("YRD Exchange Hub")
    assert hub.log.read()[-1].action == "access_denied"


def test_refused_requests_counted_while_serving_are_written_when_the_server_stops(home: Path) -> None:
    hub = Hub(ExchangeSettings(home=home))
    with serving(hub) as url, httpx.Client(base_url=url, timeout=10) as client:
        statuses = [client.get("/v1/me", headers={"Authorization": "Bearer nonsense"}).status_code
                    for _ in range(60)]
        assert {401, 429} == set(statuses)
        assert [e.details.get("count") for e in hub.log.read()] == [1]  # the first at once, the rest counted
    entries = hub.log.read()
    assert len(entries) == 2 and sum(e.details.get("count", 1) for e in entries) == 60  # none lost at shutdown
    assert entries[-1].details["client"] == "127.0.0.1"
