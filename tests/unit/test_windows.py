"""B-7: which windows a run may pull. One pure check (adapters.base.Window), used by the pull stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import BadWindow, Window
from exchange.config import ExchangeSettings
from exchange.errors import TerminalError
from exchange.pipeline import Hub, pull

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]))


@settings(deadline=None)
@given(start=aware, length=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=400)))
def test_a_window_is_pullable_exactly_when_it_ends_by_now_plus_the_skew(start: datetime, length: timedelta) -> None:
    window = Window(start, start + length)
    if window.end <= NOW + SKEW:
        assert window.pullable(NOW, SKEW) is window
    else:
        with pytest.raises(BadWindow, match="is in the future"):
            window.pullable(NOW, SKEW)


@settings(deadline=None)
@given(start=aware, back=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_an_end_not_after_the_start_is_refused_as_a_terminal_error(start: datetime, back: timedelta) -> None:
    with pytest.raises(TerminalError, match="is not after the start"):
        Window(start, start - back)


@pytest.mark.parametrize("naive", ["start", "end"])
def test_bounds_without_an_offset_are_refused_naming_the_bound(naive: str) -> None:
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    bounds = {"start": start, "end": end}
    bounds[naive] = bounds[naive].replace(tzinfo=None)
    with pytest.raises(BadWindow, match=f"window {naive} .* has no UTC offset"):
        Window(**bounds)


@pytest.mark.parametrize("province", ["shanghai", "jiangsu", "zhejiang", "anhui"])
def test_pull_refuses_a_far_future_window_before_reading_the_province(province: str, home: Path) -> None:
    """A 2099 window would commit the records still pending and leave the real window empty (B-7)."""
    hub = Hub(ExchangeSettings(home=home, shanghai_api_url="http://127.0.0.1:9", shanghai_api_token="t"))
    start = datetime(2099, 1, 1, tzinfo=UTC)
    with pytest.raises(BadWindow, match="EXCHANGE_WINDOW_FUTURE_SKEW_SECONDS"):
        pull(province, "e_license", start, start + timedelta(days=1), hub)
    assert not (hub.layout.landing / province).exists(), "nothing was read"


def test_the_skew_is_a_setting(home: Path) -> None:
    """A window ending 30 minutes ahead is refused by default (5 min) and pulled with an hour's skew."""
    end = datetime.now(UTC) + timedelta(minutes=30)
    with pytest.raises(BadWindow):
        pull("jiangsu", "e_license", end - timedelta(days=1), end, Hub(ExchangeSettings(home=home)))
    (home / "sandboxes" / "jiangsu" / "drop").mkdir(parents=True)
    lenient = Hub(ExchangeSettings(home=home, window_future_skew_seconds=3600))
    assert pull("jiangsu", "e_license", end - timedelta(days=1), end, lenient).status == "empty"
