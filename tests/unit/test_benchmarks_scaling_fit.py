"""The scaling scenario's fixed cost per batch: the intercept of the least-squares line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.scaling import fixed_cost


@given(fixed=st.floats(0, 10), per_record=st.floats(1e-7, 1e-4),
       sizes=st.lists(st.integers(1_000, 10_000_000), min_size=2, max_size=6, unique=True))
def test_points_on_a_line_give_back_its_intercept(fixed: float, per_record: float, sizes: list[int]) -> None:
    assert fixed_cost([(n, fixed + per_record * n) for n in sizes]) == pytest.approx(fixed, abs=1e-6)


def test_one_size_has_no_intercept() -> None:
    assert fixed_cost([(100_000, 1.0), (100_000, 1.1)]) is None
    assert fixed_cost([]) is None
