"""The access security matrix: every attempt outside a grant is denied with a reason, logged, and leaks nothing.

One small lake (400 Jiangsu e-licences through the real pipeline) is shared by the module. Departments:
js.public_security holds a masked, filtered grant; sh.market_regulation a different one; zj's grant has
expired, ah's was revoked; sh.public_security holds none. Every denial test checks three things: the
HTTP status and reason, a new `access_denied` provenance entry with that reason, and that neither the
response nor the log entry contains a protected value (a clear resident ID or name, or a licence outside
the caller's row filter).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import sandbox_for
from exchange.access.models import Department, Grant, RowCondition
from exchange.access.query import QueryLimits
from exchange.access.registry import Registry
from exchange.access.watchdog import already_expired, thread_watchdog
from exchange.api.app import CHECK, DATA, create_app
from exchange.api.ratelimit import Rate, RejectedClients, TokenBuckets
from exchange.contracts.load import default_contracts_dir
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect, extension_path
from exchange.pipeline import run_exchange
from exchange.provenance.log import ProvenanceEntry
from exchange.synthetic import generate
from tests.hubs import sandbox_hub

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
JS_COLUMNS = ["license_id", "license_type", "holder_name", "holder_id", "region_code", "status"]
MAX_ROWS = 60


HANG_GUARD_SECONDS = 300.0


@dataclass
class QueryClock:
    """The sandbox's time limit in test time: a query is over its limit exactly when `overdue` is set, however
    loaded the machine is. A real timer stays behind the others only as a hang guard, and says so in `hung`."""

    overdue: bool = False
    started: int = 0
    hung: bool = False

    def __call__(self, seconds: float, expire: Callable[[], None]) -> Callable[[], None]:
        self.started += 1
        if self.overdue:
            return already_expired(seconds, expire)

        def guard() -> None:
            self.hung = True
            expire()

        return thread_watchdog(HANG_GUARD_SECONDS, guard)


@dataclass
class World:
    """The shared lake, API client, tokens and the protected values that must never leak."""

    hub: Hub
    client: TestClient
    tokens: dict[str, str]
    clock: QueryClock
    raw_ids: set[str]
    raw_names: set[str]
    outside_js: set[str]  # licence ids outside js.public_security's row filter
    js_rows: int  # rows inside it

    def auth(self, department: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[department]}"}


def _grant(gid: str, department: str, columns: list[str], prefix: str, expires: date) -> Grant:
    return Grant(id=gid, department=department, dataset="e_license", columns=columns,
                 row_filter=[RowCondition(column="region_code", op="prefix_in", values=[prefix])],
                 purpose="核验电子证照 (verify licences)", legal_basis="国发〔2016〕51号",
                 approved_by="jiangsu.data_office", expires_on=expires, issued_at=datetime.now(UTC))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("access") / "home"
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    hub = sandbox_hub(home, sandbox)
    sandbox.seed("e_license", generate("e_license", "jiangsu", 400, seed=11, start=START, end=END))
    assert run_exchange("jiangsu", "e_license", START, END, hub).status == "committed"

    registry = Registry(hub.layout.access)
    today = datetime.now(UTC).date()
    for dep, province in [("js.public_security", "jiangsu"), ("sh.market_regulation", "shanghai"),
                          ("zj.housing_provident_fund", "zhejiang"), ("ah.healthcare_security", "anhui"),
                          ("sh.public_security", "shanghai")]:
        registry.add_department(Department(id=dep, name=dep, province=province))
    registry.add_grant(_grant("g-js", "js.public_security", JS_COLUMNS, "3201", today + timedelta(days=30)),
                       hub.signer)
    registry.add_grant(_grant("g-sh", "sh.market_regulation", ["license_id", "issuing_authority", "status"], "3202",
                              today + timedelta(days=30)), hub.signer)
    registry.add_grant(_grant("g-zj", "zj.housing_provident_fund", ["license_id"], "32", today - timedelta(days=1)),
                       hub.signer)
    registry.add_grant(_grant("g-ah", "ah.healthcare_security", ["license_id"], "32", today + timedelta(days=30)),
                       hub.signer)
    registry.revoke_grant("g-ah", "jiangsu.data_office", "purpose fulfilled", hub.signer)

    tokens = {dep: registry.issue_token(dep)[1] for dep in
              ["js.public_security", "sh.market_regulation", "zj.housing_provident_fund",
               "ah.healthcare_security", "sh.public_security"]}
    tokens["expired"] = registry.issue_token("js.public_security", days=1,
                                             now=datetime.now(UTC) - timedelta(days=2))[1]
    revoked, tokens["revoked"] = registry.issue_token("js.public_security")
    registry.revoke_token(revoked.id)

    with connect(hub.settings, read_only=True) as con:
        raw = con.execute(f"SELECT license_id, holder_id, holder_name, region_code FROM {LAKE}.e_license").fetchall()
    # Every refusal written as it happens (interval 0): this matrix checks each one's entry; the per-client
    # aggregation of unauthenticated refusals is tested in test_access_hardening.py.
    rejected = RejectedClients(Rate(hub.settings.api_reject_rate_per_second, hub.settings.api_reject_burst),
                               interval=0)
    # The matrix sends a few hundred requests in seconds; the per-department limits are tested in
    # test_access_check.py, so here they are out of the way.
    generous = TokenBuckets({DATA: Rate(1000.0, 1000), CHECK: Rate(1000.0, 1000)})
    clock = QueryClock()
    client = TestClient(create_app(hub, QueryLimits(max_rows=MAX_ROWS, timeout_seconds=1.5, watchdog=clock),
                                   buckets=generous, rejected=rejected))
    yield World(
        hub=hub, client=client, tokens=tokens, clock=clock,
        raw_ids={r[1] for r in raw if r[1]}, raw_names={r[2] for r in raw if r[2] and len(r[2]) > 1},
        outside_js={r[0] for r in raw if not str(r[3]).startswith("3201")},
        js_rows=sum(1 for r in raw if str(r[3]).startswith("3201")),
    )
    client.close()


def _new_entries(world: World, before: int) -> list[ProvenanceEntry]:
    return world.hub.log.read()[before:]


def _assert_no_leak(world: World, text: str) -> None:
    leaked = [v for v in world.raw_ids | world.raw_names | world.outside_js if v in text]
    assert not leaked, f"protected values leaked: {leaked[:3]}"


def _denied(world: World, method: str, url: str, *, status: int, reason: str, headers: dict[str, str] | None = None,
            body: dict[str, Any] | None = None, logged: bool = True) -> dict[str, Any]:
    """Make the request; check status, reason, one access_denied entry with the reason, and no leak."""
    before = len(world.hub.log.read())
    response = world.client.request(method, url, headers=headers, json=body)
    assert response.status_code == status, response.text
    payload: dict[str, Any] = response.json()
    assert reason in payload["reason"], payload
    _assert_no_leak(world, response.text)
    entries = _new_entries(world, before)
    if logged:
        denials = [e for e in entries if e.action == "access_denied"]
        assert len(denials) == 1, [e.action for e in entries]
        assert reason in denials[0].details["reason"]
    for entry in entries:
        _assert_no_leak(world, entry.model_dump_json())
    return payload


def _query(world: World, sql: str, department: str = "js.public_security", **extra: Any) -> Any:
    return world.client.post("/v1/query", headers=world.auth(department), json={"sql": sql, **extra})


# --- what a permitted query sees ------------------------------------------------------------------


def test_star_reveals_only_the_granted_columns_and_rows(world: World) -> None:
    response = _query(world, "SELECT * FROM e_license ORDER BY license_id LIMIT 50")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["name"] for c in body["columns"]] == JS_COLUMNS
    assert all(row[4].startswith("3201") for row in body["rows"])
    _assert_no_leak(world, response.text)
    entry = world.hub.log.read()[-1]
    assert entry.action == "query" and entry.actor == "js.public_security"
    assert entry.details["grants"] == {"e_license": "g-js"} and entry.details["rows"] == len(body["rows"])
    assert entry.digests["result"] == body["result_sha256"]
    assert "SELECT" not in entry.model_dump_json()  # the SQL text is never logged, only its digest


def test_rows_outside_the_filter_are_not_there(world: World) -> None:
    body = _query(world, "SELECT count(*) AS n, count(*) FILTER (WHERE NOT starts_with(region_code, '3201')) "
                         "AS outside FROM e_license").json()
    assert body["rows"] == [[world.js_rows, 0]]
    some_outside = sorted(world.outside_js)[0]
    body = _query(world, f"SELECT count(*) FROM e_license WHERE license_id = '{some_outside}'").json()
    assert body["rows"] == [[0]]


def test_masked_values_cannot_be_unmasked_with_string_functions(world: World) -> None:
    sql = ("SELECT holder_id, replace(holder_id, '*', '') AS stripped, reverse(holder_id) AS rev, "
           "regexp_replace(holder_name, '\\*', '', 'g') AS name, hash(holder_id) AS h, "
           "string_agg(holder_id, ',') OVER () AS agg FROM e_license LIMIT 50")
    response = _query(world, sql)
    assert response.status_code == 200, response.text
    assert all(row[0][6:14] == "********" for row in response.json()["rows"])
    _assert_no_leak(world, response.text)


def test_time_travel_to_the_snapshot_before_the_data_shows_no_rows(world: World) -> None:
    response = _query(world, "SELECT count(*) FROM e_license", snapshot=0)
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [[0]] and response.json()["snapshot_id"] == 0


# --- the SQL matrix: denied in the sandbox or before it -------------------------------------------


def _sql_cases(home: str, lake_file: str) -> list[tuple[str, int, str]]:
    outside = "is outside your grant"
    external = "disabled in the query sandbox"
    only_select = "only read-only SELECT queries are allowed"
    return [
        ("SELECT issuing_authority FROM e_license", 403, "column issuing_authority " + outside),
        ("SELECT upper(CAST(issued_on AS VARCHAR)) FROM e_license", 403, "column issued_on " + outside),
        ("SELECT * FROM (SELECT updated_at FROM e_license) s", 403, "column updated_at " + outside),
        ("WITH x AS (SELECT valid_until AS v FROM e_license) SELECT v FROM x", 403, "column valid_until " + outside),
        ("SELECT e.batch_id FROM e_license e", 403, "column batch_id " + outside),
        ("SELECT license_id FROM e_license WHERE issuing_authority LIKE '%'", 403, "issuing_authority " + outside),
        ("SELECT * FROM lake.e_license", 403, "that table is not visible to you"),
        ("SELECT * FROM query_table('lake.e_license')", 403, "that table is not visible to you"),
        ("SELECT * FROM enterprise_registration", 403, "dataset enterprise_registration (no usable grant)"),
        (f"SELECT * FROM read_parquet('{home}/lake/data/**/*.parquet')", 403, external),
        ("SELECT * FROM read_csv('/etc/passwd')", 403, external),
        (f"SELECT * FROM glob('{home}/**')", 403, external),
        (f"SELECT * FROM '{lake_file}'", 403, external),
        (f"SELECT * FROM read_text('{home}/keys/hub.key')", 403, external),
        (f"SELECT * FROM sniff_csv('{home}/access/tokens.json')", 403, external),
        (f"ATTACH '{home}/lake/catalog.ducklake' AS l2", 403, only_select + "; this statement is ATTACH"),
        ("INSTALL httpfs", 403, only_select + "; this statement is LOAD"),
        (f"LOAD '{extension_path()}'", 403, only_select + "; this statement is LOAD"),
        ("COPY e_license TO '/tmp/leak.csv'", 403, only_select + "; this statement is COPY"),
        ("EXPORT DATABASE '/tmp/leak'", 403, only_select + "; this statement is EXPORT"),
        ("SET enable_external_access = true", 403, only_select + "; this statement is SET"),
        ("PRAGMA enable_profiling", 403, only_select + "; this statement is PRAGMA"),
        ("CALL pragma_version()", 403, only_select + "; this statement is CALL"),
        ("CREATE TABLE copy AS SELECT * FROM e_license", 403, only_select + "; this statement is CREATE"),
        ("USE lake", 403, only_select + "; this statement is SET"),
        ("SELECT 1; SELECT * FROM lake.e_license", 403, "exactly one statement"),
        ("SELECT 1 /* ; */ ; ATTACH 'x' AS y", 403, "exactly one statement"),
        ("SELECT 1; --\nDROP TABLE e_license", 403, "exactly one statement"),
        ("/* SELECT */ DROP TABLE e_license", 403, only_select + "; this statement is DROP"),
        ("SELECT * FROM e_license", 413, f"limit of {MAX_ROWS} rows"),
        ("SELECT * FROM range(1000000)", 413, f"limit of {MAX_ROWS} rows"),
        ("SELECT count(*) FROM range(100000000000) a", 408, "time limit"),
    ]


def test_sql_matrix_has_enough_cases(world: World) -> None:
    assert len(_sql_cases("h", "f")) >= 30


@pytest.mark.parametrize("case", range(len(_sql_cases("h", "f"))))
def test_sql_outside_the_grant_is_denied_logged_and_leaks_nothing(world: World, case: int) -> None:
    home = str(world.hub.layout.home)
    lake_file = str(next(world.hub.layout.lake_data.rglob("*.parquet")))
    sql, status, reason = _sql_cases(home, lake_file)[case]
    started = world.clock.started
    world.clock.overdue = status == 408  # the time-limit case is over its limit from its first instant
    try:
        _denied(world, "POST", "/v1/query", status=status, reason=reason, headers=world.auth("js.public_security"),
                body={"sql": sql})
    finally:
        world.clock.overdue = False
    assert not world.clock.hung
    if status == 408:  # stopped by the limit's own watchdog, not by anything else
        assert world.clock.started == started + 1


# --- an ungranted column or table, however spelled, is a denial ------------------------------------------

UNGRANTED_COLUMNS = ["issuing_authority", "issued_on", "valid_until", "updated_at", "batch_id", "province"]
# Letters with look-alikes (Cyrillic / Greek) and NFKC variants (fullwidth) of them.
HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "i": "і", "u": "υ", "d": "ԁ", "t": "τ", "s": "ѕ", "c": "с"}


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def _spellings(name: str) -> list[str]:
    first = next(ch for ch in name if ch in HOMOGLYPHS)
    return [name.upper(), name.title(), f'"{name.upper()}"', f'"{name}"', name.replace(first, HOMOGLYPHS[first], 1),
            _fullwidth(name), f'"{_fullwidth(name)}"', f"e_license.{name}", f"main.e_license.{name}",
            f"memory.main.e_license.{name}", f"lake.main.e_license.{name}", f"lake.e_license.{name}"]


SPELLING_CASES = [
    *(f"SELECT {spelling} FROM e_license" for name in UNGRANTED_COLUMNS[:3] for spelling in _spellings(name)),
    *(f"SELECT license_id FROM e_license WHERE {spelling} IS NOT NULL" for spelling in _spellings("valid_until")),
    *(f"SELECT * FROM {table}" for table in [
        "lake.main.e_license", "lake.e_license", "memory.main.enterprise_registration", "main.ENTERPRISE_REGISTRATION",
        '"Enterprise_Registration"', _fullwidth("enterprise_registration"), "еnterprise_registration",
        "system.main.e_license", "temp.main.e_license", "information_schema.e_license", "lake.snapshots()",
        "e_license.holder_id", '"lake"."main"."e_license"']),
    "SELECT holder_id FROM information_schema.columns",
    "SELECT issued_on FROM duckdb_tables()",
    "SELECT * FROM duckdb_columns() WHERE issuing_authority IS NULL",
    "SELECT (SELECT max(valid_until) FROM e_license) AS v",
]


def _refused_as_denial(world: World, sql: str) -> None:
    before = len(world.hub.log.read())
    response = _query(world, sql)
    assert response.status_code == 403, (sql, response.text)
    assert [e.action for e in _new_entries(world, before)] == ["access_denied"], sql
    _assert_no_leak(world, response.text)


@pytest.mark.parametrize("sql", SPELLING_CASES)
def test_every_spelling_of_an_ungranted_column_or_table_is_an_access_denial(world: World, sql: str) -> None:
    _refused_as_denial(world, sql)


@given(name=st.sampled_from(UNGRANTED_COLUMNS), data=st.data())
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_mix_of_case_homoglyphs_and_fullwidth_letters_is_an_access_denial(world: World, name: str,
                                                                            data: st.DataObject) -> None:
    # Each letter independently: kept, upper-cased, swapped for a look-alike or made fullwidth.
    def variants(ch: str) -> list[str]:
        return [ch, ch.upper(), HOMOGLYPHS.get(ch, ch), _fullwidth(ch)]

    spelled = "".join(data.draw(st.sampled_from(variants(ch))) for ch in name)
    quoted = data.draw(st.booleans())
    _refused_as_denial(world, f"SELECT {chr(34) + spelled + chr(34) if quoted else spelled} FROM e_license")


def test_bad_sql_is_a_400_and_logged_without_the_sql(world: World) -> None:
    before = len(world.hub.log.read())
    response = _query(world, "SELEC holder_id FROM e_license WHERE holder_id = '320102199001011234'")
    assert response.status_code == 400 and response.json()["error"] == "bad_query"
    entry = _new_entries(world, before)[-1]
    assert entry.action == "query_failed" and "320102199001011234" not in entry.model_dump_json()


def test_unknown_snapshot_is_a_400(world: World) -> None:
    response = _query(world, "SELECT 1", snapshot=99_999)
    assert response.status_code == 400 and "no snapshot 99999" in response.json()["reason"]


# --- grants -----------------------------------------------------------------------------------------


def test_expired_grant(world: World) -> None:
    _denied(world, "POST", "/v1/query", status=403, reason="expired on",
            headers=world.auth("zj.housing_provident_fund"), body={"sql": "SELECT * FROM e_license"})


def test_expired_grant_extract(world: World) -> None:
    _denied(world, "POST", "/v1/extracts", status=403, reason="grant g-zj on e_license expired on",
            headers=world.auth("zj.housing_provident_fund"), body={"dataset": "e_license"})


def test_revoked_grant(world: World) -> None:
    _denied(world, "POST", "/v1/query", status=403, reason="grant g-ah on e_license was revoked",
            headers=world.auth("ah.healthcare_security"), body={"sql": "SELECT count(*) FROM e_license"})


def test_department_without_a_grant(world: World) -> None:
    _denied(world, "POST", "/v1/extracts", status=403, reason="holds no grant on e_license",
            headers=world.auth("sh.public_security"), body={"dataset": "e_license"})


def test_dataset_not_granted_extract(world: World) -> None:
    _denied(world, "POST", "/v1/extracts", status=403, reason="holds no grant on enterprise_registration",
            headers=world.auth("js.public_security"), body={"dataset": "enterprise_registration"})


def test_unknown_dataset_extract(world: World) -> None:
    _denied(world, "POST", "/v1/extracts", status=403, reason="unknown dataset nope",
            headers=world.auth("js.public_security"), body={"dataset": "nope"})


def test_dataset_no_longer_shared_under_its_contract(world: World, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    contracts = tmp_path / "contracts"
    shutil.copytree(default_contracts_dir(), contracts)
    path = contracts / "e_license.odcs.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("value: conditional", "value: not_shared", 1),
                    encoding="utf-8")
    monkeypatch.setenv("EXCHANGE_CONTRACTS_DIR", str(contracts))
    _denied(world, "POST", "/v1/query", status=403, reason="e_license is not shared under its current contract",
            headers=world.auth("js.public_security"), body={"sql": "SELECT count(*) FROM e_license"})


def test_another_departments_grant_is_not_mine(world: World) -> None:
    # sh.market_regulation sees issuing_authority but not the holder; js the opposite.
    _denied(world, "POST", "/v1/query", status=403, reason="column holder_id " + "is outside your grant",
            headers=world.auth("sh.market_regulation"), body={"sql": "SELECT holder_id FROM e_license"})
    body = _query(world, "SELECT count(*) FROM e_license WHERE starts_with(region_code, '3201')",
                  department="sh.market_regulation")
    assert body.status_code == 403  # region_code is not in sh's grant either


# --- tokens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "reason"), [
    (None, "missing bearer token"),
    ("Bearer", "missing bearer token"),
    ("Basic anM6cHc=", "missing bearer token"),
    ("Bearer garbage", "malformed token"),
    ("Bearer yrd_0123456789abcdef", "malformed token"),
    ("Bearer yrd_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "unknown or its secret is wrong"),
])
def test_malformed_or_unknown_tokens(world: World, header: str | None, reason: str) -> None:
    headers = {"Authorization": header} if header else None
    payload = _denied(world, "GET", "/v1/me", status=401, reason=reason, headers=headers)
    assert payload["error"] == "unauthenticated"


def test_right_id_wrong_secret(world: World) -> None:
    token_id = world.tokens["js.public_security"].split(".")[0]
    _denied(world, "GET", "/v1/datasets", status=401, reason="unknown or its secret is wrong",
            headers={"Authorization": f"Bearer {token_id}.{'B' * 43}"})


def test_expired_token(world: World) -> None:
    _denied(world, "POST", "/v1/query", status=401, reason="expired on", headers=world.auth("expired"),
            body={"sql": "SELECT 1"})


def test_revoked_token(world: World) -> None:
    _denied(world, "POST", "/v1/query", status=401, reason="was revoked", headers=world.auth("revoked"),
            body={"sql": "SELECT 1"})


# --- extracts and downloads -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def js_extract(world: World) -> dict[str, Any]:
    response = world.client.post("/v1/extracts", headers=world.auth("js.public_security"),
                                 json={"dataset": "e_license"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_extract_is_cut_signed_downloadable_and_logged(world: World, js_extract: dict[str, Any]) -> None:
    manifest = js_extract["manifest"]["manifest"]
    assert manifest["rows"] == world.js_rows and manifest["columns"] == JS_COLUMNS
    for url in js_extract["downloads"]:
        response = world.client.get(url, headers=world.auth("js.public_security"))
        assert response.status_code == 200
        _assert_no_leak(world, response.content.decode("latin-1"))
    entry = world.hub.log.read()[-1]
    assert entry.action == "download" and entry.details["token_id"] == world.tokens["js.public_security"][:20]


@pytest.mark.parametrize(("path", "status", "reason"), [
    ("/v1/extracts/../e_license.parquet", 404, "Not Found"),
    ("/v1/extracts/..%2F..%2Fkeys/hub.key", 404, "Not Found"),
    ("/v1/extracts/{id}/..%2F..%2F..%2Fkeys%2Fhub.key", 404, "Not Found"),
    ("/v1/extracts/{id}/..", 405, "Method Not Allowed"),  # the client normalises it to /v1/extracts/
    ("/v1/extracts/{id}/.hidden", 403, "must be plain names"),
    ("/v1/extracts/{id}/a..b", 403, "must be plain names"),
    ("/v1/extracts/{id}/tokens.json", 404, "has no file tokens.json"),
    ("/v1/extracts/no-such-extract/extract-manifest.json", 404, "you have no extract no-such-extract"),
])
def test_path_traversal_in_downloads(world: World, js_extract: dict[str, Any], path: str, status: int,
                                     reason: str) -> None:
    url = path.replace("{id}", js_extract["extract_id"])
    # The router itself refuses paths whose segments would contain '/', before any handler runs.
    logged = status not in (404, 405) or "no" in reason
    payload = _denied(world, "GET", url, status=status, reason=reason, headers=world.auth("js.public_security"),
                      logged=logged)
    assert "PRIVATE KEY" not in str(payload)


def test_another_departments_token_cannot_download_my_extract(world: World, js_extract: dict[str, Any]) -> None:
    url = js_extract["downloads"][1]
    _denied(world, "GET", url, status=404, reason=f"you have no extract {js_extract['extract_id']}",
            headers=world.auth("sh.market_regulation"))


# --- what a department may see about itself ---------------------------------------------------------


def test_me_and_datasets_show_only_usable_grants(world: World) -> None:
    me = world.client.get("/v1/me", headers=world.auth("js.public_security")).json()
    assert me["department"]["id"] == "js.public_security" and [g["id"] for g in me["grants"]] == ["g-js"]
    assert me["grants"][0]["masking"]["holder_id"] == "resident_id"
    assert world.client.get("/v1/datasets", headers=world.auth("ah.healthcare_security")).json() == []


def test_openapi_document_lists_the_endpoints(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    assert {"/v1/me", "/v1/datasets", "/v1/query", "/v1/extracts", "/v1/extracts/{extract_id}/{file}"} <= set(
        spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
