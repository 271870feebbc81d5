"""Canonical datasets: the one Arrow schema per dataset that every province's adapter maps to.

The lake adds two lineage columns to each dataset table: ``province`` and ``batch_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from exchange.errors import UnknownName

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

ADMINISTRATIVE_PENALTY = Dataset(
    name="administrative_penalty",
    title="行政处罚",
    key="decision_no",
    schema=pa.schema(
        [
            pa.field("decision_no", pa.string()),  # 行政处罚决定书文号, unique per enforcing agency
            pa.field("party_name", pa.string()),
            pa.field("party_uscc", pa.string()),  # the penalised market entity
            pa.field("violation_type", pa.string()),
            pa.field("penalty_type", pa.string()),
            pa.field("fine_amount", pa.float64()),  # yuan; 0 when the penalty carries no fine
            pa.field("enforcement_agency", pa.string()),
            pa.field("region_code", pa.string()),
            pa.field("decided_on", pa.date32()),
            pa.field("publicity_until", pa.date32()),  # 公示截止日期
            pa.field("status", pa.string()),
            pa.field("updated_at", TIMESTAMP),
        ]
    ),
)

PROVIDENT_FUND_TRANSFER = Dataset(
    name="provident_fund_transfer",
    title="公积金转移接续",
    key="transfer_id",
    schema=pa.schema(
        [
            pa.field("transfer_id", pa.string()),
            pa.field("person_name", pa.string()),
            pa.field("person_id", pa.string()),  # resident ID
            pa.field("from_center", pa.string()),  # 转出公积金中心 (in the providing province)
            pa.field("to_center", pa.string()),  # 转入公积金中心 (anywhere in the delta)
            pa.field("region_code", pa.string()),  # region of the transferring-out centre
            pa.field("to_region_code", pa.string()),
            pa.field("transfer_amount", pa.float64()),  # yuan
            pa.field("applied_on", pa.date32()),
            pa.field("completed_on", pa.date32()),  # null until completed
            pa.field("status", pa.string()),
            pa.field("updated_at", TIMESTAMP),
        ]
    ),
)

DATASETS: dict[str, Dataset] = {
    d.name: d for d in (E_LICENSE, ENTERPRISE_REGISTRATION, ADMINISTRATIVE_PENALTY, PROVIDENT_FUND_TRANSFER)
}

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
PENALTY_TYPES = ("warning", "fine", "confiscation", "suspension", "licence_revocation")
PENALTY_STATUSES = ("in_force", "executed", "revoked")
TRANSFER_STATUSES = ("applied", "in_progress", "completed", "rejected")


def dataset(name: str) -> Dataset:
    """Look a dataset up by name, or UnknownName (also a KeyError) listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownName("dataset", name, DATASETS) from None


def province(name: str) -> str:
    """`name` if it is a province the hub exchanges with, or UnknownName listing them."""
    if name not in PROVINCES:
        raise UnknownName("province", name, PROVINCES)
    return name
