"""`exchange trace`: one record's history from the province's payload to the extracts that carried it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from exchange.cli import app
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.provenance.manifest import read_manifest
from exchange.provenance.trace import trace_record
from tests.hubs import extract_home

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 4, tzinfo=UTC)
DEPARTMENT = "js.public_security"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    return extract_home(tmp_path_factory.mktemp("trace") / "home", 300, 7, START, END, DEPARTMENT)


def _one(hub: Hub, sql: str) -> str:
    with connect(hub.settings, read_only=True) as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return str(row[0])


def test_an_extracted_record_is_traced_from_payload_to_extract(hub: Hub) -> None:
    key = _one(hub, f"SELECT license_id FROM {LAKE}.e_license WHERE status = 'valid' "
                    "AND starts_with(region_code, '32') ORDER BY license_id LIMIT 1")
    result = trace_record(hub.settings, "e_license", key)
    assert result.found
    assert [e.kind for e in result.events] == ["insert"]
    (batch,) = result.batches
    manifest = read_manifest(next(hub.layout.manifests.rglob("*.json")))
    assert batch.manifest_sha256 == manifest.digest()
    assert batch.snapshot_id == manifest.manifest.snapshot_id == result.events[0].snapshot_id
    assert batch.landing == {f.name: f.sha256 for f in manifest.manifest.landing} and batch.landing
    m = manifest.manifest
    assert batch.contract.startswith(m.contract_id) and m.contract_version in batch.contract
    assert [p.split()[1] for p in batch.provenance][:2] == ["pull", "validate"] and "commit" in batch.provenance[-1]
    (extract,) = result.extracts
    assert extract.department == DEPARTMENT and extract.carried is True
    assert extract.purpose and "verify licences" in extract.purpose
    delivered = pq.read_table(hub.layout.extracts / DEPARTMENT / "e_license.parquet").column("license_id")
    assert key in delivered.to_pylist()


def test_a_record_outside_the_grant_is_not_carried(hub: Hub) -> None:
    key = _one(hub, f"SELECT license_id FROM {LAKE}.e_license WHERE status <> 'valid' ORDER BY license_id LIMIT 1")
    (extract,) = trace_record(hub.settings, "e_license", key).extracts
    assert extract.carried is False


def test_a_quarantined_record_shows_the_rule_and_reason(hub: Hub) -> None:
    key = _one(hub, f"SELECT record_key FROM {LAKE}.quarantine ORDER BY record_key LIMIT 1")
    rule = _one(hub, f"SELECT rule_id FROM {LAKE}.quarantine WHERE record_key = '{key}' ORDER BY rule_id LIMIT 1")
    result = trace_record(hub.settings, "e_license", key)
    quarantine = [e for e in result.events if e.kind == "quarantine"]
    assert quarantine and rule in quarantine[0].detail
    assert result.batches[0].manifest_sha256


def test_cli_json_and_an_unknown_record(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_HOME", str(hub.settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    key = _one(hub, f"SELECT license_id FROM {LAKE}.e_license ORDER BY license_id LIMIT 1")
    runner = CliRunner()
    out = runner.invoke(app, ["trace", "e_license", key, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["key"] == key
    table = runner.invoke(app, ["trace", "e_license", key])
    assert table.exit_code == 0 and "Batches that carried it" in table.output
    missing = runner.invoke(app, ["trace", "e_license", "NO-SUCH-LICENCE"])
    assert missing.exit_code == 1 and "never received" in missing.output


def test_subject_trace_names_departments_and_never_logs_the_id(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from exchange.provenance.subject import trace_subject

    monkeypatch.setenv("EXCHANGE_HOME", str(hub.settings.home))
    person = _one(hub, f"SELECT holder_id FROM {LAKE}.e_license WHERE status = 'valid' "
                       "AND starts_with(region_code, '32') ORDER BY license_id LIMIT 1")
    outsider = _one(hub, f"SELECT holder_id FROM {LAKE}.e_license WHERE status <> 'valid' ORDER BY license_id LIMIT 1")
    result = trace_subject(hub.settings, person)
    assert result.records_in_lake["e_license"] >= 1
    (disclosure,) = result.disclosures
    assert disclosure.department == DEPARTMENT and disclosure.records >= 1 and disclosure.purpose
    assert disclosure.grant_id == "grant-js-public-security-e-license"
    again = trace_subject(hub.settings, person.lower())
    assert again.subject == result.subject and result.subject.startswith("hmac-sha256:")
    assert trace_subject(hub.settings, outsider).disclosures == [] or outsider == person
    key_file = hub.layout.keys / "subject-index.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    out = CliRunner().invoke(app, ["trace", "--subject", "-", "--json"], input=person + "\n")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["disclosures"][0]["department"] == DEPARTMENT
    log = hub.log.path.read_text()
    assert person not in log and result.subject in log
