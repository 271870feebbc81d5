"""Per-province exchange configuration (adapters/<province>/province.yaml), read without side effects."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

ADAPTERS_DIR = Path(__file__).resolve().parents[1] / "adapters"


class ProvinceConfig(BaseModel, frozen=True):
    """How and when one province's exchanges run."""

    province: str = Field(description="Province code (shanghai, jiangsu, zhejiang, anhui)")
    name: str = Field(description="The province's data office")
    schedule: str = Field(description="Cron expression in the province's time zone")
    timezone: str = Field(default="Asia/Shanghai", description="Time zone of the schedule")
    start_date: date = Field(description="First data interval")
    datasets: list[str] = Field(description="Datasets exchanged")
    retries: int = Field(default=3, description="Task retries")
    retry_delay_minutes: int = Field(default=5, description="Delay between retries")
    connection_id: str | None = Field(
        default=None, description="Airflow Connection with the province's credentials; default exchange_<province>"
    )

    @property
    def connection(self) -> str:
        """The Airflow Connection id to look up."""
        return self.connection_id or f"exchange_{self.province}"


def load_province(province: str, adapters_dir: Path = ADAPTERS_DIR) -> ProvinceConfig:
    """Parse adapters/<province>/province.yaml."""
    path = adapters_dir / province / "province.yaml"
    return ProvinceConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
