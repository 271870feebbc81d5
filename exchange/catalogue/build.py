"""Build catalogue items from the contracts plus exchange/catalogue/metadata.yaml (pure apart from reading them).

One item per (dataset, providing province): each province's data office publishes what it provides of a
dataset the Delta shares under one contract. The contract says what the data is and its sharing type; the
metadata says who produces it in that province, how it may be shared and for how long, and where a
province publishes an item stricter than the contract (never looser: a build that would loosen it fails).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from exchange.catalogue.models import STRICTNESS, CatalogueField, CatalogueItem, SharingAttribute, SharingMethod
from exchange.datasets import DATASETS, PROVINCES
from exchange.errors import BadFile, validation_summary

METADATA_PATH = Path(__file__).with_name("metadata.yaml")
# GB/T 2260 province prefixes (a province's item is its own rows) and the short codes item codes end in.
PROVINCE_CODES: dict[str, str] = {"shanghai": "SH", "jiangsu": "JS", "zhejiang": "ZJ", "anhui": "AH"}
REGION_PREFIXES: dict[str, str] = {"shanghai": "31", "jiangsu": "32", "zhejiang": "33", "anhui": "34"}


def office_of(province: str) -> str:
    """The actor (and key owner) of a province's data office."""
    return f"{province}.data_office"


class Override(BaseModel, frozen=True, extra="forbid"):
    """A province's stricter publication of one item."""

    sharing_attribute: SharingAttribute = Field(description="The attribute the province publishes")
    not_shared_basis: str | None = Field(default=None, description="Legal basis, for not_shared")
    conditions: str | None = Field(default=None, description="Extra conditions, for conditional")


class DatasetMeta(BaseModel, frozen=True, extra="forbid"):
    """metadata.yaml's entry for one dataset."""

    name_en: str
    sharing_methods: list[SharingMethod] = Field(min_length=1)
    max_period_days: int = Field(ge=1)
    source_departments: dict[str, str]
    overrides: dict[str, Override] = Field(default_factory=dict)


def load_metadata(path: Path = METADATA_PATH) -> dict[str, DatasetMeta]:
    """Parse metadata.yaml; BadFile naming the file and the problem (unknown dataset or province included)."""
    try:
        raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        meta = {name: DatasetMeta.model_validate(body) for name, body in raw.items()}
    except (OSError, yaml.YAMLError) as exc:
        raise BadFile(path, f"cannot read catalogue metadata: {' '.join(str(exc).split())}") from None
    except ValidationError as exc:
        raise BadFile(path, validation_summary(exc)) from None
    for name, entry in meta.items():
        if name not in DATASETS:
            raise BadFile(path, f"{name}: not a dataset of the hub ({', '.join(DATASETS)})")
        for province in [*entry.source_departments, *entry.overrides]:
            if province not in PROVINCES:
                raise BadFile(path, f"{name}: unknown province {province!r} ({', '.join(PROVINCES)})")
    return meta


def _custom(raw: Any) -> dict[str, Any]:
    return {p.property: p.value for p in (raw.customProperties or []) if p.property}


def build_item(dataset: str, province: str, meta: DatasetMeta, published_at: datetime, version: int = 1,
               path: Path = METADATA_PATH) -> CatalogueItem:
    """The catalogue item of `dataset` as `province` provides it (BadFile if the metadata would loosen it)."""
    from exchange.access.terms import contract_terms
    from exchange.datasets import PROVINCE_NAMES
    from exchange.province_config import load_province

    contract = contract_terms(dataset)
    custom = _custom(contract.raw)
    override = meta.overrides.get(province)
    attribute: SharingAttribute = contract.sharing_type  # type: ignore[assignment]
    conditions = str(custom.get("sharingConditions") or "")
    basis = None
    if override is not None:
        if STRICTNESS[override.sharing_attribute] < STRICTNESS[attribute]:
            raise BadFile(path, f"{dataset}.overrides.{province}: {override.sharing_attribute} is looser than the "
                                f"contract's {attribute}; an item can only be published stricter")
        attribute = override.sharing_attribute
        basis = override.not_shared_basis
        conditions = override.conditions or conditions
    name = str(contract.raw.name or DATASETS[dataset].title)
    code = f"{custom.get('resourceCode') or dataset.upper()}-{PROVINCE_CODES[province]}"
    try:
        return CatalogueItem(
            code=code, version=version, dataset=dataset, province=province,
            name_zh=f"{PROVINCE_NAMES[province]}{name.split(' / ')[0]}", name_en=f"{meta.name_en} ({province})",
            provider_office=office_of(province), provider_name=load_province(province).name,
            source_department=meta.source_departments.get(province, load_province(province).name),
            sharing_attribute=attribute, conditions=" ".join(conditions.split()),
            not_shared_basis=" ".join(basis.split()) if basis else None,
            sharing_methods=list(meta.sharing_methods), update_frequency=str(custom.get("updateFrequency") or ""),
            max_period_days=meta.max_period_days,
            fields=[CatalogueField(name=f.name, description=f.description, classification=f.classification,
                                   grade=f.grade, masking=f.masking) for f in contract.fields],
            contract_version=contract.version, contract_sha256=contract.document_sha256, published_at=published_at,
        )
    except ValidationError as exc:
        raise BadFile(path, f"{dataset}.{province}: {validation_summary(exc)}") from None


def build_all(published_at: datetime, path: Path = METADATA_PATH) -> list[CatalogueItem]:
    """Every item the contracts and metadata define (version 1; the store numbers real versions)."""
    meta = load_metadata(path)
    return [build_item(dataset, province, entry, published_at, path=path)
            for dataset, entry in meta.items() for province in PROVINCES]
