"""Edges of the check-digit code that mutation testing (make mutation) found no test for: columns with no chunks,
and ASCII just above '9' in the body of a resident ID, whose byte value minus '0' still weighs into a sum."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.reference.checksums import ID_CHECK_CHARS, ID_WEIGHTS, resident_id_valid, uscc_valid

VALID_ID = "11010519491231002X"


@pytest.mark.parametrize("check", [resident_id_valid, uscc_valid])
@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.int64()])
def test_a_column_without_chunks_is_an_empty_mask(check: object, kind: pa.DataType) -> None:
    mask = check(pa.chunked_array([], kind))  # type: ignore[operator]
    assert mask.dtype == np.bool_ and mask.shape == (0,)


def test_chunks_are_checked_in_order() -> None:
    column = pa.chunked_array([[VALID_ID, "x"], [], [VALID_ID.lower(), None]])
    assert resident_id_valid(column).tolist() == [True, False, True, False]


def _with_check_char(body: bytes) -> str:
    """`body` (17 ASCII bytes) followed by the check character its byte values minus '0' give."""
    digits = np.frombuffer(body, dtype=np.uint8).astype(np.int64) - 48
    return (body + bytes([ID_CHECK_CHARS[int((digits * ID_WEIGHTS).sum()) % 11]])).decode("ascii")


@given(position=st.integers(0, 16), char=st.sampled_from(":;<=>?"))
def test_a_non_digit_just_above_nine_in_the_body_is_invalid(position: int, char: str) -> None:
    # ':' is '0' + 10: an off-by-one in the digit range would accept it with a check character computed over it.
    body = bytearray(VALID_ID[:17].encode("ascii"))
    body[position] = ord(char)
    forged = _with_check_char(bytes(body))
    assert resident_id_valid(pa.array([forged, VALID_ID])).tolist() == [False, True]
