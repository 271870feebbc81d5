"""Canonical datasets: the one Arrow schema per dataset that every province's adapter maps to.

The lake adds two lineage columns to each dataset table: ``province`` and ``batch_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

PROVINCES: tuple[str, ...] = ("shanghai", "jiangsu", "zhejiang", "anhui")

PROVINCE_NAMES: dict[str, str] = {
    "shanghai": "上海市",
    "jiangsu": "江苏省",
    "zhejiang": "浙江省",
    "anhui": "安徽省",
}

TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Dataset:
    """A canonical dataset: its name, schema and record key."""

    name: str
    title: str
    key: str
    schema: pa.Schema


E_LICENSE = Dataset(
    name="e_license",
    title="电子证照",
    key="license_id",
    schema=pa.schema(
        [
            pa.field("license_id", pa.string()),
            pa.field("license_type", pa.string()),
            pa.field("holder_name", pa.string()),
            pa.field("holder_id", pa.string()),
            pa.field("issuing_authority", pa.string()),
            pa.field("region_code", pa.string()),
            pa.field("issued_on", pa.date32()),
            pa.field("valid_until", pa.date32()),
            pa.field("status", pa.string()),
            pa.field("updated_at", TIMESTAMP),
        ]
    ),
)

ENTERPRISE_REGISTRATION = Dataset(
    name="enterprise_registration",
    title="市场主体登记",
    key="uscc",
    schema=pa.schema(
        [
            pa.field("uscc", pa.string()),
            pa.field("enterprise_name", pa.string()),
            pa.field("enterprise_type", pa.string()),
            pa.field("legal_representative", pa.string()),
            pa.field("legal_rep_id", pa.string()),
            pa.field("registered_capital", pa.float64()),
            pa.field("region_code", pa.string()),
            pa.field("established_on", pa.date32()),
            pa.field("status", pa.string()),
            pa.field("updated_at", TIMESTAMP),
        ]
    ),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (E_LICENSE, ENTERPRISE_REGISTRATION)}

# Canonical code values (each province's native codes map onto these).
E_LICENSE_STATUSES = ("valid", "revoked", "expired")
ENTERPRISE_STATUSES = ("active", "deregistered", "revoked")
ENTERPRISE_TYPES = (
    "limited_liability",
    "joint_stock",
    "sole_proprietorship",
    "partnership",
    "individual_business",
)


def dataset(name: str) -> Dataset:
    """Look a dataset up by name, with an error that lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
