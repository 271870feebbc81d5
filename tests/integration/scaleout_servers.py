"""Servers for the scale-out tests: a throwaway database on the shared PostgreSQL, a private PostgreSQL
cluster we may restart without disturbing anyone, and moto's S3-compatible server on loopback."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.servers import require_server

PG_HOST = os.environ.get("EXCHANGE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("EXCHANGE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("EXCHANGE_TEST_PG_USER", "postgres")
PG_BIN = Path(os.environ.get("EXCHANGE_TEST_PG_BIN", "") or next(iter(sorted(Path("/usr/lib/postgresql").glob(
    "*/bin"), reverse=True)), Path("/usr/lib/postgresql/bin")))


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message + " - CI must provide it")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_database(host: str = PG_HOST, port: int = PG_PORT, user: str = PG_USER) -> Iterator[str]:
    """A fresh database (unique exchange_so_* name) as a libpq URI; dropped afterwards, even on failure."""
    import psycopg

    require_server(host, port, "PostgreSQL")
    name = f"exchange_so_{secrets.token_hex(4)}"
    admin = f"postgresql://{user}@{host}:{port}/postgres"
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PrivateCluster:
    """A PostgreSQL cluster of our own in a temp dir on a free port: restarting it disturbs nobody."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            _unavailable(f"PostgreSQL server binaries not found at {PG_BIN} (set EXCHANGE_TEST_PG_BIN)")
        self.dir = Path(tempfile.mkdtemp(prefix="exchange_so_pg_"))
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres system user
            shutil.chown(self.dir, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        # Output to a file, never a pipe: the postmaster inherits it and would keep a pipe open forever.
        with (self.dir / f"{tool}.out").open("ab") as out:
            subprocess.run([*self._as_user, str(PG_BIN / tool), *args], check=True, stdout=out, stderr=out,
                           timeout=120, cwd=self.dir)

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"), "-o", options, "-w",
                  *extra, action)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """Fast shutdown (every session is cut) and start again; returns when it accepts connections."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate")


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started private cluster, stopped and removed afterwards."""
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            cluster.stop()
        shutil.rmtree(cluster.dir, ignore_errors=True)


@contextmanager
def s3_server() -> Iterator[tuple[str, object]]:
    """moto's standalone S3-compatible server on a free loopback port: (endpoint URL, the server)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        _unavailable(f"moto[server] is not installed ({exc})")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # moto keeps its buckets in process-wide state that every server in this process shares: without a
        # reset, a bucket an earlier test filled is still there (met in a randomized run).
        with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30):
            pass
        yield endpoint, server
    finally:
        server.stop()
