"""Working-day arithmetic over China's calendar (chinesecalendar): known days and Hypothesis properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.sharing.workdays import (
    CalendarYearUnknown,
    WorkCalendar,
    add_workdays,
    deadline,
    is_workday,
    local_date,
    next_workday,
    use,
    workdays_between,
)

# Deadlines of up to 40 + 20 working days from these dates stay inside the years the calendar knows.
DAYS = st.dates(min_value=date(2015, 1, 1), max_value=date(2026, 9, 15))
WORKING = st.integers(min_value=1, max_value=40)
PAUSED = st.integers(min_value=0, max_value=20)


def test_national_day_and_the_adjusted_working_saturday() -> None:
    assert not is_workday(date(2026, 10, 1)) and not is_workday(date(2026, 10, 7))
    assert is_workday(date(2026, 10, 10))  # a Saturday worked in lieu of the holiday
    assert is_workday(date(2026, 9, 20))  # a Sunday worked in lieu
    assert not is_workday(date(2026, 12, 5))  # an ordinary Saturday


def test_filed_on_a_holiday_the_clock_starts_on_the_next_working_day() -> None:
    assert next_workday(date(2026, 10, 1)) == date(2026, 10, 8)
    assert deadline(date(2026, 10, 1), 1) == date(2026, 10, 8)
    assert deadline(date(2026, 10, 1), 3) == date(2026, 10, 10)  # 8, 9, then the working Saturday


def test_a_year_the_calendar_does_not_know_fails_loudly_under_the_refuse_policy(tmp_path: Path) -> None:
    with use(WorkCalendar(path=tmp_path / "calendar.yaml", unknown_years="refuse")), \
            pytest.raises(CalendarYearUnknown, match="no holiday data for 2027") as raised:
        deadline(date(2026, 12, 21), 15)  # runs into January 2027
    assert f"to {tmp_path / 'calendar.yaml'}" in str(raised.value)  # names the file to extend
    assert "install a chinesecalendar release" in str(raised.value)


def test_the_date_in_china_not_utc() -> None:
    assert local_date(datetime(2026, 12, 6, 17, 0, tzinfo=UTC)) == date(2026, 12, 7)


@settings(max_examples=300, deadline=None)
@given(DAYS, WORKING)
def test_a_deadline_is_a_working_day_with_exactly_n_working_days_after_filing(filed: date, n: int) -> None:
    due = deadline(filed, n)
    assert is_workday(due)
    assert due > filed
    assert workdays_between(filed, due) == n
    assert workdays_between(filed, due - timedelta(days=1)) == n - 1  # and not a day later than needed


@settings(max_examples=300, deadline=None)
@given(DAYS, DAYS, WORKING)
def test_deadlines_are_monotone_in_the_filing_date(a: date, b: date, n: int) -> None:
    first, second = sorted((a, b))
    assert deadline(first, n) <= deadline(second, n)


@settings(max_examples=300, deadline=None)
@given(DAYS, WORKING, PAUSED)
def test_a_pause_adds_exactly_the_paused_working_days(filed: date, n: int, paused: int) -> None:
    before = deadline(filed, n)
    after = deadline(filed, n, paused)
    assert after == add_workdays(before, paused)
    assert workdays_between(before, after) == paused


@settings(max_examples=200, deadline=None)
@given(DAYS, WORKING)
def test_a_non_working_filing_day_counts_from_the_next_working_day(filed: date, n: int) -> None:
    if is_workday(filed):
        return
    assert deadline(filed, n) == add_workdays(next_workday(filed), n - 1)
    # Filing on the holiday is the same as filing on the last working day before it.
    last_working = filed - timedelta(days=1)
    while not is_workday(last_working):
        last_working -= timedelta(days=1)
    assert deadline(filed, n) == deadline(last_working, n)


def test_deadlines_are_configured_per_province_and_checked(tmp_path: Path) -> None:
    import shutil

    from exchange.province_config import ADAPTERS_DIR, ProvinceConfigError, load_province

    assert load_province("jiangsu").sharing.reply_days == 15 and load_province("shanghai").sharing.review_days == 3
    shutil.copytree(ADAPTERS_DIR / "jiangsu", tmp_path / "jiangsu", ignore=shutil.ignore_patterns("*.py*"))
    path = tmp_path / "jiangsu" / "province.yaml"
    path.write_text(path.read_text().replace("sharing: {review_days: 5, reply_days: 15}",
                                             "sharing: {review_days: 5, reply_days: 3}"))
    with pytest.raises(ProvinceConfigError, match="province.yaml.*reply_days .3. must be at least review_days"):
        load_province("jiangsu", tmp_path)
