"""Test helpers shared by the unit tests: a hub pointed at a province sandbox, and verify assertions."""

from __future__ import annotations

import shutil
from pathlib import Path

from adapters.base import Sandbox
from exchange.config import ExchangeSettings
from exchange.contracts.load import contract_path, load_contract
from exchange.hub import Hub
from exchange.provenance.verify import VerifyReport, verify_home


def sandbox_hub(home: Path, sandbox: Sandbox) -> Hub:
    """A hub under `home` whose adapter settings point at `sandbox` (its EXCHANGE_* variables as settings)."""
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    return Hub(ExchangeSettings(home=home, **env))


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
