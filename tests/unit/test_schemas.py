"""The published JSON Schemas are generated from the models and kept current."""

from __future__ import annotations

from exchange.schemas import SCHEMAS_DIR, render


def test_schemas_match_the_models() -> None:
    for name, text in render().items():
        path = SCHEMAS_DIR / name
        assert path.exists(), f"schemas/{name} missing: run `make schemas`"
        assert path.read_text(encoding="utf-8") == text, f"schemas/{name} is stale: run `make schemas`"


def test_every_field_is_described() -> None:
    import json

    for name, text in render().items():
        schema = json.loads(text)
        for model in [schema, *schema.get("$defs", {}).values()]:
            for field, spec in model.get("properties", {}).items():
                assert "description" in spec, f"{name}: {model.get('title')}.{field} has no description"


def test_the_auditors_event_table_is_the_vocabulary() -> None:
    from exchange.schemas import AUDITORS_DOC, render_auditors_doc

    text = AUDITORS_DOC.read_text(encoding="utf-8")
    assert render_auditors_doc(text) == text, "docs/auditors.md's event table is stale: run `make schemas`"
