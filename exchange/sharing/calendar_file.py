"""The operators' calendar file: State Council holiday arrangements for years chinesecalendar does not know.

The State Council publishes each year's arrangement (国务院办公厅关于YYYY年部分节假日安排的通知) in the autumn
before; chinesecalendar is released later, if at all. An operator copies the notice into EXCHANGE_HOME/calendar.yaml
(or the file EXCHANGE_CALENDAR_FILE names) and the hub uses it at once; a year in the file wins over the package.

    years:
      2027:
        source: 国务院办公厅关于2027年部分节假日安排的通知（国办发明电〔2026〕N号）
        holidays: [2027-01-01, ...]      # days off, weekends inside a holiday included or not
        workdays: [2027-02-20, ...]      # 调休上班日: the weekend days worked in lieu
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from exchange.errors import BadFile


class YearArrangement(BaseModel, frozen=True):
    """One year's arrangement as the State Council's notice gives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, description="The notice it is copied from (title and document number)")
    holidays: list[date] = Field(description="Days off (public holidays and the days moved into them)")
    workdays: list[date] = Field(default_factory=list,
                                 description="Adjusted working weekends (调休上班日): Saturdays/Sundays worked")

    @model_validator(mode="after")
    def _consistent(self) -> YearArrangement:
        both = set(self.holidays) & set(self.workdays)
        if both:
            raise ValueError(f"{min(both)} is listed both as a holiday and as a working day")
        weekday = next((d for d in self.workdays if d.weekday() < 5), None)
        if weekday is not None:
            raise ValueError(f"workdays: {weekday} is a weekday; list only the weekend days worked in lieu")
        return self


class CalendarFile(BaseModel, frozen=True):
    """The whole file: arrangements by year."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    years: dict[int, YearArrangement] = Field(description="Arrangement per year")

    @model_validator(mode="after")
    def _dates_in_their_year(self) -> CalendarFile:
        for year, arrangement in self.years.items():
            for field in ("holidays", "workdays"):
                stray = next((d for d in getattr(arrangement, field) if d.year != year), None)
                if stray is not None:
                    raise ValueError(f"year {year}: {field}: {stray} is not in {year}")
        return self

    def is_workday(self, day: date) -> bool | None:
        """Whether `day` is a working day by the file (None: the file does not have its year)."""
        arrangement = self.years.get(day.year)
        if arrangement is None:
            return None
        if day in arrangement.workdays:
            return True
        return day.weekday() < 5 and day not in arrangement.holidays


def _where(error: dict[str, object]) -> str:
    loc = [str(part) for part in error.get("loc", ())]  # type: ignore[attr-defined]
    if len(loc) > 1 and loc[0] == "years":
        loc = loc[1:]
    if loc and loc[0].isdigit():
        head = f"year {loc[0]}"
        rest = [p for p in loc[1:] if not p.isdigit()]
        return head + (f": {'.'.join(rest)}" if rest else "")
    return ".".join(loc) or "top level"


def load_calendar_file(path: Path) -> CalendarFile:
    """The file, checked; BadFile naming the file, the year and the field on any problem."""
    try:
        # BaseLoader: every scalar a string, so pydantic (not YAML's date constructor) judges each date and
        # can say which year and field a bad one is in.
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # noqa: S506 - no objects
    except OSError as err:
        raise BadFile(path, f"cannot read it ({err.strerror}); fix the path in EXCHANGE_CALENDAR_FILE") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadFile(path, f"not valid YAML{where}; see docs/operators.md, 'Working-day calendar'") from None
    if raw is None or raw == "":
        raw = {"years": {}}
    try:
        return CalendarFile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise BadFile(path, f"{_where(dict(first))}: {message}; see docs/operators.md, 'Working-day calendar'") \
            from None
