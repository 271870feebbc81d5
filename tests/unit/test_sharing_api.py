"""The sharing API: each party with its own token; steps refused for the wrong party, logged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from exchange.access.models import Department
from exchange.access.registry import Registry
from exchange.api.app import create_app
from exchange.catalogue.store import Catalogue
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.sharing.parties import issue
from exchange.sharing.service import catalogue_dir, sharing_dir
from exchange.sharing.store import SharingStore

DEPARTMENT = "js.public_security"
ITEM = "YRD-DZZZ-000101-SH"


# A pinned clock in late December, with deadlines running into a year chinesecalendar 1.11 does not know: the
# unknown-year policy is set explicitly, so the suite passes whatever day it runs on.
NOW = datetime(2026, 12, 28, 2, 0, tzinfo=UTC)


@pytest.fixture
def parties(home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, Hub, dict[str, dict[str, str]]]:
    monkeypatch.setenv("EXCHANGE_CALENDAR_UNKNOWN_YEARS", "weekends")
    hub = Hub(ExchangeSettings(home=home))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEPARTMENT, name="江苏省公安厅", province="jiangsu"))
    Catalogue(catalogue_dir(hub)).publish(hub.keyring.signer)
    store = SharingStore(sharing_dir(hub))
    bearers = {"department": registry.issue_token(DEPARTMENT)[1],
               "office": issue(store, "shanghai.data_office")[1],
               "other_office": issue(store, "anhui.data_office")[1],
               "authority": issue(store, "authority")[1]}
    headers = {k: {"Authorization": f"Bearer {v}"} for k, v in bearers.items()}
    app = create_app(hub)
    app.state.sharing_clock = lambda: NOW
    return TestClient(app), hub, headers


def _form() -> dict[str, object]:
    return {"department": DEPARTMENT, "items": [{"item": ITEM, "columns": ["license_id", "status"]}],
            "purpose": "跨省通办核验", "legal_basis": "《政务数据共享条例》", "contact": "张三",
            "period_until": (NOW.date() + timedelta(days=90)).isoformat(), "sharing_method": "online_query"}


def test_file_return_resubmit_approve_over_http(parties: tuple[TestClient, Hub, dict[str, dict[str, str]]]) -> None:
    client, hub, h = parties
    assert client.get("/v1/catalogue", headers=h["department"]).status_code == 200
    item = client.get(f"/v1/catalogue/{ITEM}", headers=h["office"]).json()
    assert item["item"]["provider_office"] == "shanghai.data_office" and item["signature"]["key_id"]
    filed = client.post("/v1/requests", json=_form(), headers=h["department"])
    assert filed.status_code == 201, filed.text
    rid = filed.json()["request"]["id"]
    assert filed.json()["reply_deadline"] >= filed.json()["review_deadline"]
    assert filed.json()["deadlines_provisional"] is True  # runs into 2027, not loaded: counted Monday-Friday
    assert [r["request"]["id"] for r in client.get("/v1/requests", headers=h["office"]).json()] == [rid]
    assert client.get("/v1/requests", headers=h["other_office"]).json() == []
    wrong = client.post(f"/v1/requests/{rid}/decision", json={"outcome": "approve"}, headers=h["other_office"])
    assert wrong.status_code == 403 and "does not provide" in wrong.json()["reason"]
    assert client.get(f"/v1/requests/{rid}", headers=h["other_office"]).status_code == 403
    returned = client.post(f"/v1/requests/{rid}/decision", json={"outcome": "return", "missing": ["授权书"]},
                           headers=h["office"])
    assert returned.json()["request"]["state"] == "returned"
    again = client.post(f"/v1/requests/{rid}/decision", json={"outcome": "return", "missing": ["x"]},
                        headers=h["office"])
    assert again.status_code == 403
    not_theirs = client.post(f"/v1/requests/{rid}/resubmit", json={"materials": ["授权书"]}, headers=h["office"])
    assert not_theirs.status_code == 403
    back = client.post(f"/v1/requests/{rid}/resubmit", json={"materials": ["授权书"]}, headers=h["department"])
    assert back.json()["request"]["state"] == "submitted"
    approved = client.post(f"/v1/requests/{rid}/decision", json={"outcome": "approve"}, headers=h["office"])
    assert approved.json()["request"]["grants"] == [f"{rid}.1"]
    assert client.get("/v1/overdue", headers=h["authority"]).json() == []
    evidence = client.get(f"/v1/requests/{rid}/evidence", headers=h["authority"]).json()
    assert [e["action"] for e in evidence["log"]][:2] == ["request_file", "request_refused"]
    refused = [e for e in hub.log.read() if e.action == "request_refused"]
    assert {e.actor for e in refused} == {"anhui.data_office", "shanghai.data_office"}


def test_a_party_cannot_file_for_another_and_tokens_are_required(
        parties: tuple[TestClient, Hub, dict[str, dict[str, str]]]) -> None:
    client, hub, h = parties
    assert client.get("/v1/catalogue").status_code == 401
    assert client.post("/v1/requests", json=_form(), headers=h["office"]).status_code == 403
    sql = _form() | {"items": [{"item": ITEM, "columns": ["status"], "row_scope": ["1=1"]}]}
    bad = client.post("/v1/requests", json=sql, headers=h["department"])
    assert bad.status_code == 422 and "free SQL" in bad.json()["reason"]
    denied = [e for e in hub.log.read() if e.action in ("request_refused", "access_denied")]
    assert [e.actor for e in denied] == ["anonymous", "shanghai.data_office", DEPARTMENT]


def test_deadlines_become_final_over_http_once_the_year_is_loaded(
        parties: tuple[TestClient, Hub, dict[str, dict[str, str]]], home: Path) -> None:
    client, _, h = parties
    filed = client.post("/v1/requests", json=_form(), headers=h["department"]).json()
    rid = filed["request"]["id"]
    assert filed["deadlines_provisional"] is True
    # A test arrangement for 2027 (not the real one): 4 January off, Saturday 9 January worked.
    (home / "calendar.yaml").write_text("years:\n  2027:\n    source: test arrangement\n"
                                        "    holidays: [2027-01-04]\n    workdays: [2027-01-09]\n")
    view = client.get(f"/v1/requests/{rid}", headers=h["office"]).json()
    assert view["deadlines_provisional"] is False
