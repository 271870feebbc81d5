"""Per-province exchange configuration (adapters/<province>/province.yaml), read without side effects."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml
from croniter import croniter
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from exchange.errors import BadFile, validation_summary

ADAPTERS_DIR = Path(__file__).resolve().parents[1] / "adapters"

_DURATION = re.compile(r"^\s*(?:(?P<h>\d+)\s*h)?\s*(?:(?P<m>\d+)\s*m(?:in)?)?\s*$")


def parse_duration(value: str) -> timedelta:
    """`2h`, `90m`, `1h30m` -> timedelta; anything else is an error naming the accepted forms."""
    match = _DURATION.match(value)
    if not match or not (match["h"] or match["m"]):
        raise ValueError(f"{value!r} is not a duration; write e.g. 2h, 90m or 1h30m")
    return timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration` (whole minutes)."""
    hours, minutes = divmod(int(value.total_seconds()) // 60, 60)
    return "".join((f"{hours}h" if hours else "", f"{minutes}m" if minutes or not hours else ""))


class SharingDeadlines(BaseModel, frozen=True, extra="forbid"):
    """How many working days the province's data office has for a sharing request (exchange/sharing)."""

    review_days: int = Field(default=3, ge=1, le=30, description="Working days to review a request: decide, or "
                                                                  "return it once listing everything missing")
    reply_days: int = Field(default=10, ge=1, le=60, description="Working days to reply: approve or refuse")

    @model_validator(mode="after")
    def _order(self) -> SharingDeadlines:
        if self.reply_days < self.review_days:
            raise ValueError(f"sharing.reply_days ({self.reply_days}) must be at least review_days "
                             f"({self.review_days})")
        return self


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
    depends_on: dict[str, list[str]] = Field(
        default_factory=dict,
        description="dataset -> datasets whose commit for the same data interval must finish before it starts",
    )
    deadline: timedelta | None = Field(
        default=None, description="How long after the data interval ends the run must have finished (e.g. 2h)"
    )
    sharing: SharingDeadlines = Field(default_factory=SharingDeadlines,
                                      description="Working-day deadlines for sharing requests to the office")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        # Checked here, so the error names province.yaml rather than surfacing as the DAG file's import error
        # (which would leave Airflow running the previously serialized schedule).
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (five fields: minute hour day month weekday, "
                             "e.g. '0 2 * * *')")
        return value

    @field_validator("deadline", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dependencies(self) -> ProvinceConfig:
        where = f"adapters/{self.province}/province.yaml depends_on"
        for dataset, upstream in self.depends_on.items():
            for name in (dataset, *upstream):
                if name not in self.datasets:
                    raise ValueError(f"{where}: {name!r} is not one of this province's datasets "
                                     f"({', '.join(self.datasets)})")
        cycle = _find_cycle(self.depends_on)
        if cycle:
            raise ValueError(f"{where}: datasets depend on each other in a cycle: {' -> '.join(cycle)}")
        if self.deadline is not None and self.deadline <= timedelta(0):
            raise ValueError(f"adapters/{self.province}/province.yaml deadline must be positive")
        return self

    @property
    def connection(self) -> str:
        """The Airflow Connection id to look up."""
        return self.connection_id or f"exchange_{self.province}"


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """One dependency cycle as a path that ends where it starts, or [] when the graph is acyclic."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return []
        for upstream in graph.get(node, []):
            if cycle := visit(upstream, [*path, node]):
                return cycle
        done.add(node)
        return []

    for start in graph:
        if cycle := visit(start, []):
            return cycle
    return []


class ProvinceConfigError(BadFile):
    """A province.yaml that cannot be used; names the file as an office finds it and each problem."""


def load_province(province: str, adapters_dir: Path | None = None) -> ProvinceConfig:
    """Parse adapters/<province>/province.yaml; ProvinceConfigError naming the file (and field) if it is wrong."""
    from exchange.datasets import province as known_province

    path = (adapters_dir or ADAPTERS_DIR) / known_province(province) / "province.yaml"
    shown = adapters_path(path)
    try:
        return ProvinceConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvinceConfigError(shown, f"cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        raise ProvinceConfigError(shown, f"not valid YAML: {' '.join(str(exc).split())}") from None
    except ValidationError as exc:
        raise ProvinceConfigError(shown, validation_summary(exc)) from None


def adapters_path(path: Path) -> str:
    """A file under adapters/ as an office finds it in the repository (adapters/<province>/<file>)."""
    parts = path.resolve().parts
    return "/".join(parts[parts.index("adapters"):]) if "adapters" in parts else str(path)
