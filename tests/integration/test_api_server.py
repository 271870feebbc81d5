"""The department API served by uvicorn on a loopback ephemeral port, spoken to over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from exchange.access.models import Department
from exchange.access.registry import Registry
from exchange.api.app import create_app
from exchange.config import ExchangeSettings
from exchange.hub import Hub


@pytest.fixture
def served(home: Path) -> Iterator[tuple[str, str, Hub]]:
    hub = Hub(ExchangeSettings(home=home))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id="sh.public_security", name="上海市公安局", province="shanghai"))
    _, bearer = registry.issue_token("sh.public_security")
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", bearer, hub
    server.should_exit = True
    thread.join(timeout=10)


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
