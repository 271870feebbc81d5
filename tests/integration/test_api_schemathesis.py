"""Schemathesis against the API's own OpenAPI document: generated requests must never cause a server error.

The app runs in process (ASGI) over a real lake, with a department holding a grant, a token and an
extract, so authenticated paths (queries, extracts, downloads, checks) are exercised with a valid bearer
token, not only refused at the door. Generation is bounded (MAX_EXAMPLES per operation) so the run stays
well under a minute; rate limits are lifted, since a 429 would hide what lies behind it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exchange.access.models import Department, Grant, RowCondition
from exchange.access.registry import Registry
from exchange.access.service import publish_extract
from exchange.api.app import CHECK, DATA, create_app
from exchange.api.ratelimit import Rate, TokenBuckets
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.sharing.workdays import WorkCalendar, use
from tests.unit.access_lake import clean_e_licenses, seed_lake

MAX_EXAMPLES = 30
# Server errors, plus the document's promises about status codes, content types and response bodies.
# (positive_data_acceptance does not apply: whether SQL parses is beyond what a JSON Schema can say.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
DEPARTMENT = "js.public_security"


@dataclass
class Api:
    app: Any
    hub: Hub
    bearer: str


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    hub = Hub(ExchangeSettings(home=tmp_path_factory.mktemp("fuzz") / "home"))
    seed_lake(hub, clean_e_licenses(200, seed=17))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEPARTMENT, name="江苏省公安厅", province="jiangsu"))
    registry.add_grant(Grant(
        id="g-fuzz", department=DEPARTMENT, dataset="e_license",
        columns=["license_id", "holder_id", "holder_name", "region_code", "status"],
        row_filter=[RowCondition(column="region_code", op="prefix_in", values=["32"])], purpose="fuzzing",
        legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
        expires_on=datetime.now(UTC).date() + timedelta(days=5), issued_at=datetime.now(UTC)), hub.signer)
    _, bearer = registry.issue_token(DEPARTMENT)
    publish_extract(hub, DEPARTMENT, "e_license")  # something real to download
    generous = TokenBuckets({DATA: Rate(10_000.0, 10_000), CHECK: Rate(10_000.0, 10_000)})
    app = create_app(hub, buckets=generous)
    # Sharing deadlines on a pinned date reaching a year chinesecalendar does not know, under an explicit policy:
    # the fuzzing must not depend on the day it runs.
    app.state.sharing_clock = lambda: datetime(2026, 12, 28, 2, tzinfo=UTC)
    with use(WorkCalendar(unknown_years="weekends")):
        yield Api(app=app, hub=hub, bearer=bearer)
    app.state.lake.close()
    app.state.views.clear()


def _drive(strategy: st.SearchStrategy[schemathesis.Case], bearer: str, codes: Counter[int], *,
           examples: int = MAX_EXAMPLES, body: st.SearchStrategy[Any] | None = None) -> None:
    """Send `examples` generated cases with a valid token; schemathesis' server-error check on each answer.

    schemathesis' own pytest plugin needs a pytest internal that pytest 9 removed, so its strategies
    drive plain Hypothesis here; the check is the same (`call_and_validate`).
    """
    @given(case=strategy, body=body if body is not None else st.none())
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case, body: Any) -> None:
        if body is not None:
            case.body = body
        response = case.call_and_validate(headers={"Authorization": f"Bearer {bearer}"}, checks=CHECKS)
        codes[response.status_code] += 1

    run()


def _fuzz(api: Api, mode: GenerationMode) -> dict[str, Counter[int]]:
    """Run every operation's generated cases through the app; the status codes seen, per operation."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    seen: dict[str, Counter[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        _drive(operation.as_strategy(generation_mode=mode), api.bearer, seen.setdefault(operation.label, Counter()))
    return seen


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_server_errors(api: Api, mode: GenerationMode) -> None:
    seen = _fuzz(api, mode)
    print(f"\n{mode.value}: " + "; ".join(f"{op} {dict(codes)}" for op, codes in seen.items()))
    assert all(code < 500 for codes in seen.values() for code in codes), seen
    assert len(seen) >= 6, seen  # every operation of the document was exercised


VALID_SQL = ["SELECT status, count(*) AS n FROM e_license GROUP BY ALL ORDER BY status",
             "SELECT holder_id, holder_name FROM e_license ORDER BY license_id LIMIT 5"]


def test_valid_queries_at_generated_snapshots(api: Api) -> None:
    # Generated SQL almost never binds, so valid SQL is given and the rest of the request is generated.
    operation = schemathesis.openapi.from_asgi("/openapi.json", api.app)["/v1/query"]["POST"]
    codes: Counter[int] = Counter()
    for sql in VALID_SQL:
        body = st.fixed_dictionaries({"sql": st.just(sql)}, optional={"snapshot": st.integers(-5, 20) | st.none()})
        _drive(operation.as_strategy(), api.bearer, codes, examples=10, body=body)
    assert codes[200] > 0 and all(code < 500 for code in codes), codes
    actions = {e.action for e in api.hub.log.read() if e.actor == DEPARTMENT}
    assert "query" in actions, actions
