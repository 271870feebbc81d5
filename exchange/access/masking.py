"""Masking rules chosen by a field's classification, as SQL expressions run inside the hub."""

from __future__ import annotations

from exchange.errors import AccessDenied

MASKS: dict[str, str] = {
    "none": "{c}",
    # GB 11643 ID: keep the region (first 6) and the last 4, as the national masking practice does.
    "resident_id": "CASE WHEN {c} IS NULL THEN NULL ELSE left({c}, 6) || repeat('*', length({c}) - 10) "
    "|| right({c}, 4) END",
    # Chinese names: keep the surname.
    "name": "CASE WHEN {c} IS NULL THEN NULL ELSE left({c}, 1) || repeat('*', length({c}) - 1) END",
    "mobile": "CASE WHEN {c} IS NULL THEN NULL ELSE left({c}, 3) || '****' || right({c}, 4) END",
}


def masked_expression(column: str, rule: str, *, unmasked: bool) -> str:
    """The SELECT expression for `column` under masking `rule` (quoted, aliased to the column name)."""
    quoted = f'"{column}"'
    if unmasked or rule == "none":
        return f"{quoted} AS {quoted}"
    if rule == "withhold":
        raise AccessDenied(f"column {column} is withheld unless a grant names it with a justification")
    try:
        template = MASKS[rule]
    except KeyError:
        raise AccessDenied(f"column {column}: unknown masking rule {rule!r}") from None
    return f"{template.format(c=quoted)} AS {quoted}"
