"""Typed settings (prefix ``EXCHANGE_``) and the layout of EXCHANGE_HOME.

Nothing is read at import time: call :func:`settings` when you need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from exchange.errors import SettingsError

ENV_PREFIX = "EXCHANGE_"


class ExchangeSettings(BaseSettings):
    """Everything an operator can set; each field maps to ``EXCHANGE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    home: Path = Field(default=Path("var"), description="Root of all runtime state")
    key_algorithm: str = Field(
        default="ed25519",
        description="Signature algorithm of keys the hub creates: ed25519, or sm2 (SM2 with SM3, GM/T 0003/0004)",
    )
    trust_anchor: str | None = Field(
        default=None,
        description="The hub root key's fingerprint(s) verify checks the trust bundle against: key ids, "
        "comma-separated, or the path of a file outside home holding them (`exchange keys anchor` prints them). "
        "Unset, verify checks everything else and ends UNANCHORED",
    )
    lake_catalog: str | None = Field(
        default=None, description="DuckLake catalog; default a DuckDB file under home/lake"
    )
    lake_data: str | None = Field(
        default=None, description="Parquet data path: a folder or s3://bucket/prefix/; default home/lake/data"
    )
    lake_s3_endpoint: str | None = Field(
        default=None,
        description="S3-compatible endpoint, e.g. https://oss-cn-shanghai.aliyuncs.com or http://minio:9000; "
        "unset means AWS S3. The scheme decides TLS unless lake_s3_use_ssl is set",
    )
    lake_s3_region: str | None = Field(default=None, description="Region of the lake bucket, e.g. cn-east-3")
    lake_s3_access_key_id: str | None = Field(default=None, description="Access key id for the lake bucket")
    lake_s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key for the lake bucket"
    )
    lake_s3_session_token: SecretStr | None = Field(
        default=None, description="Session token of temporary (STS) credentials for the lake bucket"
    )
    lake_s3_url_style: Literal["vhost", "path"] = Field(
        default="vhost", description="Bucket addressing: vhost (bucket.endpoint, AWS/OSS/OBS) or path (MinIO)"
    )
    lake_s3_use_ssl: bool | None = Field(
        default=None, description="Use HTTPS for the lake bucket; default from the endpoint's scheme (HTTPS if none)"
    )
    lake_commit_retries: int = Field(
        default=5, ge=0, description="Retries of a lake commit after a transaction conflict or a lost catalog/storage "
        "connection; every retry first checks the ledger, so a batch is never written twice",
    )
    lake_commit_backoff_seconds: float = Field(
        default=0.5, gt=0,
        description="Wait before the first commit retry; doubles each time (with jitter), capped at 30 s",
    )
    lake_lock_wait_seconds: float = Field(
        default=30.0, ge=0,
        description="How long to wait for a DuckDB-file catalog another process holds open (e.g. an auditor's "
        "stock DuckDB session, even read-only) before giving up with a one-line error; retrying is safe",
    )
    validate_part_rows: int = Field(
        default=500_000, ge=1_000,
        description="Largest number of records checked against a contract at once: a larger batch is checked "
        "in parts grouped by key (same result, bounded memory; about 1 KB of memory per record in a part)",
    )
    window_future_skew_seconds: float = Field(
        default=300.0, ge=0,
        description="How far in the future a pulled window may end (clock differences between scheduler and hub); "
        "a window ending later is refused, since it would commit records the province has not finished",
    )
    shanghai_max_pages: int = Field(
        default=100_000, ge=1,
        description="Most pages of Shanghai's API one window may read; more means the API's pagination does not end",
    )
    sandbox_dir: Path | None = Field(
        default=None, description="Where the embedded province sandboxes keep their data"
    )
    witness_tsa_url: str | None = Field(
        default=None, description="RFC 3161 time-stamping authority that witnesses log heads (none: `exchange "
        "witness` runs a local one under EXCHANGE_HOME/tsa, for tests and the demo)",
    )
    witness_tsa_root: Path | None = Field(
        default=None, description="The pinned root certificate (PEM) of that authority; default "
        "EXCHANGE_HOME/tsa/ca.crt, the local authority's",
    )
    calendar_file: Path | None = Field(
        default=None, description="YAML file of State Council holiday arrangements for years chinesecalendar does "
        "not know (docs/operators.md, 'Working-day calendar'); default EXCHANGE_HOME/calendar.yaml if it exists",
    )
    calendar_unknown_years: Literal["refuse", "weekends"] = Field(
        default="weekends", description="A deadline in a year neither the calendar file nor chinesecalendar knows: "
        "weekends = count Monday-Friday and mark it provisional (recomputed once the year is loaded); refuse = "
        "fail the step until the year is loaded",
    )
    shanghai_api_url: str | None = Field(default=None, description="Base URL of Shanghai's REST API")
    shanghai_api_token: str | None = Field(default=None, description="Bearer token for Shanghai's API")
    zhejiang_db_url: str | None = Field(default=None, description="SQLAlchemy URL of Zhejiang's views")
    jiangsu_drop_dir: Path | None = Field(default=None, description="Jiangsu's CSV drop folder")
    anhui_export_dir: Path | None = Field(default=None, description="Anhui's XML export folder")
    shanghai_client_id: str | None = Field(
        default=None, description="OAuth2 client id for Shanghai's token endpoint (client-credentials grant)"
    )
    shanghai_client_secret: SecretStr | None = Field(
        default=None, description="OAuth2 client secret for Shanghai's token endpoint"
    )
    shanghai_token_url: str | None = Field(
        default=None, description="Shanghai's OAuth2 token endpoint; default <shanghai_api_url>/oauth/token"
    )
    shanghai_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Read timeout of one request to Shanghai's API, in seconds"
    )
    shanghai_max_retries: int = Field(
        default=5, ge=0, description="Retries of one request to Shanghai's API after HTTP 429/5xx or a network error"
    )
    zhejiang_overlap_minutes: int = Field(
        default=10,
        ge=0,
        description="Minutes before the watermark Zhejiang's views are re-read, so rows committed late are not missed",
    )
    zhejiang_state_dir: Path | None = Field(
        default=None,
        description="Where the Zhejiang adapter records rows delivered in the overlap; default home/adapters/zhejiang",
    )
    jiangsu_sftp_url: str | None = Field(
        default=None, description="Jiangsu's SFTP drop, sftp://user@host:port/path; unset means the local drop folder"
    )
    jiangsu_sftp_password: SecretStr | None = Field(default=None, description="Password for Jiangsu's SFTP user")
    jiangsu_sftp_key_file: Path | None = Field(
        default=None, description="Private key file for Jiangsu's SFTP user (used instead of a password)"
    )
    jiangsu_sftp_known_hosts: Path | None = Field(
        default=None,
        description="known_hosts file holding the SFTP server's host key; unknown host keys are refused",
    )
    jiangsu_sftp_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Connect and read timeout for Jiangsu's SFTP server, in seconds"
    )
    api_rate_per_second: float = Field(
        default=20.0, gt=0, description="Department API: sustained requests per second per department (token bucket)"
    )
    api_rate_burst: int = Field(
        default=40, ge=1, description="Department API: requests a department may make at once before it is limited"
    )
    check_rate_per_second: float = Field(
        default=50.0, gt=0, description="E-licence checks per second per department, sustained (a separate bucket)"
    )
    check_rate_burst: int = Field(default=100, ge=1, description="E-licence checks a department may make at once")
    check_failures_per_token: int = Field(
        default=5, ge=1, description="E-licence checks with a mismatched licence id and holder id one token may make "
        "in the failure window before it is locked out"
    )
    check_failures_per_department: int = Field(
        default=10, ge=1, description="The same, for all of a department's tokens together"
    )
    check_failure_window_seconds: float = Field(
        default=3600.0, gt=0, description="Window over which failed e-licence holder checks are counted"
    )
    check_lockout_seconds: float = Field(
        default=900.0, gt=0, description="How long a token or department is locked out of e-licence checks after "
        "too many failed holder checks (an operator alert is raised)"
    )
    api_reject_rate_per_second: float = Field(
        default=1.0, gt=0, description="Refused unauthenticated requests per second per client address, sustained, "
        "before they are answered 429"
    )
    api_reject_burst: int = Field(
        default=30, ge=1, description="Refused unauthenticated requests a client address may make at once"
    )
    api_reject_log_seconds: float = Field(
        default=60.0, ge=0, description="Refused unauthenticated requests are written to the provenance log at most "
        "once per client address per this many seconds, with their count (0: every one)"
    )

    @field_validator("home")
    @classmethod
    def _home_is_a_folder(cls, home: Path) -> Path:
        # Checked where the setting is read: otherwise the first mkdir or open under it fails far away.
        if home.exists() and not home.is_dir():
            raise ValueError(f"{home} is a file, not a folder; point it at a folder (created if missing)")
        return home


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
    """Read the settings from the environment now; SettingsError naming the first bad EXCHANGE_* variable."""
    try:
        return ExchangeSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + "_".join(str(p) for p in first["loc"]).upper()
        # pydantic's message names the rule, not the value (which may be a secret).
        raise SettingsError(name, first["msg"].removeprefix("Value error, ")) from None


def existing_home(s: ExchangeSettings) -> Layout:
    """The layout of an EXCHANGE_HOME that must already hold a hub (verify, report): SettingsError if it
    does not exist or holds no provenance log, rather than creating an empty one that checks out as intact."""
    layout = Layout(s.home)
    if not layout.home.is_dir():
        raise SettingsError(f"{ENV_PREFIX}HOME", f"{layout.home} does not exist; point EXCHANGE_HOME at the hub's "
                            "home (run `exchange demo` to make one)")
    if not layout.provenance.is_dir():
        raise SettingsError(f"{ENV_PREFIX}HOME", f"{layout.home} is not an exchange home (no provenance/ folder); "
                            "point EXCHANGE_HOME at the hub's home")
    return layout


def layout(s: ExchangeSettings | None = None) -> Layout:
    """The EXCHANGE_HOME layout for the given (or current) settings."""
    return Layout((s or settings()).home)
