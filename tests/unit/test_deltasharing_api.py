"""The Delta Sharing routes in process (no client venv needed): protocol errors, versions, HEAD, rate limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from exchange.access.registry import Registry
from exchange.api.app import CHECK, DATA, create_app
from exchange.api.ratelimit import Rate, TokenBuckets
from exchange.deltasharing.protocol import share_name
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from tests.hubs import extract_home

DEPARTMENT = "js.public_security"
TABLE = f"/delta-sharing/shares/{share_name(DEPARTMENT)}/schemas/datasets/tables/e_license"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    return extract_home(tmp_path_factory.mktemp("sharing-api") / "home", 80, 3, datetime(2026, 11, 1, tzinfo=UTC),
                        datetime(2026, 11, 3, tzinfo=UTC), DEPARTMENT)


@pytest.fixture
def api(hub: Hub) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _, bearer = Registry(hub.layout.access).issue_token(DEPARTMENT)
    buckets = TokenBuckets({DATA: Rate(0.001, 8), CHECK: Rate(1.0, 1)})  # 8 requests, then limited
    with TestClient(create_app(hub, buckets=buckets)) as client:
        yield client, {"Authorization": f"Bearer {bearer}"}


def _current(hub: Hub) -> int:
    with connect(hub.settings, read_only=True) as con:
        row = con.execute(f"SELECT max(snapshot_id) FROM {LAKE}.snapshots()").fetchone()
    assert row is not None
    return int(row[0])


def test_protocol_errors_and_versions(hub: Hub, api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    unauthenticated = client.get("/delta-sharing/shares", headers={"Authorization": "Bearer nope"})
    assert unauthenticated.status_code == 401 and unauthenticated.json()["errorCode"] == "UNAUTHENTICATED"
    version = client.get(f"{TABLE}/version", headers=auth)
    assert version.status_code == 200 and int(version.headers["delta-table-version"]) == _current(hub)
    later = client.get(f"{TABLE}/version", params={"startingTimestamp": "2999-01-01T00:00:00Z"}, headers=auth)
    assert later.status_code == 400 and later.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    both = client.post(f"{TABLE}/query", json={"version": 1, "timestamp": "2026-01-01T00:00:00Z"}, headers=auth)
    assert both.status_code == 400 and "not both" in both.json()["message"]
    unknown = client.post(f"{TABLE}/query", json={"version": 10_000}, headers=auth)
    assert unknown.status_code == 400 and "no snapshot 10000" in unknown.json()["message"]
    malformed = client.post(f"{TABLE}/query", json={"version": "latest"}, headers=auth)
    assert malformed.status_code == 400 and malformed.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    denials = [e for e in hub.log.read() if e.action == "access_denied" and e.actor == DEPARTMENT]
    assert any("not both" in e.details["reason"] for e in denials)


def test_query_answers_ndjson_and_files_serve_head_ranges_and_rate_limits(
        hub: Hub, api: tuple[TestClient, dict[str, str]], tmp_path: Path) -> None:
    client, auth = api
    answer = client.post(f"{TABLE}/query", json={}, headers=auth)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert lines[0] == {"protocol": {"minReaderVersion": 1}} and "metaData" in lines[1]
    url = lines[2]["file"]["url"]
    head = client.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == lines[2]["file"]["size"]
    assert client.get(url, headers={"Range": "bytes=0-3"}).content == b"PAR1"
    codes = [client.get(url).status_code for _ in range(10)]
    assert 429 in codes  # downloads draw on the department's request allowance
    limited = client.get(url)
    assert limited.status_code == 429 and limited.json()["errorCode"] == "RESOURCE_EXHAUSTED"
    assert "retry-after" in limited.headers
    entries = hub.log.read()
    ranges = [e.details.get("range") for e in entries if e.action == "sharing_download"]
    assert "bytes=0-3" in ranges and any(e.details.get("method") == "HEAD" for e in entries
                                         if e.action == "sharing_download")
    assert any(e.action == "access_denied" and e.details.get("attempt") == "sharing_download" for e in entries)


def test_a_forged_url_is_refused_and_counted_per_client(hub: Hub, api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    lines = client.post(f"{TABLE}/query", json={}, headers=auth).text.splitlines()
    url = json.loads(lines[2])["file"]["url"]
    forged = url.replace("/yrd_", "/yrd_f", 1)
    refused = client.get(forged)
    assert refused.status_code == 403 and refused.json()["errorCode"] == "PERMISSION_DENIED"
    assert "signature" in refused.json()["message"]
