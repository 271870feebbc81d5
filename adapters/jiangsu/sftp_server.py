"""A real SFTP server on 127.0.0.1 serving a folder read-only: the stand-in for Jiangsu's drop server.

paramiko's server side (``ServerInterface`` + ``SFTPServerInterface``) in threads of this process, with a
host key generated at start, password and/or public-key login for one user. Used by the tests and
available to anyone who wants to run the Jiangsu sandbox over SFTP.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import paramiko

log = logging.getLogger(__name__)


class _Login(paramiko.ServerInterface):  # type: ignore[misc]  # paramiko ships no types
    """One user, authenticated by password or by public key."""

    def __init__(self, user: str, password: str | None, public_key: paramiko.PKey | None) -> None:
        self.user = user
        self.password = password
        self.public_key = public_key

    def get_allowed_auths(self, username: str) -> str:
        return ",".join(m for m, on in (("password", self.password), ("publickey", self.public_key)) if on)

    def check_auth_password(self, username: str, password: str) -> int:
        ok = self.password is not None and username == self.user and password == self.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = self.public_key is not None and username == self.user and key == self.public_key
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _ReadOnlyFolder(paramiko.SFTPServerInterface):  # type: ignore[misc]
    """SFTP paths map onto `root`; nothing outside it is reachable and nothing can be written."""

    def __init__(self, server: paramiko.ServerInterface, *args: Any, root: Path, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.root = root.resolve()

    def _real(self, path: str) -> Path:
        relative = PurePosixPath("/", path).relative_to("/")
        real = (self.root / relative).resolve()
        if real != self.root and self.root not in real.parents:
            raise PermissionError(path)
        return real

    def canonicalize(self, path: str) -> str:
        return os.path.normpath("/" + path.lstrip("/"))

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        try:
            folder = self._real(path)
            return [paramiko.SFTPAttributes.from_stat(p.stat(), p.name) for p in sorted(folder.iterdir())]
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or 0)

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        try:
            return paramiko.SFTPAttributes.from_stat(self._real(path).stat())
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or 0)

    lstat = stat

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> paramiko.SFTPHandle | int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT):
            return paramiko.SFTP_PERMISSION_DENIED
        try:
            stream = self._real(path).open("rb")
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or 0)
        return _FileHandle(flags, stream, str(path))


class _FileHandle(paramiko.SFTPHandle):  # type: ignore[misc]
    """An open file; fstat is answered so clients can prefetch (paramiko's default refuses it)."""

    def __init__(self, flags: int, stream: BinaryIO, name: str) -> None:
        super().__init__(flags)
        self.readfile = stream  # paramiko's documented hook: reads are served from this file
        self.filename = name

    def stat(self) -> paramiko.SFTPAttributes | int:
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or 0)


class SftpServer:
    """Serves `root` over SFTP on 127.0.0.1 at an ephemeral port until :meth:`stop`."""

    def __init__(
        self, root: Path, user: str = "jiangsu", *, password: str | None = None,
        public_key: paramiko.PKey | None = None,
    ) -> None:
        self.root = root
        self.user = user
        self._login = _Login(user, password, public_key)
        # Generated per start-up, never stored: clients must be told it through known_hosts.
        self.host_key = paramiko.ECDSAKey.generate()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._transports: list[paramiko.Transport] = []
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        """The listening port (only while started)."""
        if self._socket is None:
            raise RuntimeError("the SFTP server is not running: call start() first")
        port: int = self._socket.getsockname()[1]
        return port

    def url(self, path: str = "/drop") -> str:
        """The EXCHANGE_JIANGSU_SFTP_URL for a folder under root."""
        return f"sftp://{self.user}@127.0.0.1:{self.port}{path}"

    def write_known_hosts(self, path: Path) -> Path:
        """Write a known_hosts file trusting this server's host key (what an operator would configure)."""
        path.write_text(f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n")
        return path

    def start(self) -> None:
        """Listen and serve in a daemon thread."""
        if self._socket is not None:
            return
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)  # lets the accept loop notice stop() promptly
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="jiangsu-sftp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every session and the listening socket."""
        if self._socket is None:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        self._socket.close()
        self._socket = None

    def drop_connections(self) -> None:
        """Close every open session, as a server restart would (the listener keeps running)."""
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    def _serve(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _ReadOnlyFolder, root=self.root)
            try:
                transport.start_server(server=self._login)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                log.debug("jiangsu sftp: negotiation failed: %r", exc)
                transport.close()
                continue
            self._transports.append(transport)
