"""The province office's report of a batch: the HTML page and CSV of a real exchange, masking, HELD, the summary.

Exchanges run through the Jiangsu file-drop sandbox into a real DuckLake, as tests/unit/test_pipeline.py does.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from rich.console import Console

from adapters.base import sandbox_for
from adapters.jiangsu.sandbox import JiangsuSandbox
from exchange.access.extract import SignedExtractManifest
from exchange.config import ExchangeSettings
from exchange.contracts.load import load_contract
from exchange.contracts.validate import validate
from exchange.errors import TerminalError
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from exchange.provenance.manifest import read_manifest
from exchange.provenance.verify import VerifyReport
from exchange.report.masked import WITHHELD, masked_columns
from exchange.report.office import bilingual
from exchange.report.rejections import write_rejection_report
from exchange.report.summary import print_summary
from exchange.stages import ExchangeResult
from exchange.synthetic import DEFECT_COLUMN, generate

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
RECORDS = 1500


def _hub(home: Path) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    assert isinstance(sandbox, JiangsuSandbox)
    return Hub(ExchangeSettings(home=home, jiangsu_drop_dir=sandbox.drop))


def _seed(hub: Hub, n: int, *, defect_rate: float | None = None) -> pa.Table:
    options: dict[str, Any] = {} if defect_rate is None else {"defect_rate": defect_rate}
    table = generate("e_license", "jiangsu", n, seed=11, start=START, end=MID, **options)
    sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu").seed("e_license", table)
    return table


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, pa.Table, ExchangeResult]]:
    """One committed Jiangsu e_license batch with the usual ~3 % defects: (hub, source table, run result)."""
    home = tmp_path_factory.mktemp("office") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXCHANGE_HOME", str(home))
        hub = _hub(home)
        source = _seed(hub, RECORDS)
        result = run_exchange("jiangsu", "e_license", START, END, hub)
        assert result.status == "committed" and result.quarantined > 0
        yield hub, source, result


def _files(hub: Hub, batch_id: str) -> tuple[str, str]:
    folder = hub.layout.reports / "jiangsu"
    html = (folder / f"{batch_id}.rejections.html").read_text(encoding="utf-8")
    raw = (folder / f"{batch_id}.rejections.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    return html, raw.decode("utf-8-sig")


def test_the_html_report_of_a_batch_has_its_counts_and_every_failing_rule_in_both_languages(
    batch: tuple[Hub, pa.Table, ExchangeResult],
) -> None:
    hub, _, result = batch
    html, _ = _files(hub, result.batch_id)
    contract = load_contract("e_license")
    summary = json.loads((hub.layout.reports / "jiangsu" / f"{result.batch_id}.summary.json").read_text())
    assert summary["rejections_html"] == f"{result.batch_id}.rejections.html"
    assert '<html lang="zh-CN">' in html and "<script" not in html and "http" not in html  # nothing fetched
    for text in (result.batch_id, "江苏省", "电子证照", "Electronic licences", contract.id, contract.version,
                 "2026-11-01 08:00", "NOT HELD"):
        assert escape(text) in html, text
    counts = html.split('class="counts"')[1].split("</table>")[0]
    rate = f"{result.quarantined / result.pulled * 100:.2f}".rstrip("0").rstrip(".") + "%"
    for value in (result.pulled, result.accepted, result.quarantined, rate):
        assert f">{value}<" in counts, value
    rules = html.split('class="rules"')[1].split("</table>")[0]
    failing = [r for r in summary["rules"] if r["unexpected"]]
    assert failing and sum(r["unexpected"] for r in failing if r["severity"] == "error") >= result.quarantined
    for counted in failing:
        rule = contract.rule(counted["rule_id"])
        zh, en = bilingual(rule.description)
        field_zh, field_en = bilingual(contract.field(rule.columns[0]).description)
        row = rules.split(f"<td>{escape(rule.id)}</td>")[1].split("</tr>")[0]
        for text in (zh, en, field_zh, field_en):
            assert escape(text) in row, (rule.id, text)
        assert f'<td class="n">{counted["unexpected"]}</td>' in row
    sample = html.split('class="sample"')[1].split("</table>")[0]
    assert sample.count("<tr>") - 1 >= min(result.quarantined, 50)  # header row + one row per broken rule


def test_no_resident_id_appears_in_clear_in_the_html_or_the_csv(batch: tuple[Hub, pa.Table, ExchangeResult]) -> None:
    hub, source, result = batch
    html, text = _files(hub, result.batch_id)
    ids = [i for i in source.column("holder_id").to_pylist() if i]
    assert not [i for i in ids if i in html or i in text]
    # The records rejected for their resident ID are listed, masked as a department would see them.
    bad = source.filter(pc.equal(source[DEFECT_COLUMN], "bad_id_checksum"))
    assert bad.num_rows
    for holder_id in bad.column("holder_id").to_pylist():
        assert f"holder_id='{holder_id[:6]}{'*' * (len(holder_id) - 10)}{holder_id[-4:]}'" in text


def test_the_csv_has_one_masked_row_per_rejected_record(batch: tuple[Hub, pa.Table, ExchangeResult]) -> None:
    hub, _, result = batch
    _, text = _files(hub, result.batch_id)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["record_key", "rule_id", "severity", "offending_values", "reason"]
    assert len(rows) == result.quarantined
    with connect(hub.settings, read_only=True) as con:
        keys = {r[0] for r in con.execute(f"SELECT record_key FROM {LAKE}.quarantine").fetchall()}
    assert {r["record_key"] for r in rows} == keys
    contract = load_contract("e_license")
    for row in rows:
        assert row["offending_values"] and row["reason"].startswith(row["offending_values"].split("; ")[0])
        for rule_id in row["rule_id"].split(","):
            rule = contract.rule(rule_id)
            assert rule.severity == "error" and row["severity"] == "error"
            assert bilingual(rule.description)[0] in row["reason"]  # the Chinese text survives the round trip


def test_a_held_batch_says_held_and_what_to_do(home: Path) -> None:
    hub = _hub(home)
    _seed(hub, 400, defect_rate=0.5)
    with pytest.raises(TerminalError, match=r"held.*rejections\.html"):
        run_exchange("jiangsu", "e_license", START, END, hub)
    batch_id = next((hub.layout.reports / "jiangsu").glob("*.rejections.html")).name.removesuffix(".rejections.html")
    html, _ = _files(hub, batch_id)
    verdict = html.split('id="verdict"')[1].split("</p>")[0]
    assert "HELD" in verdict and "NOT HELD" not in verdict and "整批暂停入湖" in verdict
    assert escape("nothing from it was committed") in html
    assert "exchange run --province jiangsu --dataset e_license --start 2026-11-01T00:00:00+00:00" in html
    assert not list(hub.layout.manifests.rglob("*.json"))  # nothing committed


def test_malformed_and_sensitive_values_are_masked_by_classification() -> None:
    contract = load_contract("provident_fund_transfer")
    records = ['{"transfer_id":"T1","person_name":"张三丰","person_id":"320102199001011234","transfer_amount":12.5}',
               '{"transfer_id":"T2","person_name":"李","person_id":"12345","transfer_amount":null}',
               '{"transfer_id":"T3","person_name":null,"person_id":null,"transfer_amount":-1}']
    masked = masked_columns(pa.table({"record_json": records}), contract,
                            ["transfer_id", "person_name", "person_id", "transfer_amount"])
    assert masked.to_pydict() == {
        "transfer_id": ["T1", "T2", "T3"],
        "person_name": ["张**", "*", None],
        "person_id": ["320102********1234", "*****", None],  # too short to keep 6 + 4: all starred
        "transfer_amount": [WITHHELD, None, WITHHELD],
    }


def test_a_short_id_and_a_formula_key_reach_the_csv_masked_and_defused(tmp_path: Path) -> None:
    contract = load_contract("e_license")
    table = generate("e_license", "jiangsu", 20, seed=3, start=START, end=MID, defect_rate=0.0).drop_columns(
        [DEFECT_COLUMN])
    ids = table.column("license_id").to_pylist()
    holders = table.column("holder_id").to_pylist()
    ids[0], holders[0] = '=HYPERLINK("http://evil.example")', "32010219"
    table = table.set_column(table.schema.get_field_index("license_id"), "license_id", pa.array(ids)).set_column(
        table.schema.get_field_index("holder_id"), "holder_id", pa.array(holders))
    outcome = validate(table, contract, province="jiangsu", batch_id="jiangsu.e_license.test", today=date(2026, 11, 8))
    assert outcome.quarantined_count == 1
    counts = {"pulled": outcome.pulled, "accepted": outcome.accepted_count,
              "quarantined": outcome.quarantined_count, "warned": outcome.warned_count, "held": outcome.held}
    rules = [{"rule_id": r.rule_id, "severity": r.severity, "unexpected": r.unexpected_count} for r in outcome.rules]
    path = write_rejection_report(tmp_path, province="jiangsu", batch_id="jiangsu.e_license.test",
                                  quarantined=outcome.quarantined, rules=rules, counts=counts, contract=contract)
    row = next(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
    assert row["record_key"].startswith("'=HYPERLINK")
    assert row["offending_values"] == "holder_id='********'"
    html = (tmp_path / "jiangsu" / "jiangsu.e_license.test.rejections.html").read_text(encoding="utf-8")
    assert "32010219" not in html and "32010219" not in path.read_text(encoding="utf-8-sig")
    assert escape('=HYPERLINK("http://evil.example")') in html and '=HYPERLINK("' not in html


def test_the_demo_summary_counts_records_per_rule_and_links_one_office_report(
    batch: tuple[Hub, pa.Table, ExchangeResult],
) -> None:
    hub, _, result = batch
    extract = cast(SignedExtractManifest, SimpleNamespace(manifest=SimpleNamespace(
        department="js.public_security", grant_id="g1", rows=1, dataset="e_license", snapshot_id=1,
        columns=["license_id"])))
    console = Console(record=True, width=200, file=io.StringIO())
    assert print_summary(console, hub, {"exchange_jiangsu": "success"}, extract, VerifyReport()) == 0
    out = console.export_text()
    manifest = read_manifest(next(hub.layout.manifests.rglob("*.json"))).manifest
    table = out.split("Records per contract rule")[1].split("Extract for")[0]
    failing = [r for r in manifest.rules if r.unexpected]
    assert failing
    for rule in failing:
        line = next(ln for ln in table.splitlines() if f" {rule.rule_id} " in ln)
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        assert cells == ["e_license", rule.rule_id, rule.severity, str(rule.unexpected), str(rule.unexpected)]
    report = hub.layout.reports / "jiangsu" / f"{result.batch_id}.rejections.html"
    assert f"Province office report of one batch: {report}" in out
