"""Offending values of rejected records, masked by their field's classification before any report shows them.

A rejection report leaves the hub's controlled storage (it is mailed, opened in spreadsheets, printed), so
it gets the masking a department gets: the same SQL templates from ``exchange.access.policy``, run here
by DuckDB over the quarantine rows' ``record_json``. Rejected values are often malformed (a resident ID of
9 digits), and keeping "the first 6 and last 4" of those would show all of them, so a value too short to
hide anything under its rule is starred out completely.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exchange import intake
from exchange.access.policy import MASKS
from exchange.contracts.model import RULE_ID_SEPARATOR, Contract, Rule
from exchange.contracts.validate import display_values, reason_text

WITHHELD = "已隐藏/withheld"
# Characters each masking rule leaves in clear; a value not longer than this would be shown whole.
_KEPT = {"resident_id": 10, "name": 1, "mobile": 7}


def mask_expression(column: str, masking: str) -> str:
    """A DuckDB expression for string column `column` masked under `masking` (aliased to the column)."""
    quoted = f'"{_identifier(column)}"'
    if masking == "none":
        return f"{quoted} AS {quoted}"
    if masking not in MASKS:  # "withhold", and an unknown rule, which must hide, never leak
        return f"CASE WHEN {quoted} IS NULL THEN NULL ELSE '{WITHHELD}' END AS {quoted}"
    template = MASKS[masking].format(c=quoted)
    kept = _KEPT[masking]  # every rule but CLEAR keeps some characters (test_masked_evidence checks each)
    return (f"CASE WHEN length({quoted}) <= {kept} THEN repeat('*', length({quoted})) "
            f"ELSE {template} END AS {quoted}")


def _identifier(name: str) -> str:
    # Column names come from the canonical schemas; anything else must not reach SQL text.
    if not name.isidentifier():
        raise ValueError(f"not a column name: {name!r}")
    return name


def masked_columns(quarantined: pa.Table, contract: Contract, columns: Iterable[str]) -> pa.Table:
    """`columns` of each quarantined record (as text, from ``record_json``), masked by classification.

    Rows stay in the order of `quarantined`; a missing value stays null.
    """
    names = list(dict.fromkeys(columns))
    if not names:
        return pa.table({})
    extracted = ", ".join(
        f"json_extract_string(record_json, '$.\"{_identifier(n)}\"') AS \"{n}\"" for n in names
    )
    masked = ", ".join(mask_expression(n, contract.field(n).masking) for n in names)
    records = quarantined.select(["record_json"])
    with duckdb.connect() as con:
        con.register("records", records)
        # insertion order is DuckDB's default; stated because the rows are zipped with the quarantine rows
        con.execute("SET preserve_insertion_order = true")
        result = con.execute(f"SELECT {masked} FROM (SELECT {extracted} FROM records)").to_arrow_table()
    return result.cast(pa.schema([pa.field(n, pa.string()) for n in names]))


def _masked_as_sent(
    quarantined: pa.Table, contract: Contract
) -> tuple[pa.Table, dict[str, pa.Array | pa.ChunkedArray]] | None:
    """The values as sent of unreadable fields (exchange.intake), masked like the record, and per field the
    reason text ``<field> sent '<masked value>': <problem>``; None when no row has any."""
    if "as_sent" not in quarantined.column_names:
        return None
    as_sent = flat(quarantined.column("as_sent").cast(pa.string()))
    if as_sent.null_count == len(as_sent):
        return None
    names = [n for n in contract.field_names if pc.any(intake.has(as_sent, n)).as_py()]
    entries = [pc.if_else(intake.has(as_sent, n), pc.binary_join_element_wise(f'"{n}":', intake.sent(as_sent, n), ""),
                          pa.scalar(None, pa.string())) for n in names]
    masked = masked_columns(pa.table({"record_json": intake.column(entries, len(as_sent))}), contract, names)
    reasons = {}
    for n in names:
        problem = pc.utf8_slice_codeunits(intake.why(as_sent, n), 1, -1)
        text = pc.binary_join_element_wise(f"{n} sent ", display_values(masked.column(n)), ": ", problem, "")
        reasons[n] = pc.if_else(intake.has(as_sent, n), text, pa.scalar(None, pa.string()))
    return masked, reasons


def _shown(column: str, masked: pa.Table, sent: tuple[pa.Table, dict[str, pa.Array | pa.ChunkedArray]] | None
           ) -> pa.Array | pa.ChunkedArray:
    """``<column>='<masked value>'``, or ``<column> sent '<masked value as sent>'`` where it was unreadable."""
    value = pc.binary_join_element_wise(f"{column}=", display_values(masked.column(column)), "")
    if sent is None or column not in sent[1]:
        return value
    as_sent = pc.binary_join_element_wise(f"{column} sent ", display_values(sent[0].column(column)), "")
    return pc.if_else(pc.is_valid(sent[1][column]), as_sent, value)


def flat(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (Arrow kernels hand back chunked arrays for chunked input)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


@dataclass(frozen=True)
class RuleHits:
    """Which of the given quarantine rows broke `rule`, and their offending values, masked."""

    rule: Rule
    hit: pa.Array  # bool per row
    values: pa.Array  # "field='masked value'[, field='…']" per row (null where not hit)
    reasons: pa.Array  # the quarantine reason rebuilt from the masked values (null where not hit)


@dataclass(frozen=True)
class Explained:
    """Quarantine rows with masked keys and, per rule that any of them broke, the masked evidence."""

    keys: pa.Array
    rules: list[RuleHits]
    unknown: pa.Array  # bool per row: rule ids the contract does not define (a replay under another version)


def explain(quarantined: pa.Table, contract: Contract) -> Explained:
    """Mask the key and the offending values of `quarantined` rows; say which rules each row broke (vectorized)."""
    ids = quarantined.column("rule_id").combine_chunks().cast(pa.string())
    # A row without ids becomes ",,", which no rule matches: a hit is never null.
    padded = pc.binary_join_element_wise(RULE_ID_SEPARATOR, pc.fill_null(ids, ""), RULE_ID_SEPARATOR, "")
    all_rules = (*contract.rules, *(contract.readable_rule(name) for name in contract.field_names))
    hits = {r.id: pc.match_substring(padded, f"{RULE_ID_SEPARATOR}{r.id}{RULE_ID_SEPARATOR}") for r in all_rules}
    broken = [r for r in all_rules if pc.any(hits[r.id]).as_py()]
    masked = masked_columns(quarantined, contract, [contract.key, *(c for r in broken for c in r.columns)])
    sent = _masked_as_sent(quarantined, contract)
    no_text = pa.scalar(None, pa.string())
    rules = []
    for rule in broken:
        shown = [_shown(c, masked, sent) for c in rule.columns]
        subject = pc.binary_join_element_wise(*shown, ", ") if len(shown) > 1 else shown[0]
        reason = reason_text(masked, rule)
        if sent is not None:  # what was sent, not the null it became
            reason = pc.coalesce(*(sent[1][c] for c in rule.columns if c in sent[1]), reason)
        rules.append(RuleHits(rule, hits[rule.id], flat(pc.if_else(hits[rule.id], subject, no_text)),
                              flat(pc.if_else(hits[rule.id], reason, no_text))))
    # Every listed id must be one the contract knows; otherwise the rebuilt reason would silently miss it.
    known = np.zeros(quarantined.num_rows, dtype=np.int64)
    for hits_of_rule in rules:
        known += hits_of_rule.hit.to_numpy(zero_copy_only=False)
    listed = pc.fill_null(pc.list_value_length(pc.split_pattern(ids, RULE_ID_SEPARATOR)), 0)
    unknown = pa.array(listed.to_numpy(zero_copy_only=False) != known, pa.bool_())
    # A record without its key is listed by what it lacks, never as an empty cell or "None".
    keys = flat(pc.fill_null(masked.column(contract.key), f"(no {contract.key})"))
    return Explained(keys, rules, unknown)
