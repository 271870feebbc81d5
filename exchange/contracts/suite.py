"""Compile a contract's rules into a Great Expectations 1.x suite, and keep one GX context per process.

Creating a GX context, datasource and suite takes a noticeable fraction of a second, so they are built
once per process and per contract document (keyed by its SHA-256, so an edited contract gets a new
suite). Each expectation carries its rule id in ``meta["rule_id"]``: that is how results map back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import great_expectations as gx
import great_expectations.execution_engine.pandas_execution_engine as gx_pandas_engine
from great_expectations.core.batch_definition import BatchDefinition
from great_expectations.core.expectation_suite import ExpectationSuite
from great_expectations.data_context.data_context.abstract_data_context import AbstractDataContext
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.datasource.fluent.pandas_datasource import PandasDatasource
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.metadata_types import FailureSeverity
from great_expectations.expectations.registry import get_expectation_impl

from exchange.contracts import expectations as _custom_expectations  # noqa: F401 - registers the custom types
from exchange.contracts.model import Contract, Rule
from exchange.contracts.reference import PARAMETER, gx_parameter_name, parameter_of

DATASOURCE = "exchange"
RULE_ID_META = "rule_id"
_SEVERITY = {"error": FailureSeverity.CRITICAL, "warning": FailureSeverity.WARNING}


@dataclass(frozen=True)
class CompiledSuite:
    """A contract's GX suite plus the batch definition that feeds it a whole dataframe."""

    suite: ExpectationSuite
    batch_definition: BatchDefinition[Any]
    contract_sha256: str


_lock = threading.RLock()
_context: AbstractDataContext | None = None
_datasource: PandasDatasource | None = None
_compiled: dict[str, CompiledSuite] = {}


def gx_lock() -> threading.RLock:
    """The lock that serialises use of the shared GX context (GX objects are not documented thread-safe)."""
    return _lock


def expectation_for(rule: Rule) -> Expectation:
    """The GX expectation a rule compiles to, tagged with the rule id and severity."""
    cls = get_expectation_impl(rule.expectation)
    kwargs: dict[str, Any] = {}
    for name, value in rule.kwargs.items():
        parameter = parameter_of(value)
        # GX only accepts identifier-like parameter names; validate() passes values under the same mapping.
        kwargs[name] = value if parameter is None else {PARAMETER: gx_parameter_name(parameter)}
    return cls(
        **kwargs,
        meta={RULE_ID_META: rule.id},
        severity=_SEVERITY[rule.severity],
        description=rule.description,
    )


def build_suite(contract: Contract) -> ExpectationSuite:
    """A fresh (unregistered) GX suite holding one expectation per contract rule, in contract order."""
    # Passing the expectations to the constructor (not add_expectation) needs no active GX context.
    expectations = [expectation_for(rule) for rule in contract.rules]
    return ExpectationSuite(name=suite_name(contract), expectations=expectations)


def suite_name(contract: Contract) -> str:
    """Unique per contract document, so two versions of a contract never share a suite."""
    return f"{contract.dataset}@{contract.version}#{contract.document_sha256[:16]}"


def compiled(contract: Contract) -> CompiledSuite:
    """The cached suite and batch definition for this contract document (built on first use)."""
    with _lock:
        cached = _compiled.get(contract.document_sha256)
        if cached is not None:
            return cached
        context, datasource = _get_context()
        asset = datasource.add_dataframe_asset(name=suite_name(contract))
        batch_definition = asset.add_batch_definition_whole_dataframe("whole batch")
        suite = context.suites.add(build_suite(contract))
        entry = CompiledSuite(
            suite=suite, batch_definition=batch_definition, contract_sha256=contract.document_sha256
        )
        _compiled[contract.document_sha256] = entry
        return entry


def _get_context() -> tuple[AbstractDataContext, PandasDatasource]:
    global _context, _datasource
    if _context is None or _datasource is None:
        # GX fingerprints every pandas batch with an MD5 over pd.util.hash_pandas_object: about 2 s per
        # million rows, twice per validation (get_batch, then batch.validate re-fetches). The fingerprint
        # is only a batch marker; the hub has its own SHA-256 of the landed payload. Threshold 0 skips it.
        gx_pandas_engine.HASH_THRESHOLD = 0
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,  # no usage statistics leave a government network
            progress_bars=ProgressBarsConfig(globally=False),  # tqdm bars would flood Airflow task logs
        )
        _context = gx.get_context(mode="ephemeral", project_config=config)
        _datasource = _context.data_sources.add_pandas(DATASOURCE)
    return _context, _datasource
