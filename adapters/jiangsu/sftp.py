"""Jiangsu's production transport: the drop folder on the province's SFTP server (paramiko).

    EXCHANGE_JIANGSU_SFTP_URL=sftp://user@host:port/path/to/drop
    EXCHANGE_JIANGSU_SFTP_PASSWORD=...        or  EXCHANGE_JIANGSU_SFTP_KEY_FILE=/path/to/id_ed25519
    EXCHANGE_JIANGSU_SFTP_KNOWN_HOSTS=/path/to/known_hosts   (the server's host key; unknown keys are refused)

The connection is opened on first use, so building the adapter (e.g. while a DAG is parsed) connects to
nothing.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast
from urllib.parse import unquote, urlsplit

import paramiko

from exchange.errors import SourceAuthError, TerminalError, TransientError

URL_SETTING = "EXCHANGE_JIANGSU_SFTP_URL"
KNOWN_HOSTS_SETTING = "EXCHANGE_JIANGSU_SFTP_KNOWN_HOSTS"


@dataclass(frozen=True)
class SftpLocation:
    """Where the drop folder is: parsed from an sftp:// URL."""

    host: str
    port: int
    user: str
    path: str

    @classmethod
    def parse(cls, url: str) -> SftpLocation:
        """Parse sftp://user@host[:port]/path; TerminalError naming the setting if it is not one."""
        parts = urlsplit(url)
        try:
            port = parts.port or 22
        except ValueError as exc:
            raise TerminalError(f"{URL_SETTING} has an invalid port: {exc}") from None
        if parts.scheme != "sftp" or not parts.hostname or not parts.username or not parts.path:
            raise TerminalError(f"{URL_SETTING} must look like sftp://user@host:port/path, got {url!r}")
        if parts.password:
            raise TerminalError(f"{URL_SETTING} must not carry a password; set EXCHANGE_JIANGSU_SFTP_PASSWORD")
        return cls(parts.hostname, port, unquote(parts.username), unquote(parts.path))

    def __str__(self) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{self.path}"


class SftpDrop:
    """A drop folder on an SFTP server, listed and read over one SSH connection."""

    def __init__(
        self,
        location: SftpLocation,
        *,
        known_hosts: Path | None,
        password: str | None = None,
        key_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        if password is None and key_file is None:
            raise TerminalError(
                "Jiangsu's SFTP credentials are not configured: set EXCHANGE_JIANGSU_SFTP_PASSWORD or "
                "EXCHANGE_JIANGSU_SFTP_KEY_FILE"
            )
        self.location = location
        self._known_hosts = known_hosts
        self._password = password
        self._key_file = key_file
        self._timeout = timeout
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def describe(self, name: str = "") -> str:
        """The sftp:// location of the folder or of one file in it."""
        return f"{self.location}/{name}" if name else str(self.location)

    def list(self) -> list[str]:
        """Regular files in the drop folder."""
        sftp = self._connect()
        try:
            entries = sftp.listdir_attr(self.location.path)
        except FileNotFoundError:
            raise TerminalError(
                f"Jiangsu's SFTP drop folder {self.location} does not exist; check {URL_SETTING}"
            ) from None
        except (OSError, paramiko.SSHException) as exc:
            raise self._transient("listing", exc) from exc
        return sorted(e.filename for e in entries if e.st_mode is not None and stat.S_ISREG(e.st_mode))

    def read(self, name: str) -> bytes:
        """One file's bytes (read with prefetch: SFTP round trips dominate otherwise)."""
        sftp = self._connect()
        path = str(PurePosixPath(self.location.path) / name)
        try:
            with sftp.open(path, "rb") as handle:
                handle.prefetch()
                return handle.read()
        except (OSError, paramiko.SSHException) as exc:
            raise self._transient(f"reading {name}", exc) from exc

    def open(self, name: str) -> BinaryIO:
        """One remote file as a stream, prefetching ahead of the reader."""
        sftp = self._connect()
        path = str(PurePosixPath(self.location.path) / name)
        try:
            handle = sftp.open(path, "rb")
            handle.prefetch()
        except (OSError, paramiko.SSHException) as exc:
            raise self._transient(f"opening {name}", exc) from exc
        return cast(BinaryIO, _RemoteFile(handle, lambda exc: self._transient(f"reading {name}", exc)))

    def close(self) -> None:
        """Close the SFTP session and the SSH connection."""
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _connect(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        client = paramiko.SSHClient()
        # Never trust a host key on first sight: a man in the middle would receive Jiangsu's data.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if self._known_hosts is not None:
            try:
                client.load_host_keys(str(self._known_hosts))
            except OSError as exc:
                raise TerminalError(f"cannot read {KNOWN_HOSTS_SETTING} {self._known_hosts}: {exc}") from exc
        try:
            client.connect(
                self.location.host,
                self.location.port,
                username=self.location.user,
                password=self._password,
                key_filename=str(self._key_file) if self._key_file else None,
                timeout=self._timeout,
                banner_timeout=self._timeout,
                auth_timeout=self._timeout,
                channel_timeout=self._timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = client.open_sftp()
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SourceAuthError(
                f"Jiangsu's SFTP server {self.location} refused user {self.location.user!r}: {exc}; check "
                "EXCHANGE_JIANGSU_SFTP_PASSWORD or EXCHANGE_JIANGSU_SFTP_KEY_FILE"
            ) from exc
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise TerminalError(
                f"Jiangsu's SFTP server {self.location} presented a host key that differs from "
                f"{KNOWN_HOSTS_SETTING}: possible man-in-the-middle; do not proceed until verified"
            ) from exc
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise TerminalError(
                    f"Jiangsu's SFTP server {self.location} is not in {KNOWN_HOSTS_SETTING}: add its host key"
                ) from exc
            raise self._transient("connecting", exc) from exc
        except OSError as exc:  # includes timeouts and refused connections
            client.close()
            raise self._transient("connecting", exc) from exc
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self._timeout)
        self._client, self._sftp = client, sftp
        return sftp

    def _transient(self, doing: str, exc: BaseException) -> TransientError:
        self.close()  # a broken session is not reused by the retry
        return TransientError(f"Jiangsu's SFTP server {self.location}: {doing} failed: {exc!r}")


class _RemoteFile:
    """An SFTP file handle whose read errors surface as the transport's retryable errors."""

    def __init__(self, handle: Any, transient: Any) -> None:
        self._handle = handle
        self._transient = transient

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._handle.read(size))
        except (OSError, paramiko.SSHException) as exc:
            raise self._transient(exc) from exc

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _RemoteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
