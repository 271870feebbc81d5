"""What a province sent that the adapter could not read, kept beside the canonical record (vectorized).

A value that does not read as its field's type (a date that is no date, a number sent as text, a key given
twice in one JSON object, a row without an update time) must not vanish into a null: the office has to see
what it sent. Adapters therefore stage, beside the canonical columns, one reserved column :data:`AS_SENT`:
per record, null when everything was read, else a JSON object naming each unreadable field with the value
as sent (a JSON literal) and the problem::

    {"issued_on":{"sent":"2024-02-30","problem":"not a date in the format %Y-%m-%d"}}

The validate stage quarantines every such record (see exchange.contracts.validate) and keeps the object in
the quarantine row, so the reason, the office report and ``exchange quarantine show`` say what was sent.
Everything here is built with Arrow string kernels: no per-record Python.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from exchange.contracts.model import READABLE_SUFFIX
from exchange.datasets import dataset as canonical_dataset

__all__ = ["AS_SENT", "READABLE_SUFFIX"]

AS_SENT = "_as_sent"

Text: TypeAlias = "pa.Array | pa.ChunkedArray"

_JSON_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")] + [
    (chr(c), f"\\u{c:04x}") for c in range(0x20) if chr(c) not in "\n\r\t"
]


def json_string(text: Text) -> Text:
    """JSON string literals (quoted, escaped per RFC 8259) for a string column; nulls stay null."""
    escaped = text
    for raw, replacement in _JSON_ESCAPES[:2]:
        escaped = pc.replace_substring(escaped, raw, replacement)
    # Control characters are rare in practice: only pay for the other 30 replacements when one is present.
    if pc.any(pc.match_substring_regex(escaped, "[\\x00-\\x1f]")).as_py():
        for raw, replacement in _JSON_ESCAPES[2:]:
            escaped = pc.replace_substring(escaped, raw, replacement)
    return pc.binary_join_element_wise('"', escaped, '"', "")


def json_literals(values: Text) -> Text:
    """JSON literals for one column (never null: a missing value is the literal null)."""
    kind = values.type
    if pa.types.is_floating(kind):
        finite = pc.is_finite(values)  # JSON has no NaN or Infinity: those become null
        literal = pc.if_else(finite, pc.cast(values, pa.string()), pa.scalar(None, pa.string()))
    elif pa.types.is_integer(kind):
        literal = pc.cast(values, pa.string())
    elif pa.types.is_boolean(kind):
        literal = pc.if_else(values, "true", "false")
    elif pa.types.is_timestamp(kind):
        # Arrow prints "2024-01-01 08:00:00.000000Z"; a T separator makes it RFC 3339 / ISO 8601.
        text = pc.replace_substring(pc.cast(values, pa.string()), " ", "T", max_replacements=1)
        literal = pc.binary_join_element_wise('"', text, '"', "")
    elif pa.types.is_date(kind):
        literal = pc.binary_join_element_wise('"', pc.cast(values, pa.string()), '"', "")
    else:
        literal = json_string(pc.cast(values, pa.string()))
    return pc.fill_null(literal, "null")


def problem(field: str, where: Text, sent: Text, why: str | Text) -> Text:
    """One field's entries: ``"<field>":{"sent":<literal>,"problem":"<why>"}`` where `where` holds, else null.

    `sent` is the value as the province sent it (any Arrow type: rendered as a JSON literal); `why` one
    text for all rows or one per row. Only the rows where `where` holds are rendered (a few per cent of a
    batch, often none): rendering every value of a million-row column cost more than the rest of intake.
    """
    return _flagged_entries(field, where, why, lambda mask: json_literals(pc.filter(sent, mask)))


def problem_literal(field: str, where: Text, literal: Text, why: str | Text) -> Text:
    """Like :func:`problem`, with the value as sent already a JSON literal per row (e.g. ``[1,2]``)."""
    return _flagged_entries(field, where, why, lambda mask: pc.filter(literal, mask))


def _flagged_entries(field: str, where: Text, why: str | Text, literals: Callable[[pa.Array], Text]) -> Text:
    """The entries of the rows where `where` holds, each with its literal (`literals` of the mask gives them for
    those rows only, in order), at those rows; null elsewhere."""
    mask = pc.fill_null(where, False)
    mask = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    if not pc.any(mask).as_py():
        return pa.nulls(len(mask), pa.string())
    why_json = json.dumps(why, ensure_ascii=False) if isinstance(why, str) else json_string(pc.filter(why, mask))
    entries = pc.binary_join_element_wise(
        json.dumps(field) + ':{"sent":', literals(mask), ',"problem":', why_json, "}", ""
    )
    entries = entries.combine_chunks() if isinstance(entries, pa.ChunkedArray) else entries
    return pc.replace_with_mask(pa.nulls(len(mask), pa.string()), mask, entries)


def column(entries: list[Text], n: int) -> pa.Array:
    """The AS_SENT column from field entries (see :func:`problem`): one JSON object per row, null if none."""
    if not entries:
        return pa.nulls(n, pa.string())
    # Each present entry with a leading comma, a missing one as "": no nulls left to join. (Joining with
    # null_handling="skip" drops rows whose values are all null in pyarrow 26, shortening the column.)
    prefixed = [pc.fill_null(pc.binary_join_element_wise(",", e, ""), "") for e in entries]
    joined = pc.binary_join_element_wise(*prefixed, "") if len(prefixed) > 1 else prefixed[0]
    wrapped = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(joined, 1), "}", "")
    out = pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), wrapped)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def merge(first: Text | None, second: Text | None, n: int) -> pa.Array | None:
    """Two AS_SENT columns of the same rows as one (their fields together); None when neither is given."""
    if first is None or second is None:
        given = first if first is not None else second
        if given is None:
            return None
        return given.combine_chunks() if isinstance(given, pa.ChunkedArray) else given
    inner = [pc.utf8_slice_codeunits(side, 1, -1) for side in (first, second)]  # drop the braces
    return column(inner, n)


def attach(table: pa.Table, as_sent: Text | None) -> pa.Table:
    """`table` with its AS_SENT column (left out when no record had an unreadable value)."""
    if as_sent is None or as_sent.null_count == len(as_sent):
        return table
    return table.append_column(pa.field(AS_SENT, pa.string()), as_sent)


def has(as_sent: Text, field: str) -> Text:
    """Per row: whether `field` was unreadable (bool, never null)."""
    return pc.fill_null(pc.match_substring(as_sent, json.dumps(field) + ':{"sent":'), False)


def _part(as_sent: Text, field: str, name: str, pattern: str) -> Text:
    found = pc.extract_regex(as_sent, json.dumps(field).replace("\\", "\\\\") + pattern)
    return pc.struct_field(found, name)


def sent(as_sent: Text, field: str) -> Text:
    """Per row: the JSON literal `field` was sent as (null where it was read)."""
    # A JSON string cannot hold an unescaped `","problem":`, so the first one ends the literal.
    return _part(as_sent, field, "sent", r':\{"sent":(?P<sent>.*?),"problem":')


def why(as_sent: Text, field: str) -> Text:
    """Per row: why `field` was unreadable, as the JSON string literal of the problem (null where read)."""
    return _part(as_sent, field, "problem", r':\{"sent":.*?,"problem":(?P<problem>"(?:[^"\\]|\\.)*")\}')


def describe(as_sent: Text, field: str) -> Text:
    """``<field> sent <literal>: <problem>`` per row (null where `field` was read): the reason an office reads."""
    problem_text = pc.utf8_slice_codeunits(why(as_sent, field), 1, -1)  # unquoted; escapes stay visible
    text = pc.binary_join_element_wise(f"{field} sent ", sent(as_sent, field), ": ", problem_text, "")
    return pc.if_else(has(as_sent, field), text, pa.scalar(None, pa.string()))


def staged_schema(dataset: str) -> pa.Schema:
    """The schema of a staged pull: the canonical columns, then AS_SENT."""
    return canonical_dataset(dataset).schema.append(pa.field(AS_SENT, pa.string()))


def staged(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """An adapter's chunk in the staged schema (AS_SENT null when the adapter read every value)."""
    if AS_SENT not in table.column_names:
        table = table.append_column(pa.field(AS_SENT, pa.string()), pa.nulls(table.num_rows, pa.string()))
    return table.select(schema.names).cast(schema)
