"""The operators' calendar file and the unknown-year policy (issue 19 follow-up): a year nobody has loaded must
not stop the hub, and its deadlines are provisional until it is loaded; all on pinned dates, never today's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.access.registry import Registry
from exchange.config import ExchangeSettings
from exchange.errors import BadFile
from exchange.hub import Hub
from exchange.sharing.calendar_file import CalendarFile, YearArrangement, load_calendar_file
from exchange.sharing.machine import deadlines, new_request
from exchange.sharing.models import RequestForm, SharingRequest
from exchange.sharing.workdays import (
    CalendarYearUnknown,
    WorkCalendar,
    active,
    calendar_for,
    deadline,
    is_workday,
    use,
)

# Not the real 2027 arrangement (unpublished when this was written): test dates only.
TEST_2027 = "years:\n  2027:\n    source: test arrangement\n    holidays: [2027-01-04]\n    workdays: [2027-01-09]\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendar.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_year_in_the_file_takes_precedence_over_the_package(tmp_path: Path) -> None:
    assert is_workday(date(2026, 12, 7))  # a Monday, by chinesecalendar
    path = _write(tmp_path, "years:\n  2026:\n    source: a corrected notice\n    holidays: [2026-12-07]\n")
    with use(calendar_for(ExchangeSettings(home=tmp_path, calendar_file=path))) as cal:
        assert not cal.is_workday(date(2026, 12, 7))
        assert not cal.is_workday(date(2026, 12, 5))  # an ordinary Saturday stays off
        # The file replaces the package for the whole year: National Day is off only if the file lists it.
        assert cal.is_workday(date(2026, 10, 1))
        assert cal.knows(2026) and not cal.provisional(date(2026, 1, 1), date(2026, 12, 31))


def test_the_default_file_is_exchange_home_calendar_yaml_and_is_reloaded_when_edited(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_CALENDAR_UNKNOWN_YEARS", "refuse")
    home.mkdir(parents=True)
    with pytest.raises(CalendarYearUnknown, match=f"to {home / 'calendar.yaml'}"):
        is_workday(date(2027, 1, 4))
    _write(home, TEST_2027)
    assert not is_workday(date(2027, 1, 4)) and is_workday(date(2027, 1, 9)) and is_workday(date(2027, 1, 5))
    assert active().knows(2027)


@pytest.mark.parametrize(("text", "problem"), [
    ("years: [", "not valid YAML at line"),
    ("years:\n  2027:\n    holidays: [2027-01-01]\n", "year 2027: source: Field required"),
    ("years:\n  2027:\n    source: x\n    holidays: [2027-13-01]\n", "year 2027: holidays"),
    ("years:\n  2027:\n    source: x\n    holidays: [2028-01-01]\n", "year 2027: holidays: 2028-01-01 is not in 2027"),
    ("years:\n  2027:\n    source: x\n    holidays: []\n    workdays: [2027-01-05]\n",
     "year 2027: workdays: 2027-01-05 is a weekday"),
    ("years:\n  2027:\n    source: x\n    holidays: [2027-01-09]\n    workdays: [2027-01-09]\n",
     "year 2027: 2027-01-09 is listed both"),
    ("years:\n  2027:\n    source: x\n    holidays: []\n    extra: 1\n", "year 2027: extra: Extra inputs"),
    ("years: {}\nyear: 1\n", "year: Extra inputs"),
    ("{}\n", "years: Field required"),
])
def test_a_bad_calendar_file_is_one_line_naming_file_year_and_field(tmp_path: Path, text: str,
                                                                    problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(BadFile) as raised:
        calendar_for(ExchangeSettings(home=tmp_path, calendar_file=path))
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_a_named_calendar_file_that_is_missing_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadFile, match="cannot read it"):
        calendar_for(ExchangeSettings(home=tmp_path, calendar_file=tmp_path / "nope.yaml"))


def test_an_empty_file_loads_no_year(tmp_path: Path) -> None:
    assert load_calendar_file(_write(tmp_path, "")).years == {}


def test_an_unknown_year_under_each_policy(tmp_path: Path) -> None:
    with use(WorkCalendar(path=tmp_path / "calendar.yaml", unknown_years="refuse")), \
            pytest.raises(CalendarYearUnknown, match="no holiday data for 2027"):
        deadline(date(2026, 12, 28), 5)
    with use(WorkCalendar(unknown_years="weekends")) as cal:
        due = deadline(date(2026, 12, 28), 5)  # 29, 30, 31 December, then Friday 1 and Monday 4 January
        assert due == date(2027, 1, 4) and cal.provisional(date(2026, 12, 28), due)
        assert not cal.provisional(date(2026, 1, 5), date(2026, 12, 31))


def test_the_default_policy_is_weekends() -> None:
    assert ExchangeSettings().calendar_unknown_years == "weekends"


def _request(filed: date) -> SharingRequest:
    form = RequestForm.model_validate({
        "department": "js.public_security", "items": [{"item": "YRD-DZZZ-000101-SH", "columns": ["status"]}],
        "purpose": "核验", "legal_basis": "《政务数据共享条例》", "contact": "张三",
        "period_until": (filed + timedelta(days=90)).isoformat(), "sharing_method": "online_query"})
    at = datetime(filed.year, filed.month, filed.day, 2, tzinfo=UTC)
    return new_request("req-test", form, "shanghai.data_office", at, filed, review_days=5, reply_days=15)


def test_the_provisional_mark_appears_and_goes_once_the_year_is_loaded(tmp_path: Path) -> None:
    req = _request(date(2026, 12, 28))
    with use(WorkCalendar(unknown_years="weekends")):
        guessed = deadlines(req)
    assert guessed.provisional and guessed.review == date(2027, 1, 4) and guessed.reply == date(2027, 1, 18)
    loaded = calendar_for(ExchangeSettings(home=tmp_path, calendar_file=_write(tmp_path, TEST_2027),
                                           calendar_unknown_years="refuse"))
    with use(loaded):
        final = deadlines(req)
    # Recomputed from the stored filing date: 4 January off, Saturday 9 January worked.
    assert not final.provisional and final.review == date(2027, 1, 5) and final.reply == date(2027, 1, 18)
    early = _request(date(2026, 11, 2))
    with use(WorkCalendar(unknown_years="weekends")):
        assert not deadlines(early).provisional  # wholly inside 2026


FILED = st.dates(min_value=date(2026, 9, 1), max_value=date(2027, 12, 31))
WORKING = st.integers(min_value=1, max_value=40)
EXTRA = st.sets(st.dates(min_value=date(2027, 1, 1), max_value=date(2027, 12, 31)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(FILED, WORKING)
def test_with_weekends_a_deadline_in_an_unknown_year_is_never_on_a_weekend(filed: date, n: int) -> None:
    with use(WorkCalendar(unknown_years="weekends")) as cal:
        due = deadline(filed, n)
        if not cal.knows(due.year):
            assert due.weekday() < 5
        assert cal.provisional(filed, due) == any(not cal.knows(y) for y in range(filed.year, due.year + 1))


@settings(max_examples=200, deadline=None)
@given(FILED, WORKING, EXTRA)
def test_loading_a_year_with_extra_holidays_only_moves_deadlines_in_that_year(filed: date, n: int,
                                                                              extra: set[date]) -> None:
    with use(WorkCalendar(unknown_years="weekends")):
        before = deadline(filed, n)
    holidays = sorted(d for d in extra if d.weekday() < 5)
    file = CalendarFile(years={2027: YearArrangement(source="test", holidays=holidays)})
    with use(WorkCalendar(file, unknown_years="weekends")) as cal:
        after = deadline(filed, n)
        assert cal.is_workday(after)
    if before.year < 2027:
        assert after == before  # the loaded year is not reached
    else:
        assert after >= before  # extra holidays only push a deadline later
        assert after.year >= 2027


def test_the_sharing_demo_runs_with_the_clock_in_late_december_2026(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exchange.catalogue.store import Catalogue
    from exchange.demo import SAMPLE_DEPARTMENTS
    from exchange.sharing.demo import run_sharing_demo
    from exchange.sharing.service import catalogue_dir

    # Even with an operator's refuse policy the demo sets weekends for itself (and says so).
    monkeypatch.setenv("EXCHANGE_CALENDAR_UNKNOWN_YEARS", "refuse")
    monkeypatch.setattr("exchange.signing.keyring._SKEW", timedelta(days=365))
    hub = Hub(ExchangeSettings(home=home, calendar_unknown_years="refuse"))
    registry = Registry(hub.layout.access)
    for department in SAMPLE_DEPARTMENTS:
        registry.add_department(department)
    assert Catalogue(catalogue_dir(hub)).current() == {}  # the demo publishes it
    done = run_sharing_demo(hub, clock=lambda: datetime(2026, 12, 28, 2, tzinfo=UTC))
    assert [d.state for d in done] == ["approved", "approved", "refused", "overdue"]
    assert "provisional" not in done[3].path  # filed 28 days earlier: that deadline is in 2026


def test_the_auditor_report_marks_provisional_deadlines(tmp_path: Path) -> None:
    from exchange.report.sharing import sharing_section

    late_december, november = _request(date(2026, 12, 28)), _request(date(2026, 11, 2))
    with use(WorkCalendar(unknown_years="weekends")):
        html = sharing_section([late_december, november], [], date(2026, 12, 29))
    assert html.count("(暂定 / provisional)") == 2  # review and reply of the December request only
    with use(calendar_for(ExchangeSettings(home=tmp_path, calendar_file=_write(tmp_path, TEST_2027)))):
        assert "provisional" not in sharing_section([late_december], [], date(2026, 12, 29))
