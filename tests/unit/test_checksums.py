"""The vectorized check-digit code against python-stdnum, on thousands of valid and mutated numbers.

The oracles are written out rather than calling ``is_valid`` blindly, because the hub's rules differ
from stdnum's on purpose in a few places:

* resident ID: stdnum's ``ric.is_valid`` also rejects region codes that did not exist in the birth
  year; the hub checks the check character and a real birth date (1900-2100) only. Note that
  ``ric.calc_check_digit`` takes the *full* 18-character number (it ignores the last character).
* USCC: stdnum requires the first 8 characters to be digits and does not check the embedded GB 11714
  organisation code; the hub allows the GB 32100 charset everywhere and does check the organisation code.
  stdnum's ``uscc.is_valid`` is used as the oracle where both agree on the scope, and its
  ``calc_check_digit`` plus a written-out GB 11714 check where they do not.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from exchange.reference import regions
from exchange.reference.checksums import USCC_CHARSET, resident_id_check_char, resident_id_valid, uscc_valid
from exchange.synthetic import resident_ids, usccs

N_VALID = 4000
ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _matrix(values: pa.Array) -> np.ndarray:
    """(n, 18) uint8 matrix of 18-character ASCII strings."""
    return np.frombuffer("".join(values.to_pylist()).encode("ascii"), dtype=np.uint8).reshape(-1, 18).copy()


def _strings(matrix: np.ndarray) -> list[str]:
    return [row.tobytes().decode("latin-1") for row in matrix]


def _mutate(rng: np.random.Generator, matrix: np.ndarray, alphabet: bytes) -> np.ndarray:
    """Each row gets one random edit: substitute a character, swap two neighbours, or both."""
    out = matrix.copy()
    n = len(out)
    rows = np.arange(n)
    pos = rng.integers(0, 18, n)
    pool = np.frombuffer(alphabet, dtype=np.uint8)
    kind = rng.integers(0, 3, n)
    substitute = kind != 1
    out[rows[substitute], pos[substitute]] = pool[rng.integers(0, len(pool), int(substitute.sum()))]
    swap = kind >= 1
    left = np.minimum(pos[swap], 16)
    a = out[rows[swap], left].copy()
    out[rows[swap], left] = out[rows[swap], left + 1]
    out[rows[swap], left + 1] = a
    return out


def _region_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.array(regions.all_codes())[rng.integers(0, len(regions.all_codes()), n)]


def _ric_oracle(value: str | None) -> bool:
    if value is None or len(value) != 18 or not value[:17].isdigit():
        return False
    last = value[17].upper()
    if last not in "0123456789X" or ric.calc_check_digit(value[:17] + last) != last:
        return False
    try:
        birth = ric.get_birth_date(value)
    except Exception:  # stdnum raises InvalidComponent for an impossible date
        return False
    return 1900 <= birth.year <= 2100


def _org_code_ok(org9: str) -> bool:
    """GB 11714: 8 characters of 0-9A-Z and a check character (0-9 or X)."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    if any(c not in ORG_ALPHABET for c in org9[:8]):
        return False
    value = (11 - sum(ORG_ALPHABET.index(c) * w for c, w in zip(org9[:8], weights, strict=True)) % 11) % 11
    return org9[8] == ("X" if value == 10 else str(value))


def _uscc_oracle(value: str | None) -> bool:
    if value is None or len(value) != 18 or any(c not in USCC_CHARSET for c in value):
        return False
    return uscc.calc_check_digit(value) == value[17] and _org_code_ok(value[8:17])


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


def test_valid_resident_ids_pass_and_agree_with_stdnum(rng: np.random.Generator) -> None:
    ids = resident_ids(rng, _region_codes(rng, N_VALID))
    ours = resident_id_valid(ids)
    assert ours.all()
    assert all(_ric_oracle(v) for v in ids.to_pylist())


def test_mutated_resident_ids_match_the_oracle(rng: np.random.Generator) -> None:
    valid = _matrix(resident_ids(rng, _region_codes(rng, N_VALID)))
    mutated = _mutate(rng, valid, b"0123456789Xx A")
    values = _strings(mutated)
    ours = resident_id_valid(pa.array(values))
    expected = np.array([_ric_oracle(v) for v in values])
    assert (ours == expected).all(), [v for v, o, e in zip(values, ours, expected, strict=True) if o != e][
        :10
    ]
    # The mutations must exercise both outcomes, or this test proves little.
    assert 0 < expected.sum() < len(values) * 0.5


def test_impossible_birth_dates_fail_even_with_a_right_check_character(rng: np.random.Generator) -> None:
    valid = _matrix(resident_ids(rng, _region_codes(rng, 2000)))
    bad_dates = [b"19990230", b"20011301", b"19800000", b"18991231", b"21010101", b"20000229", b"19000229"]
    chosen = np.array([np.frombuffer(d, dtype=np.uint8) for d in bad_dates])[
        rng.integers(0, len(bad_dates), 2000)
    ]
    valid[:, 6:14] = chosen
    valid[:, 17] = resident_id_check_char(valid[:, :17])
    values = _strings(valid)
    ours = resident_id_valid(pa.array(values))
    expected = np.array([_ric_oracle(v) for v in values])
    assert (ours == expected).all()
    # 2000-02-29 is a real date; 1900-02-29 is not (1900 was no leap year).
    assert set(np.unique(expected)) == {False, True}


def test_lowercase_x_check_character_is_accepted() -> None:
    body = "11010519491231002"
    check = ric.calc_check_digit(body + "0")
    assert check == "X"
    assert resident_id_valid(pa.array([body + "X", body + "x", body + "0"])).tolist() == [True, True, False]


def test_resident_id_nulls_and_wrong_lengths_are_invalid() -> None:
    values = pa.array([None, "", "11010519491231002", "11010519491231002X1", "11010519491231002X"])
    assert resident_id_valid(values).tolist() == [False, False, False, False, True]
    assert resident_id_valid(pa.chunked_array([values[:2], values[2:]])).tolist() == [False] * 4 + [True]


def test_random_strings_match_the_resident_id_oracle(rng: np.random.Generator) -> None:
    matrix = rng.choice(np.frombuffer(b"0123456789X", dtype=np.uint8), (3000, 18))
    values = _strings(matrix)
    ours = resident_id_valid(pa.array(values))
    assert (ours == np.array([_ric_oracle(v) for v in values])).all()


def test_valid_usccs_pass_and_agree_with_stdnum(rng: np.random.Generator) -> None:
    codes = usccs(rng, _region_codes(rng, N_VALID))
    assert uscc_valid(codes).all()
    assert all(uscc.is_valid(v) for v in codes.to_pylist())


def test_mutated_usccs_match_stdnum(rng: np.random.Generator) -> None:
    valid = _matrix(usccs(rng, _region_codes(rng, N_VALID)))
    mutated = _mutate(rng, valid, (USCC_CHARSET + "IOZSVa").encode())
    values = _strings(mutated)
    ours = uscc_valid(pa.array(values))
    expected = np.array([_uscc_oracle(v) for v in values])
    assert (ours == expected).all(), [v for v, o, e in zip(values, ours, expected, strict=True) if o != e][
        :10
    ]
    # Where both implementations have the same scope, stdnum's own is_valid is the oracle.
    same_scope = [
        i for i, v in enumerate(values) if v[:8].isdigit() and v == v.upper() and _org_code_ok(v[8:17])
    ]
    assert all(ours[i] == uscc.is_valid(values[i]) for i in same_scope)
    assert 0 < expected.sum() < len(values) * 0.5


def test_random_usccs_match_the_oracle(rng: np.random.Generator) -> None:
    # Random bodies with a correct GB 32100 check character, so the organisation-code check is what decides.
    charset = np.frombuffer(USCC_CHARSET.encode(), dtype=np.uint8)
    bodies = [row.tobytes().decode() for row in rng.choice(charset, (3000, 17))]
    values = [b + uscc.calc_check_digit(b + "0") for b in bodies]
    ours = uscc_valid(pa.array(values))
    expected = np.array([_uscc_oracle(v) for v in values])
    assert (ours == expected).all()
    assert 0 < expected.sum() < len(values)


def test_uscc_nulls_lowercase_and_lengths() -> None:
    good = "91110000600037341L"
    assert uscc.is_valid(good)
    values = pa.array([good, None, good.lower(), good[:-1], good + "0", "91110000600037341I"])
    assert uscc_valid(values).tolist() == [True, False, False, False, False, False]


def test_checksums_accept_a_sliced_array() -> None:
    # Arrow slices share buffers with an offset; the byte-matrix view must honour it.
    values = pa.array(["x", "11010519491231002X", "91110000600037341L", "11010519491231002X"])
    assert resident_id_valid(values.slice(1)).tolist() == [True, False, True]
    assert uscc_valid(values.slice(2, 1)).tolist() == [True]


def test_birth_date_window_matches_python_dates() -> None:
    days = np.arange(np.datetime64("1899-12-25"), np.datetime64("1900-01-05"))
    bodies = ["110105" + str(d).replace("-", "") + "002" for d in days]
    values = [b + ric.calc_check_digit(b + "0") for b in bodies]
    expected = [dt.date.fromisoformat(str(d)).year >= 1900 for d in days]
    assert resident_id_valid(pa.array(values)).tolist() == expected


# Property tests: Hypothesis searches (and shrinks to a minimal counterexample) beyond the seeded samples.

_RIC_TEXT = st.text(alphabet="0123456789Xx", min_size=17, max_size=19)
_USCC_TEXT = st.text(alphabet=USCC_CHARSET + "IOSVZa", min_size=17, max_size=19)


@settings(max_examples=400, deadline=None)
@given(st.lists(_RIC_TEXT, min_size=1, max_size=50))
def test_resident_id_rule_agrees_with_the_stdnum_oracle_on_any_input(values: list[str]) -> None:
    assert resident_id_valid(pa.array(values)).tolist() == [_ric_oracle(v) for v in values]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)), min_size=1, max_size=20),
       st.sampled_from(regions.all_codes()), st.integers(0, 999))
def test_any_real_birth_date_with_its_check_character_is_valid(
    births: list[dt.date], region: str, serial: int
) -> None:
    bodies = [f"{region}{b:%Y%m%d}{serial:03d}" for b in births]
    values = [b + ric.calc_check_digit(b + "0") for b in bodies]
    assert resident_id_valid(pa.array(values)).all()
    assert all(_ric_oracle(v) for v in values)


@settings(max_examples=400, deadline=None)
@given(st.lists(_USCC_TEXT, min_size=1, max_size=50))
def test_uscc_rule_agrees_with_the_oracle_on_any_input(values: list[str]) -> None:
    assert uscc_valid(pa.array(values)).tolist() == [_uscc_oracle(v) for v in values]
