"""Generate schemas/*.schema.json from the pydantic models of every document the hub publishes.

Run `make schemas` (python -m exchange.schemas) after changing a model; a test fails if they differ.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from exchange.access.check import SignedLicenceCheck
from exchange.access.extract import SignedExtractManifest
from exchange.access.models import Department, Grant, SignedGrant, SignedGrantRevocation
from exchange.provenance.archive import ArchiveHeader
from exchange.provenance.log import ProvenanceEntry
from exchange.provenance.manifest import SignedManifest
from exchange.signing.trust import TrustBundle

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"

DOCUMENTS: dict[str, type[BaseModel]] = {
    "batch-manifest": SignedManifest,
    "provenance-entry": ProvenanceEntry,
    "extract-manifest": SignedExtractManifest,
    "grant": Grant,
    "signed-grant": SignedGrant,
    "grant-revocation": SignedGrantRevocation,
    "department": Department,
    "trust-bundle": TrustBundle,
    "provenance-archive-header": ArchiveHeader,
    "licence-check": SignedLicenceCheck,
}


def render() -> dict[str, str]:
    """File name -> JSON Schema text for every published document."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(mode="serialization"), indent=2,
                                          ensure_ascii=False) + "\n"
        for name, model in DOCUMENTS.items()
    }


def main() -> None:
    """Write the schemas."""
    SCHEMAS_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (SCHEMAS_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote schemas/{name}")


if __name__ == "__main__":
    main()
