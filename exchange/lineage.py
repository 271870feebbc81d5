"""OpenLineage events for each exchange run (issue 5, item 7), through openlineage-python.

One run per batch: START when the pull begins, COMPLETE when the batch is committed (or found empty),
FAIL when a stage raises. The run id is derived from the batch id, so the three stages - separate Airflow
tasks, possibly on separate workers - report one run. Inputs are the province's source, outputs the lake
table under the same URI the Airflow Assets use (``ducklake://lake/<dataset>``); COMPLETE carries the
contract's per-rule results as a data-quality assertions facet and the signed manifest's digest.

Transport: OpenLineage's own configuration when one is given (``OPENLINEAGE_URL`` for HTTP, e.g. to
Marquez; ``OPENLINEAGE_CONFIG`` / ``OPENLINEAGE__TRANSPORT__*``; ``OPENLINEAGE_DISABLED=true``), otherwise
one JSON event per line appended to ``EXCHANGE_HOME/lineage/events.jsonl``. Lineage is a view for
catalogues; the signed provenance log is the record, so a lineage outage is logged and never fails a batch.
"""

from __future__ import annotations

import logging
import os
import types
import typing
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState, set_producer
from openlineage.client.facet_v2 import (
    DatasetFacet,
    RunFacet,
    data_quality_assertions_dataset,
    data_quality_metrics_input_dataset,
    error_message_run,
    nominal_time_run,
    output_statistics_output_dataset,
    schema_dataset,
)
from openlineage.client.transport.file import FileConfig, FileTransport

from exchange.config import ExchangeSettings, Layout
from exchange.contracts import coltypes
from exchange.datasets import dataset as canonical_dataset

log = logging.getLogger(__name__)

PRODUCER = "https://github.com/yrd-exchange/hub"
# The custom facets' JSON Schema, generated into schemas/ by exchange/schemas.py; the raw file, not a page.
FACETS_SCHEMA = "openlineage-facets.schema.json"
FACETS_SCHEMA_URL = f"https://raw.githubusercontent.com/yrd-exchange/hub/main/schemas/{FACETS_SCHEMA}"
JOB_NAMESPACE = "yrd-exchange"
_RUN_NAMESPACE = uuid.UUID("6f1f3c1e-8f43-5d7a-9a35-2d1b8c0e4a11")  # fixed: run ids are stable per batch
_CONFIG_VARIABLES = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED")
set_producer(PRODUCER)  # facets name this hub as their producer, not the client library


def _described(text: str, default: Any = attr.NOTHING) -> Any:
    """An attrs field whose description the published facet schema carries."""
    return attr.field(default=default, metadata={"description": text})


@attr.define
class ExchangeRunFacet(RunFacet):
    """What ties the lineage run to the hub's own signed records."""

    batch_id: str = _described("The hub's batch id (province, dataset, window)")
    province: str = _described("Providing province")
    dataset: str = _described("Canonical dataset")
    manifest_sha256: str | None = _described("SHA-256 of the signed batch manifest (COMPLETE only)", None)
    snapshot_id: int | None = _described("Lake snapshot the batch was committed in (COMPLETE only)", None)
    accepted: int | None = _described("Records committed to the lake (COMPLETE only)", None)
    quarantined: int | None = _described("Records quarantined by the contract (COMPLETE only)", None)

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_SCHEMA_URL}#/$defs/ExchangeRunFacet"


def run_id(batch_id: str) -> str:
    """The lineage run id of a batch: the same in every process that handles it."""
    return str(uuid.uuid5(_RUN_NAMESPACE, batch_id))


def events_file(settings: ExchangeSettings) -> Path:
    """Where the default file transport appends events."""
    return Layout(settings.home).home / "lineage" / "events.jsonl"


def client(settings: ExchangeSettings) -> OpenLineageClient:
    """OpenLineage's configured transport if the operator set one, else the JSON-lines file under home."""
    if any(os.environ.get(v) for v in _CONFIG_VARIABLES) or any(
        k.startswith("OPENLINEAGE__TRANSPORT") for k in os.environ
    ):
        return OpenLineageClient()
    path = events_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))


def _job(province: str, dataset: str) -> Job:
    return Job(namespace=JOB_NAMESPACE, name=f"exchange_{province}.{dataset}")


def schema_facet(dataset: str) -> schema_dataset.SchemaDatasetFacet:
    """The dataset's canonical columns, typed as its contract declares them (the names assertions' `column`
    refer to, as OpenLineage asks)."""
    return schema_dataset.SchemaDatasetFacet(fields=[
        schema_dataset.SchemaDatasetFacetFields(name=f.name, type=coltypes.declared(f.type).physical,
                                                ordinal_position=i)
        for i, f in enumerate(canonical_dataset(dataset).schema, start=1)
    ])


def _source(
    province: str, dataset: str, input_facets: dict[str, Any] | None = None, facets: dict[str, Any] | None = None
) -> InputDataset:
    return InputDataset(namespace=f"province://{province}", name=dataset,
                        facets={"schema": schema_facet(dataset), **(facets or {})}, inputFacets=input_facets or {})


def _lake(dataset: str, facets: dict[str, Any] | None = None) -> OutputDataset:
    return OutputDataset(namespace="ducklake://lake", name=dataset, facets={"schema": schema_facet(dataset)},
                         outputFacets=facets or {})


def _emit(settings: ExchangeSettings, event: RunEvent) -> None:
    try:
        client(settings).emit(event)
    except Exception:  # noqa: BLE001 - lineage must never fail a batch; the provenance log is the record
        log.warning("could not emit the OpenLineage %s event of run %s", event.eventType, event.run.runId,
                    exc_info=True)


def _event(state: RunState, batch_id: str, province: str, dataset: str, **kwargs: Any) -> RunEvent:
    run_facets: dict[str, RunFacet] = kwargs.pop("run_facets", {})
    return RunEvent(
        eventType=state,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=run_id(batch_id), facets=run_facets),
        job=_job(province, dataset),
        producer=PRODUCER,
        **kwargs,
    )


def started(
    settings: ExchangeSettings, batch_id: str, province: str, dataset: str, start: datetime, end: datetime
) -> None:
    """The pull of a batch begins."""
    nominal = nominal_time_run.NominalTimeRunFacet(nominalStartTime=start.isoformat(), nominalEndTime=end.isoformat())
    facets: dict[str, RunFacet] = {
        "nominalTime": nominal,
        "yrdExchange": ExchangeRunFacet(batch_id=batch_id, province=province, dataset=dataset),
    }
    _emit(settings, _event(RunState.START, batch_id, province, dataset, run_facets=facets,
                           inputs=[_source(province, dataset)], outputs=[_lake(dataset)]))


def completed(
    settings: ExchangeSettings,
    batch_id: str,
    province: str,
    dataset: str,
    *,
    pulled: int,
    accepted: int,
    quarantined: int,
    rules: list[dict[str, Any]],
    contract: dict[str, Any] | None = None,
    manifest_sha256: str | None = None,
    snapshot_id: int | None = None,
) -> None:
    """The batch is in the lake (or was empty): counts, per-rule results and the manifest digest."""
    columns = rule_columns(dataset, contract)
    assertions = [
        data_quality_assertions_dataset.Assertion(
            assertion=r["rule_id"], success=int(r["unexpected"]) == 0,
            column=r.get("column") or columns.get(r["rule_id"]), severity=r.get("severity"),
        )
        for r in rules
    ]
    input_facets: dict[str, Any] = {
        "dataQualityMetrics": data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
            columnMetrics={}, rowCount=pulled
        ),
    }
    if assertions:
        input_facets["dataQualityAssertions"] = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
            assertions=assertions
        )
    output_facets = {
        "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=accepted)
    }
    facet = ExchangeRunFacet(
        batch_id=batch_id, province=province, dataset=dataset, manifest_sha256=manifest_sha256,
        snapshot_id=snapshot_id, accepted=accepted, quarantined=quarantined,
    )
    source = _source(province, dataset, input_facets, {"contract": ContractFacet(**contract)} if contract else None)
    _emit(settings, _event(RunState.COMPLETE, batch_id, province, dataset, run_facets={"yrdExchange": facet},
                           inputs=[source], outputs=[_lake(dataset, output_facets)]))


def rule_columns(dataset: str, contract: dict[str, Any] | None) -> dict[str, str]:
    """Rule id -> the column the rule tests (for a pair rule, column A, the one compared against B), from
    the dataset's contract; empty if that contract is no longer the one the batch was checked against."""
    from exchange.contracts.load import load_contract

    try:
        current = load_contract(dataset)
    except Exception:  # noqa: BLE001 - lineage never fails a batch; the assertions just go without columns
        log.warning("lineage: cannot load the %s contract to name assertion columns", dataset, exc_info=True)
        return {}
    if contract is not None and contract.get("contract_sha256") not in (None, current.document_sha256):
        return {}
    return {rule.id: rule.columns[0] for rule in current.rules if rule.columns}


def failed(settings: ExchangeSettings, batch_id: str, province: str, dataset: str, error: BaseException) -> None:
    """A stage of the batch raised."""
    message = error_message_run.ErrorMessageRunFacet(
        message=f"{type(error).__name__}: {error}", programmingLanguage="python"
    )
    facets: dict[str, RunFacet] = {
        "errorMessage": message,
        "yrdExchange": ExchangeRunFacet(batch_id=batch_id, province=province, dataset=dataset),
    }
    _emit(settings, _event(RunState.FAIL, batch_id, province, dataset, run_facets=facets,
                           inputs=[_source(province, dataset)], outputs=[_lake(dataset)]))


@contextmanager
def failures(settings: ExchangeSettings, batch_id: str) -> Iterator[None]:
    """Report a FAIL event for the batch if the enclosed stage raises, then re-raise."""
    try:
        yield
    except Exception as exc:
        province, dataset = batch_id.split(".")[:2]
        failed(settings, batch_id, province, dataset, exc)
        raise


@attr.define
class ContractFacet(DatasetFacet):
    """The data contract the batch was checked against."""

    contract_id: str = _described("Contract id (ODCS)")
    contract_version: str = _described("Contract version")
    contract_sha256: str = _described("SHA-256 of the contract document")

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_SCHEMA_URL}#/$defs/ContractFacet"


CUSTOM_FACETS: tuple[type[RunFacet] | type[DatasetFacet], ...] = (ExchangeRunFacet, ContractFacet)


def facets_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the custom facets, from their attrs fields: what `_schemaURL` points at."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": FACETS_SCHEMA_URL,
        "title": "yrd-exchange OpenLineage facets",
        "description": "Custom OpenLineage facets the hub emits; each facet's _schemaURL names its $defs entry.",
        "$defs": {cls.__name__: _facet_schema(cls) for cls in CUSTOM_FACETS},
    }


_JSON_TYPES = {str: "string", int: "integer", bool: "boolean"}
_BASE_FIELDS = {
    "_producer": "URI of the software that produced the facet",
    "_schemaURL": "URL of the JSON Schema of this facet",
    "_deleted": "Set to true to delete the facet (OpenLineage dataset facets)",
}


def _facet_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attr.fields(cls):
        hint = hints[field.name]
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = ["null" if m is type(None) else _JSON_TYPES[m] for m in members]
        description = _BASE_FIELDS.get(field.name) or field.metadata["description"]
        properties[field.name] = {"type": kinds[0] if len(kinds) == 1 else kinds, "description": description}
        if field.default is attr.NOTHING or field.name in ("_producer", "_schemaURL"):
            required.append(field.name)
    return {"type": "object", "title": cls.__name__, "description": (cls.__doc__ or "").strip(),
            "properties": properties, "required": required, "additionalProperties": False}
