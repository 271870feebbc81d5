"""China's working days (public holidays and adjusted working weekends) and deadline arithmetic over them.

The calendar is chinesecalendar's (pinned): the State Council publishes each year's holiday arrangement late
in the year before, and the package only knows the years it was released with. A date in a year it does not
know is an error (:class:`CalendarYearUnknown`), never a guess: a guessed deadline could make an office
overdue, or let a request slip, on a day the law counts differently.

Conventions (docs/departments.md, "Deadlines"): the filing day is not counted (期间开始之日不计算在内), so
the clock starts on the next working day, also for a request filed on a holiday; a deadline of n working
days is the n-th working day after the filing date and the office may act until the end of that day; while a
request is returned for materials the clock stands still and resumes, on resubmission, with the working days
it had left.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from exchange.errors import CheckFailed

ONE_DAY = timedelta(days=1)
CHINA = ZoneInfo("Asia/Shanghai")


def local_date(at: datetime) -> date:
    """The calendar date in China of an instant (deadlines count China's days, whatever the server's zone)."""
    return at.astimezone(CHINA).date()


class CalendarYearUnknown(CheckFailed):
    """The working-day calendar does not know a year a deadline reaches: upgrade chinesecalendar."""

    def __init__(self, year: int, needed: str, supported: str) -> None:
        self.year = year
        self.needed = needed
        self.supported = supported
        super().__init__(f"the working-day calendar (chinesecalendar) has no holiday data for {year} "
                         f"(needed for {needed}; it knows {supported}): install a chinesecalendar release "
                         f"with the State Council's {year} holiday arrangement; the hub does not guess deadlines")


@lru_cache(maxsize=4096)
def is_workday(day: date) -> bool:
    """Whether `day` is a working day in mainland China (adjusted weekends count, holidays do not)."""
    import chinese_calendar

    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        raise CalendarYearUnknown(day.year, day.isoformat(), _supported()) from None


def _supported() -> str:
    from chinese_calendar import constants

    years = sorted({d.year for d in constants.holidays})
    return f"{years[0]}-{years[-1]}" if years else "no year"


def next_workday(day: date) -> date:
    """The first working day strictly after `day`: where the clock starts for something filed on `day`."""
    day += ONE_DAY
    while not is_workday(day):
        day += ONE_DAY
    return day


def add_workdays(day: date, n: int) -> date:
    """The n-th working day after `day` (n >= 0; n = 0 is `day` itself, whatever kind of day it is)."""
    if n < 0:
        raise ValueError(f"add_workdays needs n >= 0, not {n}")
    for _ in range(n):
        day = next_workday(day)
    return day


def workdays_between(start: date, end: date) -> int:
    """Working days in (start, end]: after `start`, up to and including `end` (0 when end <= start)."""
    count = 0
    day = start
    while day < end:
        day += ONE_DAY
        count += is_workday(day)
    return count


def deadline(filed: date, working_days: int, paused: int = 0) -> date:
    """The last day to act on something filed on `filed` with `working_days` allowed and `paused` working days
    spent returned for materials (they do not count)."""
    return add_workdays(filed, working_days + paused)
