"""Access operations as a department sees them: extracts, with every access recorded in provenance."""

from __future__ import annotations

from pathlib import Path

from exchange.access.extract import SignedExtractManifest, cut_extract, extract_digest
from exchange.access.registry import Registry
from exchange.errors import AccessDenied
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import Hub


def latest_snapshot(hub: Hub) -> int:
    """The lake's current snapshot id."""
    with connect(hub.settings, read_only=True) as con:
        row = con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()
    assert row is not None
    return int(row[0])


def extract_for_department(
    hub: Hub, department: str, dataset: str, out_dir: Path, snapshot: int | None = None
) -> SignedExtractManifest:
    """Cut the department's grant on `dataset` at `snapshot` (default: latest) into `out_dir`."""
    registry = Registry(hub.layout.access)
    try:
        grant = registry.active_grant(department, dataset)
    except AccessDenied as denied:
        hub.log.append(hub.signer, actor=department, action="access_denied", subject=dataset,
                       details={"reason": str(denied)})
        raise
    snapshot = snapshot if snapshot is not None else latest_snapshot(hub)
    with connect(hub.settings, read_only=True) as con:
        signed = cut_extract(con, grant, snapshot, out_dir, hub.signer)
    m = signed.manifest
    hub.log.append(
        hub.signer, actor=department, action="extract", subject=m.extract_id,
        digests={"extract_manifest": extract_digest(signed), **{f.name: f.sha256 for f in m.files}},
        details={"grant": m.grant_id, "dataset": dataset, "snapshot_id": snapshot, "rows": m.rows,
                 "out": str(out_dir)},
    )
    return signed
