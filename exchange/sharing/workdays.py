"""China's working days (public holidays and adjusted working weekends) and deadline arithmetic over them.

The calendar is the operators' calendar file (exchange.sharing.calendar_file) for the years it lists, else
chinesecalendar's (pinned), which only knows the years it was released with. For a year neither knows the
policy EXCHANGE_CALENDAR_UNKNOWN_YEARS decides: "refuse" raises :class:`CalendarYearUnknown`; "weekends" (the
default, so that sharing does not stop every December) counts Monday-Friday and marks the deadlines provisional.
Deadlines are always computed from the stored filing and pause dates, never stored, so loading the year makes
them final.

Conventions (docs/departments.md, "Deadlines"): the filing day is not counted (期间开始之日不计算在内), so
the clock starts on the next working day, also for a request filed on a holiday; a deadline of n working
days is the n-th working day after the filing date and the office may act until the end of that day; while a
request is returned for materials the clock stands still and resumes, on resubmission, with the working days
it had left.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from exchange.errors import CheckFailed
from exchange.sharing.calendar_file import CalendarFile, load_calendar_file

if TYPE_CHECKING:
    from exchange.config import ExchangeSettings

ONE_DAY = timedelta(days=1)
CHINA = ZoneInfo("Asia/Shanghai")


def local_date(at: datetime) -> date:
    """The calendar date in China of an instant (deadlines count China's days, whatever the server's zone)."""
    return at.astimezone(CHINA).date()


UnknownYears = Literal["refuse", "weekends"]
log = logging.getLogger(__name__)


class CalendarYearUnknown(CheckFailed):
    """Neither the operators' calendar file nor chinesecalendar knows a year a deadline reaches (policy refuse)."""

    def __init__(self, year: int, needed: str, supported: str, file: Path | None = None) -> None:
        self.year = year
        self.needed = needed
        self.supported = supported
        where = str(file) if file is not None else "EXCHANGE_HOME/calendar.yaml"
        super().__init__(f"the working-day calendar has no holiday data for {year} (needed for {needed}; "
                         f"chinesecalendar knows {supported}): add the State Council's {year} arrangement to "
                         f"{where} (docs/operators.md, 'Working-day calendar') or install a chinesecalendar "
                         f"release that has it; or set EXCHANGE_CALENDAR_UNKNOWN_YEARS=weekends for provisional "
                         f"Monday-Friday deadlines")


class WorkCalendar:
    """Which days are working days: the operators' file first, then chinesecalendar, then the policy for a year
    neither knows ("refuse": CalendarYearUnknown; "weekends": Monday-Friday, and deadlines are provisional)."""

    def __init__(self, file: CalendarFile | None = None, path: Path | None = None,
                 unknown_years: UnknownYears = "weekends") -> None:
        self.file = file or CalendarFile(years={})
        self.path = path
        self.unknown_years = unknown_years
        self._cache: dict[date, bool] = {}
        self._warned: set[int] = set()

    def knows(self, year: int) -> bool:
        """Whether the year's real arrangement is loaded (file or package): its deadlines are final."""
        return year in self.file.years or year in _package_years()

    def is_workday(self, day: date) -> bool:
        """Whether `day` is a working day in mainland China (adjusted weekends count, holidays do not)."""
        known = self._cache.get(day)
        if known is None:
            known = self._cache[day] = self._lookup(day)
        return known

    def _lookup(self, day: date) -> bool:
        by_file = self.file.is_workday(day)
        if by_file is not None:
            return by_file
        if day.year in _package_years():
            import chinese_calendar

            return bool(chinese_calendar.is_workday(day))
        if self.unknown_years == "refuse":
            raise CalendarYearUnknown(day.year, day.isoformat(), _supported(), self.path)
        if day.year not in self._warned:
            self._warned.add(day.year)
            log.warning("working-day calendar: %s is in neither %s nor chinesecalendar; counting Monday-Friday, "
                        "deadlines in %s are provisional until its arrangement is loaded", day.year,
                        self.path or "a calendar file", day.year)
        return day.weekday() < 5

    def provisional(self, start: date, end: date) -> bool:
        """Whether a count from `start` to `end` used a year whose arrangement is not loaded (a guess)."""
        return any(not self.knows(year) for year in range(min(start, end).year, max(start, end).year + 1))


@lru_cache(maxsize=1)
def _package_years() -> frozenset[int]:
    from chinese_calendar import constants

    return frozenset(d.year for d in (*constants.holidays, *constants.workdays))


def _supported() -> str:
    years = sorted(_package_years())
    return f"{years[0]}-{years[-1]}" if years else "no year"


_active: tuple[tuple[object, ...], WorkCalendar] | None = None
_pinned: WorkCalendar | None = None


def calendar_for(settings: ExchangeSettings) -> WorkCalendar:
    """The calendar the settings describe (EXCHANGE_CALENDAR_FILE, default EXCHANGE_HOME/calendar.yaml if it
    exists; EXCHANGE_CALENDAR_UNKNOWN_YEARS); BadFile if the file is malformed."""
    path = settings.calendar_file or settings.home / "calendar.yaml"
    explicit = settings.calendar_file is not None
    loaded = load_calendar_file(path) if explicit or path.exists() else None
    return WorkCalendar(loaded, path, settings.calendar_unknown_years)


def active() -> WorkCalendar:
    """The calendar in force: the one :func:`use` pinned, else the settings' (reloaded when the file or the
    settings change, so a year an operator adds counts at once and provisional deadlines become final)."""
    global _active
    if _pinned is not None:
        return _pinned
    from exchange.config import settings as current

    s = current()
    path = s.calendar_file or s.home / "calendar.yaml"
    try:
        stamp: object = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    key = (str(path), stamp, s.calendar_file is not None, s.calendar_unknown_years)
    if _active is None or _active[0] != key:
        _active = (key, calendar_for(s))
    return _active[1]


@contextmanager
def use(calendar: WorkCalendar) -> Iterator[WorkCalendar]:
    """Pin `calendar` for the block (tests, the demo)."""
    global _pinned
    before, _pinned = _pinned, calendar
    try:
        yield calendar
    finally:
        _pinned = before


def is_workday(day: date) -> bool:
    """Whether `day` is a working day by the calendar in force."""
    return active().is_workday(day)


def provisional(start: date, end: date) -> bool:
    """Whether a count between the two days relies on a year not yet loaded (see :meth:`WorkCalendar.provisional`)."""
    return active().provisional(start, end)


def next_workday(day: date, calendar: WorkCalendar | None = None) -> date:
    """The first working day strictly after `day`: where the clock starts for something filed on `day`."""
    cal = calendar or active()
    day += ONE_DAY
    while not cal.is_workday(day):
        day += ONE_DAY
    return day


def add_workdays(day: date, n: int, calendar: WorkCalendar | None = None) -> date:
    """The n-th working day after `day` (n >= 0; n = 0 is `day` itself, whatever kind of day it is)."""
    if n < 0:
        raise ValueError(f"add_workdays needs n >= 0, not {n}")
    cal = calendar or active()
    for _ in range(n):
        day = next_workday(day, cal)
    return day


def workdays_between(start: date, end: date, calendar: WorkCalendar | None = None) -> int:
    """Working days in (start, end]: after `start`, up to and including `end` (0 when end <= start)."""
    cal = calendar or active()
    count = 0
    day = start
    while day < end:
        day += ONE_DAY
        count += cal.is_workday(day)
    return count


def deadline(filed: date, working_days: int, paused: int = 0, calendar: WorkCalendar | None = None) -> date:
    """The last day to act on something filed on `filed` with `working_days` allowed and `paused` working days
    spent returned for materials (they do not count)."""
    return add_workdays(filed, working_days + paused, calendar)
