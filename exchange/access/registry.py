"""The department and grant registry under EXCHANGE_HOME/access (JSON documents, grants signed)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from exchange.access.models import Department, Grant, SignedGrant
from exchange.contracts.load import load_contract
from exchange.datasets import dataset as canonical_dataset
from exchange.errors import AccessDenied
from exchange.signing.canonical import canonical_bytes
from exchange.signing.keys import Signer


class Registry:
    """Departments and signed grants, stored as JSON files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.departments_path = directory / "departments.json"
        self.grants_path = directory / "grants.json"

    def departments(self) -> list[Department]:
        """Every registered department."""
        if not self.departments_path.exists():
            return []
        return [Department.model_validate(d) for d in json.loads(self.departments_path.read_text())]

    def department(self, department_id: str) -> Department:
        """One department, or AccessDenied naming the unknown id."""
        for d in self.departments():
            if d.id == department_id:
                return d
        raise AccessDenied(f"unknown department {department_id!r}; register it with `exchange departments add`")

    def add_department(self, department: Department) -> None:
        """Register (or update) a department."""
        others = [d for d in self.departments() if d.id != department.id]
        self._write(self.departments_path, [d.model_dump(mode="json") for d in [*others, department]])

    def grants(self) -> list[SignedGrant]:
        """Every recorded grant."""
        if not self.grants_path.exists():
            return []
        return [SignedGrant.model_validate(g) for g in json.loads(self.grants_path.read_text())]

    def add_grant(self, grant: Grant, signer: Signer) -> SignedGrant:
        """Check the grant against the contract's sharing terms, sign it and record it."""
        self.department(grant.department)
        contract = load_contract(grant.dataset)
        known = set(canonical_dataset(grant.dataset).schema.names)
        unknown = [c for c in grant.columns + [r.column for r in grant.row_filter] if c not in known]
        if unknown:
            raise AccessDenied(f"grant {grant.id}: unknown column(s) {', '.join(unknown)} in {grant.dataset}")
        if contract.sharing_type == "not_shared":
            raise AccessDenied(f"{grant.dataset} is not shared under its contract; no grant is possible")
        if contract.sharing_type == "conditional" and not (grant.purpose.strip() and grant.legal_basis.strip()):
            raise AccessDenied(f"{grant.dataset} is conditionally shared: a grant needs a purpose and a legal basis")
        if grant.unmasked and not grant.justification.strip():
            raise AccessDenied(f"grant {grant.id}: unmasked columns need an explicit justification")
        signed = SignedGrant(grant=grant, signature=signer.sign(canonical_bytes(grant.model_dump(mode="json"))))
        others = [g for g in self.grants() if g.grant.id != grant.id]
        self._write(self.grants_path, [g.model_dump(mode="json") for g in [*others, signed]])
        return signed

    def active_grant(self, department_id: str, dataset: str, today: date | None = None) -> SignedGrant:
        """The department's unexpired grant on the dataset, or AccessDenied saying why there is none."""
        self.department(department_id)
        today = today or datetime.now(UTC).date()
        mine = [g for g in self.grants() if g.grant.department == department_id and g.grant.dataset == dataset]
        if not mine:
            raise AccessDenied(f"{department_id} holds no grant on {dataset}")
        live = [g for g in mine if g.grant.expires_on >= today]
        if not live:
            raise AccessDenied(f"{department_id}'s grant on {dataset} expired on {mine[-1].grant.expires_on}")
        return live[-1]

    def _write(self, path: Path, payload: object) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
