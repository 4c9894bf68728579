"""Console dates: typed and shown as dd/mm/yyyy; a new programme never starts in the past."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from server.console.dates import day_text, default_start, parse_day


@pytest.mark.parametrize(
    ("text", "day"),
    [("31/03/2031", date(2031, 3, 31)), ("1/2/2031", date(2031, 2, 1)),
     (" 05/12/2026 ", date(2026, 12, 5)), ("2031-03-31", date(2031, 3, 31))],
)  # fmt: skip
def test_parse_day(text: str, day: date) -> None:
    assert parse_day(text) == day
    assert day_text(day) == f"{day:%d/%m/%Y}"


@pytest.mark.parametrize("text", ["31/02/2031", "03/31/2031", "hôm qua", "", "12/2031"])
def test_bad_days_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_day(text)


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 12, 3, 16, 59, 30), datetime(2026, 12, 3, 17, 30)),
        (datetime(2026, 12, 3, 17, 0), datetime(2026, 12, 3, 17, 30)),
        (datetime(2026, 12, 3, 23, 40), datetime(2026, 12, 4, 0, 15)),
    ],
)
def test_default_start_is_ahead_on_a_quarter_hour(now: datetime, start: datetime) -> None:
    assert default_start(now) == start and default_start(now) > now
