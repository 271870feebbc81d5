"""Published catalogue documents: one item per (dataset, providing province), signed by the providing office."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from exchange.signing.signers import Signature

SharingAttribute = Literal["unconditional", "conditional", "not_shared"]
SharingMethod = Literal["system_interface", "online_query", "online_browse", "download"]

# The words of the Regulations, shown beside the hub's ids.
ATTRIBUTE_ZH: dict[str, str] = {"unconditional": "无条件共享", "conditional": "有条件共享", "not_shared": "不予共享"}
METHOD_ZH: dict[str, str] = {"system_interface": "系统对接", "online_query": "联机查询", "online_browse": "在线浏览",
                             "download": "下载"}
# Strictness order: an item may be published stricter than its contract, never looser.
STRICTNESS: dict[str, int] = {"unconditional": 0, "conditional": 1, "not_shared": 2}


class CatalogueField(BaseModel, frozen=True):
    """One column of a catalogue item, with the classification and grade that decide its masking."""

    name: str = Field(description="Canonical column name")
    description: str = Field(description="What the column holds (Chinese / English)")
    classification: str | None = Field(description="Classification level from the contract (L1-L4)")
    grade: str | None = Field(description="Data grade (GB/T 43697-2024): general, important or core")
    masking: str = Field(description="How the column is masked when shared: none, resident_id, name, mobile, "
                                     "withhold")


class CatalogueItem(BaseModel, frozen=True):
    """A catalogue item: what a providing office offers of one dataset, on which terms (one published version)."""

    code: str = Field(description="Item code: the contract's resource code, dash, province code (e.g. "
                                  "YRD-DZZZ-000101-JS)")
    version: int = Field(ge=1, description="Catalogue version of this item; each publication adds one")
    dataset: str = Field(description="Canonical dataset")
    province: str = Field(description="Providing province")
    name_zh: str = Field(description="Item name in Chinese")
    name_en: str = Field(description="Item name in English")
    provider_office: str = Field(description="Providing province data office (actor and key owner), "
                                             "e.g. jiangsu.data_office")
    provider_name: str = Field(description="Official name of the providing office")
    source_department: str = Field(description="数源部门: the department that produces the data")
    sharing_attribute: SharingAttribute = Field(description="无条件 / 有条件 / 不予共享 (unconditional, conditional, "
                                                            "not_shared); never looser than the contract")
    conditions: str = Field(default="", description="Conditions of sharing (conditional items)")
    not_shared_basis: str | None = Field(default=None, description="Legal basis for 不予共享 (required then)")
    sharing_methods: list[SharingMethod] = Field(description="Allowed sharing methods")
    update_frequency: str = Field(description="How often the data is updated, e.g. daily")
    max_period_days: int = Field(ge=1, description="Longest period a grant on the item may run, in days")
    fields: list[CatalogueField] = Field(description="Columns the item offers")
    contract_version: str = Field(description="Version of the data contract the item was built from")
    contract_sha256: str = Field(description="SHA-256 of that contract document")
    published_at: datetime = Field(description="When this version was published (UTC)")

    @model_validator(mode="after")
    def _basis(self) -> CatalogueItem:
        if self.sharing_attribute == "not_shared" and not (self.not_shared_basis or "").strip():
            raise ValueError(f"{self.code}: a 不予共享 item needs its legal basis (not_shared_basis)")
        return self

    @property
    def columns(self) -> list[str]:
        """The column names the item offers."""
        return [f.name for f in self.fields]

    def content_key(self) -> dict[str, object]:
        """What a new version is compared on (everything but version and publication time)."""
        return self.model_dump(mode="json", exclude={"version", "published_at"})


class SignedCatalogueItem(BaseModel, frozen=True):
    """A published catalogue item version with the providing office's signature."""

    item: CatalogueItem = Field(description="The signed content")
    signature: Signature = Field(description="Providing office's signature over canonical_json(item)")


class CatalogueExport(BaseModel, frozen=True):
    """The catalogue as exported (`exchange catalogue export`): the current signed version of every item."""

    format: Literal["yrd-catalogue/1"] = Field(default="yrd-catalogue/1", description="Export format id")
    exported_at: datetime = Field(description="When the export was made (UTC)")
    items: list[SignedCatalogueItem] = Field(description="Current signed version of each item, by code")
