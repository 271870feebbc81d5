"""The rejection report a provincial data office acts on: one set of files per batch under reports/<province>/.

* ``<batch>.rejections.csv``: one row per rejected record (key, the rules it broke, the offending values and
  the reason), UTF-8 with a BOM so spreadsheet software shows the Chinese text correctly;
* ``<batch>.rejections.html``: the same batch explained for the office (exchange.report.office);
* ``<batch>.summary.json``: counts and per-rule numbers for machines.

Offending values are masked by their field's classification (exchange.report.masked) in every file: the
report travels further than the lake. The full, unmasked record stays in the lake's quarantine table
(`exchange quarantine show`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from exchange import atomic
from exchange.contracts.load import load_contract
from exchange.contracts.model import REASON_SEPARATOR, Contract
from exchange.report.html import write_atomically
from exchange.report.masked import explain, flat
from exchange.report.office import OfficeReport, render

REPORT_COLUMNS = ("record_key", "rule_id", "severity", "offending_values", "reason")
_WINDOW = re.compile(r"\.(\d{8}T\d{6}Z)-(\d{8}T\d{6}Z)")
# A cell starting like this is run as a formula by spreadsheet software (CSV injection); "-12" stays a number.
_FORMULA_START = r"^([=+@\t\r]|-[^0-9.])"


def csv_path(reports_dir: Path, province: str, batch_id: str) -> Path:
    """Where the batch's rejection CSV is written."""
    return reports_dir / province / f"{batch_id}.rejections.csv"


def html_path(reports_dir: Path, province: str, batch_id: str) -> Path:
    """Where the batch's HTML report for the province office is written."""
    return reports_dir / province / f"{batch_id}.rejections.html"


def _join(parts: list[pa.Array], n: int) -> pa.Array:
    if not parts:
        return pa.nulls(n, pa.string())
    return flat(pc.binary_join_element_wise(*parts, REASON_SEPARATOR, null_handling="skip"))


def masked_rejections(quarantined: pa.Table, contract: Contract) -> pa.Table:
    """The CSV's rows: one per quarantined record, every value that came from the record masked."""
    n = quarantined.num_rows
    explained = explain(quarantined, contract)
    note = f"规则不在合同 {contract.version} 中 / rule not in contract version {contract.version}"
    unknown = pc.if_else(explained.unknown, pa.scalar(note), pa.scalar(None, pa.string()))
    reasons = _join([*(r.reasons for r in explained.rules), flat(unknown)], n)
    columns = {
        "record_key": explained.keys,
        "rule_id": quarantined.column("rule_id"),
        "severity": quarantined.column("severity"),
        "offending_values": _join([r.values for r in explained.rules], n),
        "reason": reasons,
    }
    return pa.table({name: columns[name] for name in REPORT_COLUMNS})


def _spreadsheet_safe(table: pa.Table) -> pa.Table:
    """Prefix cells a spreadsheet would run as a formula with an apostrophe (OWASP's CSV-injection advice)."""
    columns = []
    for column in table.columns:
        risky = pc.fill_null(pc.match_substring_regex(column, _FORMULA_START), False)
        columns.append(pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column))
    return pa.table(columns, names=table.column_names)


def window_of(batch_id: str) -> tuple[datetime, datetime] | None:
    """The window a batch id names (batch ids end with it, a replay's id after its origin's), else None."""
    found = _WINDOW.search(batch_id)
    if found is None:
        return None
    start, end = (datetime.strptime(g, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) for g in found.groups())
    return start, end


def write_rejection_report(
    reports_dir: Path,
    *,
    province: str,
    batch_id: str,
    quarantined: pa.Table,
    rules: Sequence[dict[str, Any]],
    counts: dict[str, Any],
    contract: Contract | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> Path:
    """Write the batch's CSV, HTML report and summary JSON under reports/<province>/; return the CSV path.

    `contract` is the one the batch was checked against (default: the dataset's current contract);
    `window` defaults to the one in the batch id.
    """
    if contract is None:
        contract = load_contract(batch_id.split(".")[1])
    csv_file = csv_path(reports_dir, province, batch_id)
    csv_file.parent.mkdir(parents=True, exist_ok=True)
    rows = _spreadsheet_safe(masked_rejections(quarantined, contract))
    with atomic.atomic_path(csv_file) as tmp, tmp.open("wb") as handle:
        handle.write("\ufeff".encode())
        pacsv.write_csv(rows, handle)
    report = OfficeReport.build(batch_id=batch_id, province=province, contract=contract, counts=counts,
                                rules=rules, quarantined=quarantined, window=window or window_of(batch_id))
    html_file = write_atomically(html_path(reports_dir, province, batch_id), render(report))
    summary = {
        "batch_id": batch_id,
        "province": province,
        "counts": counts,
        "rules": [r for r in rules if r["unexpected"]],
        "held": counts.get("held", False),
        "rejections_csv": csv_file.name,
        "rejections_html": html_file.name,
    }
    (csv_file.parent / f"{batch_id}.summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return csv_file
