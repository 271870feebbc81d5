"""The rejection report a provincial data office acts on: one file per batch, one row per rejected record.

CSV in UTF-8 with a BOM (so spreadsheet software shows the Chinese reasons correctly), plus a per-rule
summary in JSON. Records are listed with their key, the rules they broke and why; the full record is in
the lake's quarantine table (`exchange quarantine show`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

REPORT_COLUMNS = ("record_key", "rule_id", "reason", "severity")


def write_rejection_report(
    reports_dir: Path,
    *,
    province: str,
    batch_id: str,
    quarantined: pa.Table,
    rules: Sequence[dict[str, Any]],
    counts: dict[str, Any],
) -> Path:
    """Write reports/<province>/<batch_id>.rejections.csv and .summary.json; return the CSV path."""
    folder = reports_dir / province
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{batch_id}.rejections.csv"
    rows = quarantined.select(list(REPORT_COLUMNS))
    with csv_path.open("wb") as handle:
        handle.write("\ufeff".encode())
        pacsv.write_csv(rows, handle)
    summary = {
        "batch_id": batch_id,
        "province": province,
        "counts": counts,
        "rules": [r for r in rules if r["unexpected"]],
        "held": counts.get("held", False),
        "rejections_csv": csv_path.name,
    }
    (folder / f"{batch_id}.summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return csv_path
