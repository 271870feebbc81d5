"""Test helpers shared by the unit tests: a hub pointed at a province sandbox, and verify assertions."""

from __future__ import annotations

from pathlib import Path

from adapters.base import Sandbox
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.provenance.verify import VerifyReport, verify_home
from exchange.signing.anchor import write_anchor
from exchange.signing.keyring import Keyring


def sandbox_hub(home: Path, sandbox: Sandbox) -> Hub:
    """A hub under `home` whose adapter settings point at `sandbox` (its EXCHANGE_* variables as settings)."""
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    return Hub(ExchangeSettings(home=home, **env))


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
