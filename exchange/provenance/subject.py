"""`exchange trace --subject RESIDENT_ID`: which departments received records about one person (PIPL art. 45).

The resident ID is held in memory only. Everything written about the question (the provenance entry that
records that someone asked) names the subject by a keyed hash, HMAC-SHA256 under a secret key kept in
EXCHANGE_HOME/keys (0600): the token links repeated questions about the same person, but neither the log
nor a copy of it reveals the ID, and without the key the token cannot be confirmed by guessing IDs.

The answer is computed from the signed extract manifests: for each extract, the person's records that
the grant's row filter selected at the extract's snapshot (the same rows the extract was cut from),
whether or not the ID column itself was delivered.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from pathlib import Path

import duckdb
from pydantic import BaseModel, Field

from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest
from exchange.access.policy import RowFilter
from exchange.access.terms import grant_row_filter
from exchange.atomic import secret_key
from exchange.config import ExchangeSettings, Layout
from exchange.contracts.load import load_contract
from exchange.datasets import E_LICENSE, ENTERPRISE_REGISTRATION
from exchange.datasets import dataset as canonical_dataset
from exchange.lake.connect import LAKE, connect
from exchange.provenance.storecheck import lake_exists

SUBJECT_KEY = "subject-index.key"
ID_MASKING = "resident_id"
DATASETS = (E_LICENSE, ENTERPRISE_REGISTRATION)  # contracts mark resident-ID columns by this masking rule


class SubjectDisclosure(BaseModel, frozen=True):
    """One extract that carried records about the person."""

    department: str = Field(description="Recipient department")
    dataset: str = Field(description="Dataset")
    extract_id: str = Field(description="Extract id")
    grant_id: str = Field(description="Grant it was cut under")
    purpose: str | None = Field(description="The grant's purpose")
    legal_basis: str | None = Field(description="The grant's legal basis")
    snapshot_id: int = Field(description="Lake snapshot it was cut from")
    created_at: datetime = Field(description="When the department received it")
    records: int = Field(description="Records about the person in the extract")


class SubjectTrace(BaseModel, frozen=True):
    """Who received records about one person; the person is named only by the keyed hash."""

    subject: str = Field(description="hmac-sha256:<hex> of the resident ID under the hub's subject key")
    records_in_lake: dict[str, int] = Field(description="Dataset -> records about the person in the lake now")
    disclosures: list[SubjectDisclosure] = Field(description="Extracts that carried records about the person")


def subject_key(keys_dir: Path) -> bytes:
    """The secret HMAC key, created (0600, never overwritten) on first use."""
    return secret_key(keys_dir / SUBJECT_KEY)


def subject_token(key: bytes, resident_id: str) -> str:
    """The keyed hash that stands for the person wherever the hub writes about them."""
    normalized = resident_id.strip().upper()  # the check character 'x' and 'X' are the same ID
    return "hmac-sha256:" + hmac.new(key, normalized.encode(), hashlib.sha256).hexdigest()


def id_columns(dataset: str) -> list[str]:
    """The dataset's columns that hold resident IDs, from its contract."""
    contract = load_contract(dataset)
    return [c for c in canonical_dataset(dataset).schema.names
            if c in contract.field_names and contract.field(c).masking == ID_MASKING]


def _count(con: duckdb.DuckDBPyConnection, dataset: str, columns: list[str], resident_id: str,
           snapshot: int | None = None, extra: RowFilter | None = None) -> int:
    extra = extra or RowFilter("TRUE")
    who = " OR ".join(f'"{c}" = ?' for c in columns)
    at = f" AT (VERSION => {int(snapshot)})" if snapshot is not None else ""
    row = con.execute(f'SELECT count(*) FROM {LAKE}."{dataset}"{at} WHERE ({who}) AND {extra.sql}',
                      [*([resident_id.strip().upper()] * len(columns)), *extra.params]).fetchone()
    return int(row[0]) if row else 0


def trace_subject(settings: ExchangeSettings, resident_id: str) -> SubjectTrace:
    """Every extract that carried records about the person, and their records in the lake now (read-only)."""
    layout = Layout(settings.home)
    token = subject_token(subject_key(layout.keys), resident_id)
    from exchange.access.registry import Registry

    grants = {g.grant.id: g.grant for g in Registry(layout.access).grants()}
    in_lake: dict[str, int] = {}
    disclosures: list[SubjectDisclosure] = []
    if not lake_exists(settings):
        return SubjectTrace(subject=token, records_in_lake={}, disclosures=[])
    with connect(settings, read_only=True) as con:
        tables = {str(r[0]) for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [LAKE]).fetchall()}
        columns: dict[str, list[str]] = {d.name: id_columns(d.name) for d in DATASETS if d.name in tables}
        for dataset, cols in columns.items():
            if cols:
                in_lake[dataset] = _count(con, dataset, cols, resident_id)
        manifests = sorted(layout.extracts.rglob(EXTRACT_MANIFEST)) if layout.extracts.is_dir() else []
        for path in manifests:
            m = SignedExtractManifest.model_validate_json(path.read_text(encoding="utf-8")).manifest
            cols = columns.get(m.dataset) or []
            if not cols:
                continue
            hits = _count(con, m.dataset, cols, resident_id, m.snapshot_id,
                          grant_row_filter(m.row_filter, m.dataset))
            if hits:
                grant = grants.get(m.grant_id)
                disclosures.append(SubjectDisclosure(
                    department=m.department, dataset=m.dataset, extract_id=m.extract_id, grant_id=m.grant_id,
                    purpose=grant.purpose if grant else None, legal_basis=grant.legal_basis if grant else None,
                    snapshot_id=m.snapshot_id, created_at=m.created_at, records=hits))
    disclosures.sort(key=lambda d: d.created_at)
    return SubjectTrace(subject=token, records_in_lake=in_lake, disclosures=disclosures)
