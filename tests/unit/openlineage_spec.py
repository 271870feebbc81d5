"""Check OpenLineage events against the official JSON Schemas (tests/fixtures/openlineage, vendored unchanged).

The RunEvent is validated against ``OpenLineage.json#/$defs/RunEvent``; every facet, wherever it sits (run,
job, dataset, input and output facets), against the schema its own ``_schemaURL`` names, and under the key
that schema gives it. The hub's custom facets resolve to the schema it publishes in schemas/. A facet whose
schema is not among those files is a problem, not a pass: an event is only called valid when every part
of it was checked.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from exchange import lineage
from exchange.schemas import SCHEMAS_DIR

SPEC_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "openlineage"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


@functools.cache
def registry() -> Registry[Any]:
    """Every vendored spec file and the hub's published facet schema, each under its own ``$id``."""
    files = [*sorted(SPEC_DIR.rglob("*.json")), SCHEMAS_DIR / lineage.FACETS_SCHEMA]
    resources = [Resource.from_contents(json.loads(path.read_text("utf-8"))) for path in files]
    return Registry().with_resources((resource.id(), resource) for resource in resources)


def _errors(url: str, instance: Any, where: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        {"$ref": url}, registry=registry(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return [f"{where}{''.join(f'.{p}' for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(where, key, facet) for every facet of the event."""
    for key, facet in (event.get("run", {}).get("facets") or {}).items():
        yield f"run.facets.{key}", key, facet
    for key, facet in (event.get("job", {}).get("facets") or {}).items():
        yield f"job.facets.{key}", key, facet
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for i, item in enumerate(event.get(side) or []):
            for group in ("facets", extra):
                for key, facet in (item.get(group) or {}).items():
                    yield f"{side}[{i}].{group}.{key}", key, facet


def problems(event: dict[str, Any]) -> list[str]:
    """Every way `event` breaks the OpenLineage spec or one of its facets' schemas (empty when valid)."""
    found = []
    if event.get("schemaURL") != RUN_EVENT:
        found.append(f"schemaURL: {event.get('schemaURL')!r}, expected {RUN_EVENT}")
    found += _errors(RUN_EVENT, event, "event")
    for where, key, facet in _facets(event):
        url = facet.get("_schemaURL") if isinstance(facet, dict) else None
        if not isinstance(url, str):
            found.append(f"{where}: no _schemaURL")
            continue
        base, _, pointer = url.partition("#")
        try:
            root = registry().contents(base)
        except NoSuchResource:
            found.append(f"{where}: _schemaURL {url} is not a vendored OpenLineage schema nor the hub's")
            continue
        found += _errors(url, facet, where)
        # An official facet file names the key the facet goes under ({"properties": {"schema": ...}}).
        named = (root.get("properties") or {}) if isinstance(root, dict) else {}
        if named and key not in named:
            found.append(f"{where}: {pointer.rsplit('/', 1)[-1]} goes under {sorted(named)}, not {key!r}")
    return found
