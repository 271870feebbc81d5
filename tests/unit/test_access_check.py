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
from exchange.access.models import Department, Grant, RowCondition
from exchange.access.registry import Registry
from exchange.api.app import CHECK, DATA, create_app
from exchange.api.ratelimit import CheckFailures, FailureLimits, Rate, RateLimited, TokenBuckets
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.errors import VerificationError
from exchange.hub import Hub
from tests.unit.access_lake import clean_e_licenses, seed_lake

DEPARTMENT = "sh.public_security"  # holds no grant at all: checks need none
GRANTED = "js.transport"  # holds a grant on e_license: details, inside its row filter only


@dataclass
class Licences:
    valid: dict[str, str]
    revoked: dict[str, str]
    past_date: dict[str, str]  # status 'valid' but valid_until in the past
    outside: dict[str, str]  # a valid licence outside GRANTED's row filter


@dataclass
class World:
    hub: Hub
    client: TestClient
    bearer: str
    clock: list[float]
    lic: Licences
    all_ids: set[str]
    names: set[str]
    granted_bearer: str

    def post(self, body: dict[str, object], bearer: str | None = None) -> object:
        return self.client.post("/v1/check/e-license", json=body,
                                headers={"Authorization": f"Bearer {bearer or self.bearer}"})


def _pick(rows: list[dict[str, object]], **match: object) -> dict[str, str]:
    row = next(r for r in rows if all(r[k] == v for k, v in match.items()))
    return {"license_id": str(row["license_id"]), "holder_id": str(row["holder_id"]),
            "authority": str(row["issuing_authority"]), "status": str(row["status"])}


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
    # A department granted e_license's detail columns in clear, for the valid licence's city only.
    valid = future[0]
    city = str(valid["region_code"])[:4]
    registry.add_department(Department(id=GRANTED, name="江苏省交通运输厅", province="jiangsu"))
    registry.add_grant(Grant(
        id="g-transport", department=GRANTED, dataset="e_license",
        columns=["license_id", "holder_id", "region_code", "status", "issuing_authority", "issued_on",
                 "valid_until"],
        row_filter=[RowCondition(column="region_code", op="prefix_in", values=[city])], purpose="roadside checks",
        legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
        expires_on=today + timedelta(days=30), issued_at=datetime.now(UTC)), hub.signer)
    _, granted_bearer = registry.issue_token(GRANTED)
    clock = [1000.0]
    buckets = TokenBuckets({DATA: Rate(1.0, 3), CHECK: Rate(2.0, 5)}, clock=lambda: clock[0])
    failures = CheckFailures(FailureLimits(per_token=5, per_department=10, window_seconds=3600.0,
                                           lockout_seconds=900.0), clock=lambda: clock[0])
    client = TestClient(create_app(hub, buckets=buckets, check_failures=failures))
    outside = next(r for r in future[3:] if not str(r["region_code"]).startswith(city))
    lic = Licences(valid=_pick([valid]), revoked=_pick([later]), past_date=_pick([stale]),
                   outside=_pick([outside]))
    yield World(hub=hub, client=client, bearer=bearer, clock=clock, lic=lic,
                all_ids={str(r["holder_id"]) for r in rows}, names={str(r["holder_name"]) for r in rows},
                granted_bearer=granted_bearer)
    client.close()


def _answer(world: World, body: dict[str, object], bearer: str | None = None) -> SignedLicenceCheck:
    world.clock[0] += 10  # a fresh allowance: these tests are about answers, not limits
    response = world.post(body, bearer)
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    text = response.text  # type: ignore[attr-defined]
    leaked = [v for v in world.all_ids | world.names if v in text]
    assert not leaked, f"personal data in the answer: {leaked[:2]}"
    return SignedLicenceCheck.model_validate_json(text)


def _pair(lic: dict[str, str], holder: dict[str, str] | None = None) -> dict[str, object]:
    return {"license_id": lic["license_id"], "holder_id": (holder or lic)["holder_id"]}


# What the answer may tell apart: only the answer itself and details (absent here: no grant).
_SAME_FOR_EVERY_FAILURE = ("answer", "valid", "status", "issuing_authority", "issued_on", "valid_until",
                           "holder_checked", "dataset", "department")


def test_answers_are_valid_or_not_valid_for_the_pair_signed_and_logged(world: World) -> None:
    bundle = world.hub.keyring.export_trust()
    lic = world.lic
    # (body, answer, pair matched: logged as license_check; else a failed holder check: access_denied)
    cases: list[tuple[dict[str, object], str, bool]] = [
        (_pair(lic.valid), "valid", True),
        (_pair(lic.valid, lic.revoked), "not_valid", False),  # another holder: not said, just not valid
        (_pair(lic.revoked), "not_valid", True),  # the newer, revoked version wins
        (_pair(lic.past_date), "not_valid", True),  # the date, not just the status, counts
        ({"license_id": "DZZZ000000000000", "holder_id": lic.valid["holder_id"]}, "not_valid", False),
        ({"license_id": lic.valid["license_id"], "holder_id": lic.valid["holder_id"].lower()}, "valid", True),
    ]
    answers = []
    for body, expected, matched in cases:
        before = len(world.hub.log.read())
        signed = _answer(world, body)
        c = verify_licence_check(signed, bundle)
        assert (c.answer, c.valid, c.department) == (expected, expected == "valid", DEPARTMENT)
        assert c.snapshot_id >= 2 and c.holder_checked
        # No grant: no status, authority or dates, whatever the licence.
        assert (c.status, c.issuing_authority, c.issued_on, c.valid_until) == (None, None, None, None)
        assert c.holder_binding == holder_binding(c.check_id, str(body["holder_id"]))
        entries = world.hub.log.read()[before:]
        assert [e.action for e in entries] == (["license_check"] if matched else ["access_denied"])
        logged = entries[0].model_dump_json()
        assert all(str(value) not in logged for value in body.values())
        if matched:
            assert entries[0].details["answer"] == expected
        else:
            assert entries[0].details["attempt"] == "license_check"
            assert "failed holder check" in entries[0].details["reason"]
            assert entries[0].details["check_id"] == c.check_id  # the signed answer it got is on record
        answers.append(c)
        if not c.valid:
            refused = signed
    # No partial signal: a wrong holder, an unknown licence, a revoked and an expired one read the same.
    failures = [a for a in answers if not a.valid]
    assert len({tuple(getattr(a, f) for f in _SAME_FOR_EVERY_FAILURE) for a in failures}) == 1

    forged = refused.model_copy(update={"check": refused.check.model_copy(update={"answer": "valid", "valid": True})})
    with pytest.raises(VerificationError, match="does not match"):
        verify_licence_check(forged, bundle)


def test_details_only_for_a_matching_pair_inside_the_callers_grant(world: World) -> None:
    lic = world.lic
    cases: list[tuple[dict[str, object], str, bool]] = [
        (_pair(lic.valid), "valid", True),  # inside the grant's rows: details
        (_pair(lic.outside), "valid", False),  # a valid pair outside them: the answer, nothing more
        (_pair(lic.valid, lic.outside), "not_valid", False),  # inside, wrong holder: nothing
    ]
    for body, expected, detailed in cases:
        c = _answer(world, body, world.granted_bearer).check
        assert c.answer == expected and c.department == GRANTED
        details = (c.status, c.issuing_authority, c.issued_on is not None, c.valid_until is not None)
        if detailed:
            assert details == ("valid", lic.valid["authority"], True, True)
        else:
            assert details == (None, None, False, False), body
    assert lic.outside["authority"] not in world.hub.log.path.read_text(encoding="utf-8")


def test_a_check_without_a_holder_is_refused(world: World) -> None:
    before = len(world.hub.log.read())
    response = world.post({"license_id": world.lic.valid["license_id"]})
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert [e.action for e in world.hub.log.read()[before:]] == ["access_denied"]


def test_malformed_checks_are_refused_and_logged(world: World) -> None:
    before = len(world.hub.log.read())
    response = world.post({"license_id": "x' OR 1=1 --", "holder_id": "12"})
    assert response.status_code == 422  # type: ignore[attr-defined]
    entries = world.hub.log.read()[before:]
    assert [e.action for e in entries] == ["access_denied"] and entries[0].actor == DEPARTMENT
    refused = world.post({"license_id": "X1"}, bearer="yrd_0000000000000000." + "a" * 43)
    assert refused.status_code == 401  # type: ignore[attr-defined]


def test_rate_limits_answer_429_with_retry_after_and_refill(world: World) -> None:
    statuses = [world.post(_pair(world.lic.valid)).status_code for _ in range(7)]  # type: ignore[attr-defined]
    assert statuses == [200] * 5 + [429] * 2
    limited = world.post(_pair(world.lic.valid))
    assert limited.headers["retry-after"] == "1"  # type: ignore[attr-defined]
    assert limited.json()["error"] == "rate_limited"  # type: ignore[attr-defined]
    denial = world.hub.log.read()[-1]
    assert denial.action == "access_denied" and "rate limit" in denial.details["reason"]
    # Checks and data requests have separate buckets.
    assert world.client.get("/v1/me", headers={"Authorization": f"Bearer {world.bearer}"}).status_code == 200
    world.clock[0] += 0.5  # 2 tokens/s: one token back
    assert world.post(_pair(world.lic.valid)).status_code == 200  # type: ignore[attr-defined]
    assert world.post(_pair(world.lic.valid)).status_code == 429  # type: ignore[attr-defined]


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
    unknown = runner.invoke(app, ["check-license", "X1", "--department", "nobody.here",
                                  "--holder-id", world.lic.valid["holder_id"]])
    assert unknown.exit_code == 2 and "unknown department" in unknown.output
    assert world.hub.log.read()[-1].action == "access_denied"


def _checksum(first17: str) -> str:
    """GB 11643 check character of the first 17 digits of a resident ID."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    return "10X98765432"[total % 11]


def _candidates(masked: str, truth: str, at: int) -> list[str]:
    """Every ID the mask allows (birth dates 1950-2005 whose check character fits), the truth at index `at`."""
    region, tail = masked[:6], masked[-4:]
    day, found = date(1950, 1, 1), []
    while day.year < 2006:
        candidate = f"{region}{day:%Y%m%d}{tail[:3]}"
        if _checksum(candidate) == tail[3] and candidate + tail[3] != truth:
            found.append(candidate + tail[3])
        day += timedelta(days=1)
    return found[:at] + [truth] + found[at:]


def test_recovering_a_masked_id_through_the_check_is_stopped_and_alerted(world: World) -> None:
    # The attacker: a department whose grant shows the holder masked, with three tokens of its own.
    hub = world.hub
    registry = Registry(hub.layout.access)
    bearers = [world.granted_bearer, *(registry.issue_token(GRANTED)[1] for _ in range(2))]
    generous = TokenBuckets({DATA: Rate(1000.0, 1000), CHECK: Rate(1000.0, 1000)})
    with TestClient(create_app(hub, buckets=generous)) as client:  # lockout limits from the settings
        def auth(bearer: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {bearer}"}

        licence = world.lic.valid["license_id"]
        seen = client.post("/v1/query", headers=auth(bearers[0]),
                           json={"sql": f"SELECT holder_id FROM e_license WHERE license_id = '{licence}'"})
        masked = seen.json()["rows"][0][0]
        assert masked[6:14] == "********" and masked != world.lic.valid["holder_id"]
        candidates = _candidates(masked, world.lic.valid["holder_id"], at=12)
        assert len(candidates) > 1000  # what the check would have had to answer before

        before = len(hub.log.read())
        requests = answered = 0
        learned = None
        stopped = set()
        for candidate in candidates:
            for bearer in bearers:
                if bearer in stopped:
                    continue
                requests += 1
                r = client.post("/v1/check/e-license", headers=auth(bearer),
                                json={"license_id": licence, "holder_id": candidate})
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) > 60
                    stopped.add(bearer)
                    continue
                assert r.status_code == 200, r.text
                answered += 1
                if r.json()["check"]["answer"] == "valid":
                    learned = candidate
                break
            if len(stopped) == len(bearers) or learned:
                break
        assert learned is None and len(stopped) == len(bearers)
        assert requests <= 20 and answered <= hub.settings.check_failures_per_department
        # Even the right ID now gets no answer, from any of its tokens.
        right = client.post("/v1/check/e-license", headers=auth(bearers[-1]),
                            json={"license_id": licence, "holder_id": world.lic.valid["holder_id"]})
        assert right.status_code == 429

    entries = hub.log.read()[before:]
    failed = [e for e in entries if e.action == "access_denied" and "failed holder check" in e.details["reason"]]
    assert len(failed) == answered and all(e.actor == GRANTED for e in failed)
    lockouts = [e for e in entries if e.action == "lockout"]
    assert {e.details["scope"] for e in lockouts} == {"token", "department"}
    assert world.lic.valid["holder_id"] not in hub.log.path.read_text(encoding="utf-8")
    alerts = sorted((hub.layout.reports / "alerts").glob(f"{GRANTED}.*.lockout.json"))
    assert len(alerts) == len(lockouts) and "locked out of e-licence checks" in alerts[0].read_text(encoding="utf-8")
