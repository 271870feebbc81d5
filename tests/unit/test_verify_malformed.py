"""F7: verify never crashes on a malformed file: it names it, and `--json` always prints a verdict.

One small home (two Jiangsu batches of different datasets, so their ledger files differ in size, and an
archive) is built once; every case breaks one file of a copy in a way no check was written for, and
expects `exchange verify --json` to exit 1 with a BROKEN verdict naming the file. A full disk while verify
records its result leaves the verdict and no partial file.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.base import sandbox_for
from exchange.cli import app
from exchange.pipeline import run_exchange
from exchange.provenance.archive import archive_paths, write_archive
from exchange.synthetic import generate
from tests.conftest import REPO
from tests.hubs import pin_root, sandbox_hub

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 4, tzinfo=UTC)
EXCHANGE = Path(sys.executable).parent / "exchange"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("malformed") / "home"
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    hub = sandbox_hub(home, sandbox)
    for dataset, n in (("e_license", 120), ("enterprise_registration", 80)):
        sandbox.seed(dataset, generate(dataset, "jiangsu", n, seed=3, start=START, end=END))
        assert run_exchange("jiangsu", dataset, START, END, hub).status == "committed"
    assert write_archive(hub.log, hub.signer, hub.layout.home, lake_snapshot=None, manifests=2) is not None
    return home


@pytest.fixture
def home(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(built, copy, symlinks=True)
    monkeypatch.setenv("EXCHANGE_HOME", str(copy))
    return copy


def _swap_ledger_files(home: Path) -> str:
    a, b = sorted((home / "lake" / "data" / "main" / "exchange_batches").glob("*.parquet"))
    assert a.stat().st_size != b.stat().st_size, "the case needs ledger files of different sizes"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    return "exchange_batches"


def _cut_manifest(home: Path) -> str:
    manifest = sorted((home / "manifests").rglob("*.json"))[0]
    manifest.write_bytes(manifest.read_bytes()[:150])
    return manifest.name


def _archive_header_not_json(home: Path) -> str:
    archive = archive_paths(home / "provenance" / "archives")[0]
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(archive, "w") as tar:
        for member, data in members:
            data = b"{not json" if member.name == "header.json" else data
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return archive.name


def _archive_not_a_tar(home: Path) -> str:
    archive = archive_paths(home / "provenance" / "archives")[0]
    archive.write_text("not an archive [/b]")
    return archive.name


def _verified_record_cut(home: Path) -> str:
    (home / "provenance" / "verified.json").write_text('{"verified_at": ')
    return "verified.json"


def _trust_bundle_not_json(home: Path) -> str:
    (home / "keys" / "trust-bundle.json").write_text("[/b]")
    return "trust-bundle.json"


def _catalog_not_a_database(home: Path) -> str:
    (home / "lake" / "catalog.ducklake").write_bytes(b"not a database")
    return "catalog.ducklake"


def _log_line_garbage(home: Path) -> str:
    with (home / "provenance" / "log.jsonl").open("a") as log:
        log.write("{cut short\n")
    return "log.jsonl"


@dataclass(frozen=True)
class Break:
    name: str
    apply: Callable[[Path], str]  # breaks the home; returns what the problem's item must name


BREAKS = [
    Break("two ledger Parquet files of different sizes swapped", _swap_ledger_files),
    Break("a manifest cut short", _cut_manifest),
    Break("an archive whose header is not JSON", _archive_header_not_json),
    Break("an archive that is not a tar file", _archive_not_a_tar),
    Break("verify's own record cut short", _verified_record_cut),
    Break("the trust bundle not JSON", _trust_bundle_not_json),
    Break("the lake catalog not a database", _catalog_not_a_database),
    Break("a provenance log line cut short", _log_line_garbage),
]


@pytest.mark.parametrize("case", BREAKS, ids=lambda b: b.name)
def test_verify_names_a_malformed_file(home: Path, case: Break) -> None:
    if case.apply is _verified_record_cut:
        assert CliRunner().invoke(app, ["verify"]).exit_code == 0  # so there is a record to cut
    named = case.apply(home)
    result = CliRunner().invoke(app, ["verify", "--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "BROKEN"
    assert any(named in p["item"] for p in verdict["problems"]), verdict["problems"]
    plain = CliRunner().invoke(app, ["verify"])
    assert plain.exit_code == 1 and plain.output.startswith("BROKEN"), plain.output


def _no_writes() -> None:
    """In the child: no file may grow (RLIMIT_FSIZE 0), and exceeding it is an error, not SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _exchange(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The anchor is pinned outside the home, as an operator does, before the child that may not write starts.
    env = {**os.environ, "PYTHONPATH": str(REPO), "EXCHANGE_HOME": str(home),
           "EXCHANGE_TRUST_ANCHOR": str(pin_root(home))}
    return subprocess.run([str(EXCHANGE), *args], capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=_no_writes)


def test_a_full_disk_leaves_the_verdict_and_no_partial_file(home: Path, tmp_path: Path) -> None:
    done = _exchange(home, "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("intact") and "was not recorded" in " ".join(done.stdout.split())
    assert "Traceback" not in done.stderr
    assert not list((home / "provenance").glob("verified.json*")), "no partial record left behind"
    as_json = _exchange(home, "verify", "--json")
    assert json.loads(as_json.stdout)["verdict"] == "intact"
    report = _exchange(home, "report", "--out", str(tmp_path / "report.html"))
    assert report.returncode == 1 and "Traceback" not in report.stderr
    assert report.stderr.startswith("error: ") and len(report.stderr.strip().splitlines()) == 1, report.stderr
