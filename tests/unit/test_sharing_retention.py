"""Retention: no access record younger than three years may be pruned (Hypothesis over write and prune times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.provenance.archive import ArchiveHeader
from exchange.provenance.retention import RetentionRefused, keep_until, require_prunable

INSTANTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))


def _header(written: datetime) -> ArchiveHeader:
    return ArchiveHeader(segment=1, first_seq=1, last_seq=9, entries=9, prev_entry_hash="0" * 64,
                         last_entry_hash="a" * 64, entries_sha256="b" * 64, manifests=[], prev_archive="0" * 64,
                         created_at=written)


@given(INSTANTS, INSTANTS)
def test_nothing_younger_than_three_years_is_prunable(written: datetime, now: datetime) -> None:
    young = now < keep_until(written)
    if young:
        with pytest.raises(RetentionRefused, match="at least 3 years"):
            require_prunable("provenance-000001.tar", _header(written), now)
    else:
        require_prunable("provenance-000001.tar", _header(written), now)
    # Three years at least: a year of 365 days three times is never enough to be past it.
    assert keep_until(written) - written >= timedelta(days=3 * 365)


def test_a_leap_day_is_kept_until_the_first_of_march() -> None:
    assert keep_until(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2031, 3, 1, tzinfo=UTC)
