"""Jiangsu's adapter: reads the daily GB18030 CSV drops `<source>_<YYYYMMDD>.csv` and their manifests.

The drop folder is reached through a transport (:mod:`adapters.jiangsu.transport`): a local folder by
default, SFTP in production (:mod:`adapters.jiangsu.sftp`). A day's drop is read only once its manifest is
present and lists the file with a matching SHA-256 (:mod:`adapters.jiangsu.manifest`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa

from adapters.authenticity import SIGNATURE_SUFFIX, SourceTrust, SourceVerifier, hub_trust, parse_statement
from adapters.base import Landing, PullRequest, in_window
from adapters.jiangsu import native
from adapters.jiangsu.manifest import SUFFIX, DropManifest, manifest_name
from adapters.jiangsu.transport import DropTransport, LocalDrop
from adapters.mapping import DatasetMapping, ProvinceMapping
from exchange.config import ExchangeSettings, Layout
from exchange.errors import SourceFormatError

log = logging.getLogger(__name__)

MAPPING_FILE = Path(__file__).parent / "mapping.yaml"
DROP_DIR_SETTING = "EXCHANGE_JIANGSU_DROP_DIR"


@dataclass(frozen=True)
class Drop:
    """One dataset's delivery for one local day: its data file and its manifest (either may be missing)."""

    day: date
    data: str | None
    manifest: str | None
    signature: str | None = None  # the office's detached signature over the manifest

    @property
    def complete(self) -> bool:
        """Both files are there under their final names (Jiangsu renames the manifest last)."""
        return self.data is not None and self.manifest is not None


class JiangsuAdapter:
    """Pulls Jiangsu's file drops; one file per dataset per local day, read in name (= date) order."""

    province = "jiangsu"

    def __init__(
        self, drop: Path | DropTransport, mapping: ProvinceMapping | None = None, *, trust: SourceTrust | None = None
    ) -> None:
        self.transport: DropTransport = LocalDrop(drop, DROP_DIR_SETTING) if isinstance(drop, Path) else drop
        self.drop_dir = drop if isinstance(drop, Path) else None
        self.mapping = mapping or ProvinceMapping.load(MAPPING_FILE)
        # Whose keys vouch for Jiangsu's manifests: by default the trust bundle under EXCHANGE_HOME.
        self.trust = trust or hub_trust()

    def datasets(self) -> Sequence[str]:
        """The canonical datasets Jiangsu drops files for."""
        return list(self.mapping.datasets)

    def pull(self, request: PullRequest, landing: Landing) -> Iterator[pa.Table]:
        """Yield canonical tables of the complete drops' records with since < updated_at < window.end.

        Each file and its manifest are landed byte for byte, then the file is checked against the
        manifest and parsed; chunks are the CSV reader's blocks. Reading stops before the first
        incomplete drop, so the watermark never passes a day that has not fully arrived.
        """
        if request.since is not None and request.since.tzinfo is None:
            # A naive `since` would be read in some arbitrary zone and shift the window.
            raise ValueError(f"since must be timezone-aware, got {request.since.isoformat()}")
        mapping = self.mapping.dataset(request.dataset)
        tz = ZoneInfo(mapping.timezone)
        verifier = self.trust.verifier(self.province)
        try:
            for drop in self.drops(mapping, request.since, request.window.end):
                if not drop.complete:
                    log.warning(
                        "Jiangsu %s drop of %s is incomplete (data %s, manifest %s): not reading it or later days",
                        mapping.source, drop.day, drop.data or "missing", drop.manifest or "missing",
                    )
                    return
                yield from self._read(drop, mapping, request, landing, tz, verifier)
        finally:
            self.transport.close()

    def _check_signature(
        self, signature: str | None, manifest: str, manifest_bytes: bytes, landing: Landing, verifier: SourceVerifier
    ) -> None:
        """Verify the office's detached signature over the manifest's exact bytes; the manifest lists every
        file's SHA-256, so this covers the whole drop. The signature file is landed beside the manifest."""
        signed = None
        if signature is not None:
            payload = self.transport.read(signature)
            landing.write(signature, payload)
            signed = parse_statement(payload, self.province, self.transport.describe(signature))
        where = f"drop manifest {self.transport.describe(manifest)}"
        landing.signatures.append(
            verifier.verify(signed, manifest, hashlib.sha256(manifest_bytes).hexdigest(), where)
        )

    def _read(
        self, drop: Drop, mapping: DatasetMapping, request: PullRequest, landing: Landing, tz: ZoneInfo,
        verifier: SourceVerifier,
    ) -> Iterator[pa.Table]:
        assert drop.data is not None and drop.manifest is not None
        data, manifest, day = drop.data, drop.manifest, drop.day
        # Land the file once and parse the landed copy, so the landed hash is of exactly what was parsed
        # even if the province replaces the file meanwhile.
        manifest_bytes = self.transport.read(manifest)
        with self.transport.open(data) as stream:  # landed in blocks: memory does not grow with the file
            landed = landing.write_stream(data, stream)
        landing.write(manifest, manifest_bytes)
        source = self.transport.describe(data)
        parsed = DropManifest.parse(manifest_bytes, self.transport.describe(manifest))
        self._check_signature(drop.signature, manifest, manifest_bytes, landing, verifier)
        parsed.verify_digest(data, landed.sha256, landed.size, source)
        day_start = datetime.combine(day, time(), tz)
        for batch in native.read_file_batches(landed.path, source):
            canonical = mapping.to_canonical(pa.Table.from_batches([batch]), source)
            selected = canonical.filter(in_window(canonical.column("updated_at"), request, day_start))
            if selected.num_rows:
                yield selected

    def drops(self, mapping: DatasetMapping, since: datetime | None, end: datetime) -> list[Drop]:
        """The dataset's drops that can hold records of (since, end), in day order.

        `*.tmp` files are still being written and never match. A file named like the dataset's drops
        but without a valid date is an error rather than silently skipped: it may hold records.
        """
        tz = ZoneInfo(mapping.timezone)
        first = since.astimezone(tz).date() if since is not None else date.min
        last = end.astimezone(tz).date()
        data_name = re.compile(re.escape(mapping.source) + r"_(\d{8})\.csv")
        days: dict[date, Drop] = {}
        signatures: set[str] = set()
        for name in self.transport.list():
            if not name.startswith(f"{mapping.source}_") or name.endswith(".tmp"):
                continue
            if name.endswith(SUFFIX + SIGNATURE_SUFFIX):
                signatures.add(name)
                continue
            is_manifest = name.endswith(SUFFIX)
            if not (is_manifest or name.endswith(".csv")):
                continue
            match = data_name.fullmatch(name.removesuffix(SUFFIX) + ".csv" if is_manifest else name)
            day = _day(match.group(1)) if match else None
            if day is None:
                raise SourceFormatError(
                    self.transport.describe(name), "file name", "not a valid drop name",
                    f"expected {mapping.source}_YYYYMMDD.csv (the local date of the records' update time) "
                    f"and {mapping.source}_YYYYMMDD{SUFFIX}",
                )
            if not first <= day <= last:
                continue
            drop = days.get(day, Drop(day, None, None))
            if is_manifest:
                days[day] = Drop(day, drop.data, manifest_name(mapping.source, day))
            else:
                days[day] = Drop(day, name, drop.manifest)
        return [
            Drop(d.day, d.data, d.manifest, d.manifest + SIGNATURE_SUFFIX if d.manifest and
                 d.manifest + SIGNATURE_SUFFIX in signatures else None)
            for d in (days[day] for day in sorted(days))
        ]


def _day(text: str) -> date | None:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def build(settings: ExchangeSettings) -> JiangsuAdapter:
    """Jiangsu's adapter: over SFTP if EXCHANGE_JIANGSU_SFTP_URL is set, else reading the local folder
    EXCHANGE_JIANGSU_DROP_DIR (default: the embedded sandbox's drop folder)."""
    if settings.jiangsu_sftp_url:
        # Imported only here: paramiko costs every process that reads a local drop ~0.1 s CPU (0.3-0.7 s wall
        # on the loaded benchmark machine) for nothing.
        from adapters.jiangsu.sftp import SftpDrop, SftpLocation

        password = settings.jiangsu_sftp_password
        transport = SftpDrop(
            SftpLocation.parse(settings.jiangsu_sftp_url),
            known_hosts=settings.jiangsu_sftp_known_hosts,
            password=password.get_secret_value() if password is not None else None,
            key_file=settings.jiangsu_sftp_key_file,
            timeout=settings.jiangsu_sftp_timeout_seconds,
        )
        return JiangsuAdapter(transport, trust=hub_trust(settings.home, settings.trust_anchor))
    drop = settings.jiangsu_drop_dir
    if drop is None:
        sandboxes = settings.sandbox_dir or Layout(settings.home).sandboxes
        drop = sandboxes / "jiangsu" / "drop"
    return JiangsuAdapter(drop, trust=hub_trust(settings.home, settings.trust_anchor))
