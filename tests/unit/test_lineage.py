"""OpenLineage events of exchange runs: START then COMPLETE/FAIL per batch, file transport by default,
HTTP (as to Marquez) when OPENLINEAGE_URL is set."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.base import sandbox_for
from adapters.jiangsu.sandbox import JiangsuSandbox
from exchange import lineage
from exchange.errors import SourceFormatError
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.provenance.manifest import read_manifest
from exchange.synthetic import generate
from tests.hubs import sandbox_hub
from tests.unit import openlineage_spec

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _openlineage_environment() -> Iterator[None]:
    """OpenLineage's client copies OPENLINEAGE_URL into further OPENLINEAGE__* variables of os.environ;
    restore the environment so no configuration leaks into later tests."""
    before = {k: v for k, v in os.environ.items() if k.startswith("OPENLINEAGE")}
    for name in before:
        del os.environ[name]
    yield
    for name in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        del os.environ[name]
    os.environ.update(before)


@pytest.fixture
def hub(home: Path) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    sandbox.seed("e_license", generate("e_license", "jiangsu", 500, seed=3, start=START, end=MID))
    return sandbox_hub(home, sandbox)


def _events(hub: Hub) -> list[dict[str, Any]]:
    """The events the hub wrote, each checked against the official OpenLineage JSON Schemas first."""
    path = lineage.events_file(hub.settings)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for event in events:
        assert openlineage_spec.problems(event) == [], event["eventType"]
    return events


def test_a_committed_batch_reports_start_and_complete_with_its_quality_and_manifest(hub: Hub) -> None:
    result = run_exchange("jiangsu", "e_license", START, MID, hub)

    start, complete = _events(hub)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"] == lineage.run_id(result.batch_id)
    assert complete["job"] == {"namespace": "yrd-exchange", "name": "exchange_jiangsu.e_license", "facets": {}}
    (source,) = complete["inputs"]
    (table,) = complete["outputs"]
    assert (source["namespace"], source["name"]) == ("province://jiangsu", "e_license")
    assert (table["namespace"], table["name"]) == ("ducklake://lake", "e_license")  # the Airflow Asset URI

    manifest = read_manifest(Path(result.manifest)).manifest
    assertions = {a["assertion"]: a for a in source["inputFacets"]["dataQualityAssertions"]["assertions"]}
    assert set(assertions) == {r.rule_id for r in manifest.rules}
    for rule in manifest.rules:
        assert assertions[rule.rule_id]["success"] is (rule.unexpected == 0)
    assert source["inputFacets"]["dataQualityMetrics"]["rowCount"] == manifest.counts.pulled
    assert table["outputFacets"]["outputStatistics"]["rowCount"] == manifest.counts.accepted
    run = complete["run"]["facets"]["yrdExchange"]
    assert {k: run[k] for k in ("batch_id", "province", "dataset", "snapshot_id")} == manifest.model_dump(
        include={"batch_id", "province", "dataset", "snapshot_id"})
    assert (run["accepted"], run["quarantined"]) == (manifest.counts.accepted, manifest.counts.quarantined)
    assert run["manifest_sha256"] == result.manifest_sha256
    contract = {k: v for k, v in source["facets"]["contract"].items() if not k.startswith("_")}
    assert contract == manifest.model_dump(include={"contract_id", "contract_version", "contract_sha256"})
    assert complete["producer"] == run["_producer"] == lineage.PRODUCER


def test_a_failed_pull_reports_fail_with_the_error(hub: Hub) -> None:
    run_exchange("jiangsu", "e_license", START, MID, hub)
    drop = Path(hub.settings.jiangsu_drop_dir or "")
    JiangsuSandbox(drop.parent).deliver("电子证照_20261105.csv", b"\xff\xfe\x00garbage\x81\x00")
    with pytest.raises(SourceFormatError):
        run_exchange("jiangsu", "e_license", MID, END, hub)

    *_, start, fail = _events(hub)
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert start["run"]["runId"] == fail["run"]["runId"]
    assert "电子证照_20261105.csv" in fail["run"]["facets"]["errorMessage"]["message"]


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def marquez() -> Iterator[str]:
    """A stand-in lineage server on loopback speaking OpenLineage's HTTP API (POST /api/v1/lineage)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_openlineage_url_sends_the_events_over_http_instead(
    hub: Hub, marquez: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", marquez)
    run_exchange("jiangsu", "e_license", START, MID, hub)
    assert [(path, event["eventType"]) for path, event in _Collector.received] == [
        ("/api/v1/lineage", "START"), ("/api/v1/lineage", "COMPLETE"),
    ]
    assert all(openlineage_spec.problems(event) == [] for _, event in _Collector.received)
    assert not lineage.events_file(hub.settings).exists()


def test_an_unreachable_lineage_server_never_fails_the_batch(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenLineage's structured configuration; no retries so the test does not wait out the backoff.
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__RETRY", '{"total": 0}')
    assert run_exchange("jiangsu", "e_license", START, MID, hub).status == "committed"


def test_assertions_name_their_column_and_custom_facets_validate_against_the_published_schema(hub: Hub) -> None:
    import jsonschema

    from exchange.contracts.load import load_contract
    from exchange.schemas import SCHEMAS_DIR

    run_exchange("jiangsu", "e_license", START, MID, hub)
    _, complete = _events(hub)
    (source,) = complete["inputs"]
    contract = load_contract("e_license")
    assertions = source["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert assertions
    for assertion in assertions:
        rule = contract.rule(assertion["assertion"])
        assert rule.columns, f"{rule.id} tests no column"
        assert assertion["column"] == rule.columns[0], assertion

    published = json.loads((SCHEMAS_DIR / lineage.FACETS_SCHEMA).read_text(encoding="utf-8"))
    assert published == lineage.facets_schema(), "stale: run `make schemas`"
    custom = [complete["run"]["facets"]["yrdExchange"], source["facets"]["contract"]]
    for facet in custom:
        url, _, pointer = facet["_schemaURL"].partition("#")
        assert url == lineage.FACETS_SCHEMA_URL and url.endswith(f"/schemas/{lineage.FACETS_SCHEMA}")
        definition = published["$defs"][pointer.removeprefix("/$defs/")]
        jsonschema.validate(facet, definition)
        with pytest.raises(jsonschema.ValidationError):  # the schema has teeth: an unknown field is refused
            jsonschema.validate({**facet, "unexpected": 1}, definition)


def test_every_facet_is_checked_against_its_official_schema_and_the_check_has_teeth(hub: Hub) -> None:
    run_exchange("jiangsu", "e_license", START, MID, hub)
    _, complete = _events(hub)
    (source,) = complete["inputs"]
    (table,) = complete["outputs"]
    schemas = {
        url.partition("#")[0].rsplit("/", 1)[-1]
        for item in (source, table) for group in ("facets", "inputFacets", "outputFacets")
        for url in (f["_schemaURL"] for f in (item.get(group) or {}).values())
    }
    assert {"SchemaDatasetFacet.json", "DataQualityAssertionsDatasetFacet.json",
            "DataQualityMetricsInputDatasetFacet.json", "OutputStatisticsOutputDatasetFacet.json"} <= schemas
    columns = [f["name"] for f in table["facets"]["schema"]["fields"]]
    assert {a["column"] for a in source["inputFacets"]["dataQualityAssertions"]["assertions"]} <= set(columns)

    def broken(edit: Any) -> list[str]:
        event = json.loads(json.dumps(complete))
        edit(event)
        return openlineage_spec.problems(event)

    assertions = ("inputs", 0, "inputFacets", "dataQualityAssertions", "assertions", 0)

    def at(event: dict[str, Any], path: tuple[Any, ...]) -> Any:
        for step in path:
            event = event[step]
        return event

    assert broken(lambda e: e.update(eventType="DONE"))
    assert broken(lambda e: at(e, assertions).pop("success"))
    assert broken(lambda e: at(e, assertions).update(column=7))
    assert broken(lambda e: e["outputs"][0]["facets"]["schema"]["fields"][0].pop("name"))
    assert broken(lambda e: e["run"]["facets"]["yrdExchange"].update(accepted="many"))
    assert broken(lambda e: e["run"]["facets"]["yrdExchange"].update(_schemaURL="https://example.org/x.json"))
    assert broken(lambda e: e["outputs"][0]["facets"].update(columns=e["outputs"][0]["facets"].pop("schema")))


def test_a_fail_event_meets_the_spec(hub: Hub) -> None:
    lineage.failed(hub.settings, "jiangsu.e_license.b1", "jiangsu", "e_license", ValueError("bad 电子证照 drop"))
    (fail,) = _events(hub)
    assert fail["eventType"] == "FAIL" and fail["run"]["facets"]["errorMessage"]["programmingLanguage"] == "python"
