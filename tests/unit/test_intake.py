"""The AS_SENT column (exchange.intake) and identifier spelling, as properties over arbitrary input."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import intake
from exchange.contracts.load import load_contract
from exchange.contracts.validate import normalise_identifiers

# Any text a province might send, including what breaks naive JSON building: quotes, backslashes, control
# characters, the separator this module itself writes.
texts = st.one_of(st.text(max_size=30), st.sampled_from(['","problem":', '\\"', "\x00\n\t", '{"sent":1}']))
values = st.one_of(st.none(), texts, st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.booleans(), texts, st.booleans(), st.integers(-99, 99), texts), min_size=1,
                     max_size=12))
def test_entries_round_trip_through_json_for_any_value(rows: list[tuple[bool, str, bool, int, str]]) -> None:
    n = len(rows)
    first = intake.problem("issued_on", pa.array([r[0] for r in rows]), pa.array([r[1] for r in rows]), "why, \"1\"")
    second = intake.problem("registered_capital", pa.array([r[2] for r in rows]), pa.array([r[3] for r in rows]),
                            pa.array([r[4] for r in rows]))
    column = intake.column([first, second], n)
    assert len(column) == n
    for i, (has_date, date_text, has_number, number, why) in enumerate(rows):
        text = column[i].as_py()
        if not (has_date or has_number):
            assert text is None
            continue
        parsed: dict[str, Any] = json.loads(text)
        assert list(parsed) == [k for k, on in (("issued_on", has_date), ("registered_capital", has_number)) if on]
        if has_date:
            assert parsed["issued_on"] == {"sent": date_text, "problem": 'why, "1"'}
        if has_number:
            assert parsed["registered_capital"] == {"sent": number, "problem": why}
    for name, present in (("issued_on", [r[0] for r in rows]), ("registered_capital", [r[2] for r in rows])):
        assert intake.has(column, name).to_pylist() == present
        sent = intake.sent(column, name).to_pylist()
        assert [json.loads(s) if s is not None else None for s in sent] == [
            (r[1] if name == "issued_on" else r[3]) if on else None for r, on in zip(rows, present, strict=True)]
        described = intake.describe(column, name).to_pylist()
        assert [d is not None for d in described] == present


@settings(deadline=None)
@given(a=st.lists(st.one_of(st.none(), texts), min_size=1, max_size=8), data=st.data())
def test_merging_keeps_the_fields_of_both_sides(a: list[str | None], data: st.DataObject) -> None:
    n = len(a)
    b = data.draw(st.lists(st.one_of(st.none(), texts), min_size=n, max_size=n))
    left = intake.column([intake.problem("x", pc.is_valid(pa.array(a, pa.string())), pa.array(a, pa.string()), "p")],
                         n)
    right = intake.column([intake.problem("y", pc.is_valid(pa.array(b, pa.string())), pa.array(b, pa.string()),
                                          "q")], n)
    merged = intake.merge(left, right, n)
    assert merged is not None
    for i in range(n):
        expected = {**({"x": {"sent": a[i], "problem": "p"}} if a[i] is not None else {}),
                    **({"y": {"sent": b[i], "problem": "q"}} if b[i] is not None else {})}
        got = merged[i].as_py()
        assert (json.loads(got) if got is not None else {}) == expected


FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
spellings = st.sampled_from([
    lambda s: s.lower(), lambda s: s.translate(FULL_WIDTH), lambda s: f"\u00a0{s} ", lambda s: f"\u3000{s}\t",
    lambda s: f"  {s.translate(FULL_WIDTH).lower()}\u00a0",
])


@settings(deadline=None)
@given(digits=st.text("0123456789", min_size=17, max_size=17), spell=spellings)
def test_every_spelling_of_an_identifier_is_stored_as_the_standard_writes_it(digits: str, spell: Any) -> None:
    """B-9, vectorized: whatever the province typed, one spelling is stored, and the record is flagged."""
    standard = digits + "X"
    contract = load_contract("e_license")
    table = pa.table({"holder_id": pa.array([spell(standard), standard, None], pa.string())})
    normalised, warnings = normalise_identifiers(table, contract)
    assert normalised.column("holder_id").to_pylist() == [standard, standard, None]
    changed = spell(standard) != standard
    assert [w.rule_id for w in warnings] == (["holder_id.normalised"] if changed else [])
    if changed:
        assert warnings[0].mask.tolist() == [True, False, False]
        assert "stored as" in warnings[0].reasons[0].as_py()


def _every_row_rendered(field: str, where: pa.Array, sent: pa.Array, why: str | pa.Array) -> list[Any]:
    """The entries as they were built before only the flagged rows were rendered: every row, then masked."""
    why_json = json.dumps(why, ensure_ascii=False) if isinstance(why, str) else intake.json_string(why)
    entry = pc.binary_join_element_wise(json.dumps(field) + ':{"sent":', intake.json_literals(sent),
                                        ',"problem":', why_json, "}", "")
    return pc.if_else(pc.fill_null(where, False), entry, pa.scalar(None, pa.string())).to_pylist()


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.booleans()), values, texts), max_size=20),
       split=st.integers(0, 20), one_why=st.booleans())
def test_only_flagged_rows_rendered_gives_the_same_entries(rows: list[tuple[bool | None, Any, str]], split: int,
                                                           one_why: bool) -> None:
    """`problem` renders only the rows it flags; the entries are exactly those of rendering every row, for any
    values, flags (null = not flagged), chunking and reason (one for all rows or one per row)."""
    kinds = {type(v) for _, v, _ in rows if v is not None}
    sent_values = [v for _, v, _ in rows] if len(kinds) <= 1 else [None if v is None else str(v) for _, v, _ in rows]
    cut = min(split, len(rows))

    def chunked(items: list[Any], kind: pa.DataType | None = None) -> pa.ChunkedArray:
        whole = pa.array(items, type=kind)
        return pa.chunked_array([whole[:cut], whole[cut:]], type=whole.type)

    where, sent = chunked([w for w, _, _ in rows], pa.bool_()), chunked(sent_values)
    why: str | pa.ChunkedArray = "one reason" if one_why else chunked([r for _, _, r in rows], pa.string())
    assert intake.problem("f", where, sent, why).to_pylist() == _every_row_rendered("f", where, sent, why)
    literal = intake.json_literals(sent)
    assert intake.problem_literal("f", where, literal, why).to_pylist() == _every_row_rendered("f", where, sent, why)
