"""Test helpers shared by the unit tests: a hub pointed at a province sandbox, and verify assertions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.base import Sandbox
from exchange.config import ExchangeSettings
from exchange.contracts.load import contract_path, load_contract
from exchange.hub import Hub
from exchange.provenance.verify import VerifyReport, verify_home
from exchange.signing.anchor import write_anchor
from exchange.signing.keyring import Keyring


def sandbox_hub(home: Path, sandbox: Sandbox) -> Hub:
    """A hub under `home` whose adapter settings point at `sandbox` (its EXCHANGE_* variables as settings)."""
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    return Hub(ExchangeSettings(home=home, **env))


def extract_home(home: Path, records: int, seed: int, start: datetime, end: datetime,
                 department: str = "js.public_security") -> Hub:
    """A demo-like home: one committed Jiangsu e-licence batch (signed by the province's office key), the sample
    department, its sample grant and its extract under extracts/<department>."""
    from adapters.base import sandbox_for
    from exchange.access.registry import Registry
    from exchange.access.service import extract_for_department
    from exchange.demo import SAMPLE_DEPARTMENTS, sample_grant
    from exchange.pipeline import run_exchange
    from exchange.synthetic import generate

    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    hub = sandbox_hub(home, sandbox)
    sandbox.seed("e_license", generate("e_license", "jiangsu", records, seed=seed, start=start, end=end))
    assert run_exchange("jiangsu", "e_license", start, end, hub).status == "committed"
    registry = Registry(hub.layout.access)
    registry.add_department(next(d for d in SAMPLE_DEPARTMENTS if d.id == department))
    registry.add_grant(sample_grant(datetime.now(UTC).date()), hub.signer)
    extract_for_department(hub, department, "e_license", hub.layout.extracts / department)
    return hub


def replay_home(root: Path) -> None:
    """Under root/home: a Jiangsu batch with rejected records, then its replay under a relaxed contract
    (root/contracts), which links to the origin through a provenance replay entry; verified intact."""
    from adapters.base import sandbox_for
    from exchange.pipeline import run_exchange
    from exchange.replay import replay
    from exchange.synthetic import generate

    sandbox = sandbox_for("jiangsu", root / "home" / "sandboxes" / "jiangsu")
    hub = sandbox_hub(root / "home", sandbox)
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC)
    sandbox.seed("e_license", generate("e_license", "jiangsu", 600, seed=7, start=start, end=end))
    origin = run_exchange("jiangsu", "e_license", start, end, hub)
    assert origin.status == "committed" and origin.quarantined
    done = replay(str(origin.batch_id), hub, contracts_dir=relaxed_contracts(root / "contracts"))
    assert done.status == "committed", done
    report = verify_home(hub.settings, record=False)
    assert report.ok, [str(p) for p in report.problems]
    assert report.manifests == 2


def pin_root(home: Path, anchor: Path | None = None) -> Path:
    """Pin the hub root key of `home` in a file beside it (what an operator does once, at set-up); return its path,
    the value for EXCHANGE_TRUST_ANCHOR."""
    path = anchor or home.parent / f"{home.name}.trust-anchor"
    write_anchor(path, Keyring(home / "keys").trust_bundle())
    return path


def verify_copy(home: Path) -> VerifyReport:
    """Verify a home without recording a checkpoint (tests tamper with copies and verify them again)."""
    return verify_home(ExchangeSettings(home=home), record=False)


def assert_named(report: VerifyReport, item: str, problem: str) -> None:
    """Verify failed and one of its problems names `item` with `problem`."""
    assert not report.ok, "verify passed a tampered home"
    hits = [p for p in report.problems if item in p.item and problem in p.problem]
    assert hits, f"expected a problem naming {item!r} with {problem!r}; got {[str(p) for p in report.problems]}"


CHECKSUM = "holder_id.resident_id_checksum"


def relaxed_contracts(folder: Path) -> Path:
    """A contracts folder whose e_license contract (next minor version) only warns about resident-ID checksums."""
    shutil.copytree(contract_path("e_license").parent, folder)
    path = contract_path("e_license", folder)
    text = path.read_text(encoding="utf-8")
    severity = text.index("severity: error", text.index(f"- name: {CHECKSUM}"))
    text = text[:severity] + "severity: warning" + text[severity + len("severity: error"):]
    current = load_contract("e_license").version
    major, minor, _ = current.split(".")
    path.write_text(text.replace(f"version: {current}", f"version: {major}.{int(minor) + 1}.0", 1), encoding="utf-8")
    return folder


_OUTSIDE_READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
sys.stdin.read()  # held until the test closes our stdin (or kills us)
"""


def start_outside_reader(catalog: str) -> subprocess.Popen[str]:
    """A stock duckdb process holding the lake's catalog file open read-only, as a department's session does;
    returned once the catalog is open."""
    reader = subprocess.Popen([sys.executable, "-c", _OUTSIDE_READER, catalog], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
    return reader


def never_wait_for_outsiders(monkeypatch: pytest.MonkeyPatch, who: str) -> None:
    """Fail the test as soon as the hub would wait for a process outside it that holds the lake's catalog."""
    from exchange.lake import connect as lake_connect

    def refuse(seconds: float) -> None:
        raise AssertionError(f"{who} waited {seconds} s for an outside reader")

    monkeypatch.setattr(lake_connect, "wait_for_outsider", refuse)


@contextmanager
def outside_reader(catalog: str) -> Iterator[subprocess.Popen[str]]:
    """start_outside_reader, closed at the end of the block."""
    reader = start_outside_reader(catalog)
    try:
        yield reader
    finally:
        reader.communicate("", timeout=60)
