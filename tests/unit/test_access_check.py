"""The minimal-disclosure e-licence check and per-department rate limits, through the API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from exchange.access.check import SignedLicenceCheck, holder_binding, verify_licence_check
from exchange.access.models import Department
from exchange.access.registry import Registry
from exchange.api.app import CHECK, DATA, create_app
from exchange.api.ratelimit import Rate, RateLimited, TokenBuckets
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.errors import VerificationError
from exchange.hub import Hub
from tests.unit.access_lake import clean_e_licenses, seed_lake

DEPARTMENT = "sh.public_security"  # holds no grant at all: checks need none


@dataclass
class Licences:
    valid: dict[str, str]
    revoked: dict[str, str]
    past_date: dict[str, str]  # status 'valid' but valid_until in the past


@dataclass
class World:
    hub: Hub
    client: TestClient
    bearer: str
    clock: list[float]
    lic: Licences
    all_ids: set[str]
    names: set[str]

    def post(self, body: dict[str, object], bearer: str | None = None) -> object:
        return self.client.post("/v1/check/e-license", json=body,
                                headers={"Authorization": f"Bearer {bearer or self.bearer}"})


def _pick(rows: list[dict[str, object]], **match: object) -> dict[str, str]:
    row = next(r for r in rows if all(r[k] == v for k, v in match.items()))
    return {"license_id": str(row["license_id"]), "holder_id": str(row["holder_id"]),
            "authority": str(row["issuing_authority"])}


@pytest.fixture
def world(home: Path) -> Iterator[World]:
    hub = Hub(ExchangeSettings(home=home))
    table = clean_e_licenses(200, seed=9)
    today = datetime.now(UTC).date()
    rows = table.to_pylist()
    future = [r for r in rows if r["status"] == "valid" and r["valid_until"] and r["valid_until"] > today]
    # Make one licence 'valid' on paper but past its validity date; and give another a newer revoked version.
    stale = dict(future[1], valid_until=today - timedelta(days=3))
    later = dict(future[2], status="revoked", updated_at=datetime.now(UTC))
    seed_lake(hub, pa.Table.from_pylist([r for r in rows if r["license_id"] != stale["license_id"]] + [stale],
                                        schema=table.schema))
    seed_lake(hub, pa.Table.from_pylist([later], schema=table.schema), batch_id="later")
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEPARTMENT, name="上海市公安局", province="shanghai"))
    _, bearer = registry.issue_token(DEPARTMENT)
    clock = [1000.0]
    buckets = TokenBuckets({DATA: Rate(1.0, 3), CHECK: Rate(2.0, 5)}, clock=lambda: clock[0])
    client = TestClient(create_app(hub, buckets=buckets))
    lic = Licences(valid=_pick([future[0]]), revoked=_pick([later]), past_date=_pick([stale]))
    yield World(hub=hub, client=client, bearer=bearer, clock=clock, lic=lic,
                all_ids={str(r["holder_id"]) for r in rows}, names={str(r["holder_name"]) for r in rows})
    client.close()


def _answer(world: World, body: dict[str, object]) -> SignedLicenceCheck:
    world.clock[0] += 10  # a fresh allowance: these tests are about answers, not limits
    response = world.post(body)
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    text = response.text  # type: ignore[attr-defined]
    leaked = [v for v in world.all_ids | world.names if v in text]
    assert not leaked, f"personal data in the answer: {leaked[:2]}"
    return SignedLicenceCheck.model_validate_json(text)


def test_answers_are_minimal_signed_and_logged(world: World) -> None:
    bundle = world.hub.keyring.export_trust()
    lic = world.lic
    cases: list[tuple[dict[str, object], str]] = [
        ({"license_id": lic.valid["license_id"]}, "valid"),
        ({"license_id": lic.valid["license_id"], "holder_id": lic.valid["holder_id"]}, "valid"),
        ({"license_id": lic.valid["license_id"], "holder_id": lic.revoked["holder_id"]}, "holder_mismatch"),
        ({"license_id": lic.revoked["license_id"]}, "revoked"),  # the newer version wins
        ({"license_id": lic.past_date["license_id"]}, "expired"),  # the date, not just the status, counts
        ({"license_id": "DZZZ000000000000"}, "unknown"),
    ]
    for body, expected in cases:
        before = len(world.hub.log.read())
        signed = _answer(world, body)
        c = verify_licence_check(signed, bundle)
        assert (c.answer, c.valid, c.department) == (expected, expected == "valid", DEPARTMENT)
        assert c.snapshot_id >= 2
        if expected in ("valid", "revoked", "expired"):
            assert c.issuing_authority and c.issued_on
        else:
            assert (c.issuing_authority, c.issued_on, c.valid_until) == (None, None, None)
        if "holder_id" in body:
            assert c.holder_binding == holder_binding(c.check_id, str(body["holder_id"]))
        entries = world.hub.log.read()[before:]
        assert [e.action for e in entries] == ["license_check"]
        logged = entries[0].model_dump_json()
        assert all(str(value) not in logged for value in body.values())
        assert entries[0].details["answer"] == expected

    forged = signed.model_copy(update={"check": signed.check.model_copy(update={"answer": "valid", "valid": True})})
    with pytest.raises(VerificationError, match="does not match"):
        verify_licence_check(forged, bundle)


def test_malformed_checks_are_refused_and_logged(world: World) -> None:
    before = len(world.hub.log.read())
    response = world.post({"license_id": "x' OR 1=1 --", "holder_id": "12"})
    assert response.status_code == 422  # type: ignore[attr-defined]
    entries = world.hub.log.read()[before:]
    assert [e.action for e in entries] == ["access_denied"] and entries[0].actor == DEPARTMENT
    refused = world.post({"license_id": "X1"}, bearer="yrd_0000000000000000." + "a" * 43)
    assert refused.status_code == 401  # type: ignore[attr-defined]


def test_rate_limits_answer_429_with_retry_after_and_refill(world: World) -> None:
    statuses = [world.post({"license_id": "DZZZ1"}).status_code for _ in range(7)]  # type: ignore[attr-defined]
    assert statuses == [200] * 5 + [429] * 2
    limited = world.post({"license_id": "DZZZ1"})
    assert limited.headers["retry-after"] == "1"  # type: ignore[attr-defined]
    assert limited.json()["error"] == "rate_limited"  # type: ignore[attr-defined]
    denial = world.hub.log.read()[-1]
    assert denial.action == "access_denied" and "rate limit" in denial.details["reason"]
    # Checks and data requests have separate buckets.
    assert world.client.get("/v1/me", headers={"Authorization": f"Bearer {world.bearer}"}).status_code == 200
    world.clock[0] += 0.5  # 2 tokens/s: one token back
    assert world.post({"license_id": "DZZZ1"}).status_code == 200  # type: ignore[attr-defined]
    assert world.post({"license_id": "DZZZ1"}).status_code == 429  # type: ignore[attr-defined]


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    buckets = TokenBuckets({"k": Rate(4.0, 2)}, clock=lambda: now[0])
    buckets.take("a", "k")
    buckets.take("a", "k")
    with pytest.raises(RateLimited) as limited:
        buckets.take("a", "k")
    assert limited.value.retry_after == pytest.approx(0.25)
    buckets.take("b", "k")  # another department has its own bucket
    now[0] = 100.0  # a long pause refills only up to the burst
    buckets.take("a", "k")
    buckets.take("a", "k")
    with pytest.raises(RateLimited):
        buckets.take("a", "k")


def test_cli_check_and_offline_verification(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["check-license", world.lic.valid["license_id"], "--department", DEPARTMENT,
                               "--holder-id", world.lic.valid["holder_id"]])
    assert done.exit_code == 0, done.output
    answer = tmp_path / "answer.json"
    answer.write_text(done.output)
    assert json.loads(done.output)["check"]["answer"] == "valid"
    bundle = tmp_path / "trust.json"
    bundle.write_text(world.hub.keyring.export_trust().model_dump_json())
    verified = runner.invoke(app, ["verify-check", str(answer), "--trust-bundle", str(bundle)])
    assert verified.exit_code == 0 and "authentic" in verified.output
    doc = json.loads(done.output)
    doc["check"]["valid_until"] = str(date(2099, 1, 1))
    answer.write_text(json.dumps(doc))
    # A failed check exits 1; 2 is for usage errors (exchange/errors.py OUTCOMES).
    assert runner.invoke(app, ["verify-check", str(answer), "--trust-bundle", str(bundle)]).exit_code == 1
    unknown = runner.invoke(app, ["check-license", "X1", "--department", "nobody.here"])
    assert unknown.exit_code == 2 and "unknown department" in unknown.output
    assert world.hub.log.read()[-1].action == "access_denied"
