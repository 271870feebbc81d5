"""Jiangsu's adapter over SFTP: a real SSH/SFTP server (paramiko, in this process) on 127.0.0.1.

The server serves the sandbox's folder with a host key generated per test; the adapter trusts it only
through a known_hosts file, as an operator would configure it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paramiko
import pyarrow as pa
import pytest

from adapters.authenticity import SourceTrust
from adapters.base import Landing, PullRequest, Window, adapter_for
from adapters.jiangsu.adapter import JiangsuAdapter
from adapters.jiangsu.sandbox import JiangsuSandbox, create
from adapters.jiangsu.sftp import SftpDrop, SftpLocation
from adapters.jiangsu.sftp_server import SftpServer
from exchange.config import ExchangeSettings
from exchange.datasets import dataset
from exchange.errors import SourceAuthError, SourceFormatError, TerminalError, TransientError
from exchange.synthetic import DEFECT_COLUMN, generate

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 1, tzinfo=CST)
END = datetime(2026, 11, 4, tzinfo=CST)
N = 1500
PASSWORD = "苏-drop-password"
DAY_FILES = ["电子证照_20261101.csv", "电子证照_20261102.csv", "电子证照_20261103.csv"]


@pytest.fixture
def sandbox(tmp_path: Path) -> JiangsuSandbox:
    box = create(tmp_path / "jiangsu")
    box.seed("e_license", _records())
    return box


@pytest.fixture
def client_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


@pytest.fixture
def server(sandbox: JiangsuSandbox, client_key: paramiko.PKey) -> Iterator[SftpServer]:
    sftp = SftpServer(sandbox.root, password=PASSWORD, public_key=client_key)
    sftp.start()
    yield sftp
    sftp.stop()


def _records() -> pa.Table:
    return generate("e_license", "jiangsu", N, seed=11, start=START, end=END)


def _adapter(server: SftpServer, known_hosts: Path | None, password: str | None = PASSWORD) -> JiangsuAdapter:
    drop = SftpDrop(SftpLocation.parse(server.url()), known_hosts=known_hosts, password=password,
                    timeout=120)  # a hang guard: no test here is about a slow server
    # The served sandbox signs its manifests with the office key in its own keyring (<root>/keys).
    return JiangsuAdapter(drop, trust=SourceTrust(server.root / "keys"))


def _pull(adapter: JiangsuAdapter, landing: Path) -> pa.Table:
    tables = list(adapter.pull(PullRequest("e_license", Window(START, END), None), Landing(landing)))
    return pa.concat_tables(tables, promote_options="default") if tables else dataset("e_license").schema.empty_table()


def test_pull_over_sftp_equals_the_local_pull(
    sandbox: JiangsuSandbox, server: SftpServer, tmp_path: Path
) -> None:
    known_hosts = server.write_known_hosts(tmp_path / "known_hosts")

    landing = Landing(tmp_path / "l")
    tables = list(_adapter(server, known_hosts).pull(PullRequest("e_license", Window(START, END), None), landing))

    pulled = pa.concat_tables(tables)
    assert pulled.num_rows == N
    assert pulled.equals(_records().drop_columns([DEFECT_COLUMN]))
    assert pulled.equals(_pull(sandbox.adapter(), tmp_path / "local"))
    for landed in landing.files:
        assert landed.path.read_bytes() == (sandbox.drop / landed.name).read_bytes()
    assert len(landing.files) == 9  # three day files, their manifests and the manifests' signatures


def test_public_key_login_from_settings(
    sandbox: JiangsuSandbox, server: SftpServer, client_key: paramiko.PKey, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_file = tmp_path / "id_ecdsa"
    client_key.write_private_key_file(str(key_file))
    monkeypatch.setenv("EXCHANGE_JIANGSU_SFTP_URL", server.url())
    monkeypatch.setenv("EXCHANGE_JIANGSU_SFTP_KEY_FILE", str(key_file))
    monkeypatch.setenv("EXCHANGE_JIANGSU_SFTP_KNOWN_HOSTS", str(server.write_known_hosts(tmp_path / "kh")))

    # A hub whose trust bundle holds the sandbox's office key (a standalone sandbox keeps it in <root>/keys).
    adapter = adapter_for("jiangsu", ExchangeSettings(home=server.root))

    assert isinstance(adapter, JiangsuAdapter) and isinstance(adapter.transport, SftpDrop)
    assert _pull(adapter, tmp_path / "l").num_rows == N


def test_an_unknown_or_changed_host_key_is_refused(server: SftpServer, tmp_path: Path) -> None:
    with pytest.raises(TerminalError, match="not in EXCHANGE_JIANGSU_SFTP_KNOWN_HOSTS"):
        _pull(_adapter(server, None), tmp_path / "l1")

    impostor = paramiko.ECDSAKey.generate()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {impostor.get_name()} {impostor.get_base64()}\n")
    with pytest.raises(TerminalError, match="man-in-the-middle"):
        _pull(_adapter(server, known_hosts), tmp_path / "l2")


def test_a_wrong_password_is_an_auth_error(server: SftpServer, tmp_path: Path) -> None:
    known_hosts = server.write_known_hosts(tmp_path / "known_hosts")

    with pytest.raises(SourceAuthError, match="EXCHANGE_JIANGSU_SFTP_PASSWORD"):
        _pull(_adapter(server, known_hosts, password="wrong"), tmp_path / "l")


def test_partial_drops_are_not_read_over_sftp(sandbox: JiangsuSandbox, server: SftpServer, tmp_path: Path) -> None:
    (sandbox.drop / "电子证照_20261103.manifest.json").unlink()
    known_hosts = server.write_known_hosts(tmp_path / "known_hosts")
    landing = Landing(tmp_path / "l")

    list(_adapter(server, known_hosts).pull(PullRequest("e_license", Window(START, END), None), landing))

    assert [f.name for f in landing.files if f.name.endswith(".csv")] == DAY_FILES[:2]


def test_a_damaged_file_names_its_sftp_location(sandbox: JiangsuSandbox, server: SftpServer, tmp_path: Path) -> None:
    path = sandbox.drop / DAY_FILES[0]
    path.write_bytes(path.read_bytes()[:-10])  # truncated in transit to the drop server
    known_hosts = server.write_known_hosts(tmp_path / "known_hosts")

    with pytest.raises(SourceFormatError, match="SHA-256") as caught:
        _pull(_adapter(server, known_hosts), tmp_path / "l")

    assert caught.value.source == f"{server.url()}/{DAY_FILES[0]}"


def test_a_dropped_connection_is_transient_and_the_retry_reconnects(server: SftpServer, tmp_path: Path) -> None:
    adapter = _adapter(server, server.write_known_hosts(tmp_path / "known_hosts"))
    chunks = adapter.pull(PullRequest("e_license", Window(START, END), None), Landing(tmp_path / "l1"))
    next(chunks)
    server.drop_connections()  # the drop server restarts mid-pull

    with pytest.raises(TransientError, match="Jiangsu's SFTP server"):
        list(chunks)
    assert _pull(adapter, tmp_path / "l2").num_rows == N  # what Airflow's retry does


def test_an_unreachable_server_is_transient(server: SftpServer, tmp_path: Path) -> None:
    adapter = _adapter(server, server.write_known_hosts(tmp_path / "known_hosts"))
    server.stop()

    with pytest.raises(TransientError, match="connecting"):
        _pull(adapter, tmp_path / "l")


def test_sftp_urls_are_checked() -> None:
    location = SftpLocation.parse("sftp://js%40drop@10.32.0.5:2222/data/out")
    assert (location.user, location.host, location.port, location.path) == ("js@drop", "10.32.0.5", 2222, "/data/out")
    for bad in ("ftp://u@h/p", "sftp://h/p", "sftp://u@h", "sftp://u:secret@h/p"):
        with pytest.raises(TerminalError, match="EXCHANGE_JIANGSU_SFTP"):
            SftpLocation.parse(bad)
    with pytest.raises(TerminalError, match="PASSWORD or EXCHANGE_JIANGSU_SFTP_KEY_FILE"):
        SftpDrop(location, known_hosts=None)
