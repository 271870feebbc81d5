"""The composition root: the one object that wires settings, paths, keys, signer and provenance log.

Kept apart from the pipeline on purpose: everything that needs a hub (queries, the API, verify, the CLI)
imports this module, and it must stay light. It imports no Great Expectations, Airflow, dlt, adapter or
contract code, so `exchange query` and an API start do not pay for the validate stage's imports
(tests/unit/test_imports.py holds that).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from exchange.config import ExchangeSettings, Layout
from exchange.config import settings as current_settings
from exchange.provenance.log import ProvenanceLog
from exchange.signing.keyring import Keyring
from exchange.signing.signers import KeySigner

if TYPE_CHECKING:
    from adapters.base import Window

HUB = "hub"
"""The hub's own actor name and signing role."""


@dataclass
class Hub:
    """The runtime context every stage shares: settings, paths, keys, provenance."""

    settings: ExchangeSettings

    @classmethod
    def current(cls) -> Hub:
        """The hub configured by the environment (EXCHANGE_*)."""
        return cls(current_settings())

    @cached_property
    def layout(self) -> Layout:
        return Layout(self.settings.home).ensure()

    @cached_property
    def keyring(self) -> Keyring:
        return Keyring(self.layout.keys, algorithm=self.settings.key_algorithm)

    @property
    def signer(self) -> KeySigner:
        # Not cached: after a key rotation a long-lived process must sign with the new key at once.
        return self.keyring.signer(HUB)

    @cached_property
    def log(self) -> ProvenanceLog:
        return ProvenanceLog(self.layout.provenance)

    def staging(self, batch_id: str) -> Path:
        return self.layout.staging / batch_id


def batch_id_for(province: str, dataset: str, window: Window) -> str:
    """Deterministic batch id: a retry or re-run of the same window gets the same id."""
    fmt = "%Y%m%dT%H%M%SZ"
    start = window.start.astimezone(UTC).strftime(fmt)
    end = window.end.astimezone(UTC).strftime(fmt)
    return f"{province}.{dataset}.{start}-{end}"
