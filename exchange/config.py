"""Typed settings (prefix ``EXCHANGE_``) and the layout of EXCHANGE_HOME.

Nothing is read at import time: call :func:`settings` when you need them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExchangeSettings(BaseSettings):
    """Everything an operator can set; each field maps to ``EXCHANGE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="forbid")

    home: Path = Field(default=Path("var"), description="Root of all runtime state")
    lake_catalog: str | None = Field(
        default=None, description="DuckLake catalog; default a DuckDB file under home/lake"
    )
    lake_data: str | None = Field(default=None, description="Parquet data path; default home/lake/data")
    sandbox_dir: Path | None = Field(
        default=None, description="Where the embedded province sandboxes keep their data"
    )
    shanghai_api_url: str | None = Field(default=None, description="Base URL of Shanghai's REST API")
    shanghai_api_token: str | None = Field(default=None, description="Bearer token for Shanghai's API")
    zhejiang_db_url: str | None = Field(default=None, description="SQLAlchemy URL of Zhejiang's views")
    jiangsu_drop_dir: Path | None = Field(default=None, description="Jiangsu's CSV drop folder")
    anhui_export_dir: Path | None = Field(default=None, description="Anhui's XML export folder")


class Layout:
    """Paths under EXCHANGE_HOME; creating them is explicit (:meth:`ensure`)."""

    def __init__(self, home: Path) -> None:
        self.home = home.resolve()

    @property
    def keys(self) -> Path:
        return self.home / "keys"

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def staging(self) -> Path:
        return self.home / "staging"

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def lake_catalog_file(self) -> Path:
        return self.lake / "catalog.ducklake"

    @property
    def lake_data(self) -> Path:
        return self.lake / "data"

    @property
    def manifests(self) -> Path:
        return self.home / "manifests"

    @property
    def provenance(self) -> Path:
        return self.home / "provenance"

    @property
    def extracts(self) -> Path:
        return self.home / "extracts"

    @property
    def access(self) -> Path:
        return self.home / "access"

    @property
    def sandboxes(self) -> Path:
        return self.home / "sandboxes"

    @property
    def airflow(self) -> Path:
        return self.home / "airflow"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def ensure(self) -> Layout:
        for path in (
            self.keys, self.landing, self.staging, self.lake_data, self.manifests,
            self.provenance, self.extracts, self.access, self.sandboxes, self.reports,
        ):
            path.mkdir(parents=True, exist_ok=True)
        self.keys.chmod(0o700)
        return self


def settings() -> ExchangeSettings:
    """Read the settings from the environment now."""
    return ExchangeSettings()


def layout(s: ExchangeSettings | None = None) -> Layout:
    """The EXCHANGE_HOME layout for the given (or current) settings."""
    return Layout((s or settings()).home)
