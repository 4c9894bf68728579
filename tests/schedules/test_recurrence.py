"""Recurrence: presets in local time, validity windows, clock changes, garbage rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from schedules import PRESETS, local_tz, normalise_rrule, occurrences, validate_rrule
from tests.schedules.factories import utc

BERLIN = ZoneInfo("Europe/Berlin")


def _between(rule: str, dtstart: datetime, start: datetime, end: datetime) -> list[datetime]:
    return occurrences(rrule=rule, dtstart_local=dtstart, window_start=start, window_end=end)


def test_required_presets_have_vietnamese_and_english_labels() -> None:
    assert {"daily_0500_1700", "mon_sat_0500_1700", "daily_0600", "weekly_monday_0700"} <= set(
        PRESETS
    )
    assert PRESETS["daily_0500_1700"].label_vi == "Hằng ngày 05:00 và 17:00"
    assert PRESETS["mon_sat_0500_1700"].label_vi == "Thứ Hai–Thứ Bảy 05:00 và 17:00"
    for key, preset in PRESETS.items():
        assert preset.key == key
        assert preset.label_vi and preset.label_en
        assert normalise_rrule(preset.rrule) == preset.rrule


def test_0500_local_is_2200_utc_the_previous_day() -> None:
    found = occurrences(
        rrule=PRESETS["daily_0500_1700"].rrule,
        dtstart_local=datetime(2025, 1, 1),
        window_start=utc(2025, 6, 1),
        window_end=utc(2025, 6, 3),
    )
    assert found == [
        utc(2025, 6, 1, 10),  # 17:00 on 1 June in Hà Nội
        utc(2025, 6, 1, 22),  # 05:00 on 2 June
        utc(2025, 6, 2, 10),
        utc(2025, 6, 2, 22),  # 05:00 on 3 June, still inside the UTC window
    ]
    assert all(t.tzinfo is UTC for t in found)


def test_mon_sat_preset_excludes_sunday() -> None:
    # Monday 2 June 2025 00:00 local to Monday 9 June 00:00 local: one whole week.
    found = occurrences(
        rrule=PRESETS["mon_sat_0500_1700"].rrule,
        dtstart_local=datetime(2025, 1, 1),
        window_start=utc(2025, 6, 1, 17),
        window_end=utc(2025, 6, 8, 17),
    )
    local = [t.astimezone(local_tz()) for t in found]
    assert len(found) == 12
    assert {t.isoweekday() for t in local} == {1, 2, 3, 4, 5, 6}
    assert {(t.hour, t.minute) for t in local} == {(5, 0), (17, 0)}


def test_weekly_monday_and_daily_0600_presets() -> None:
    start, end = utc(2025, 6, 1), utc(2025, 6, 15)
    mondays = _between(PRESETS["weekly_monday_0700"].rrule, datetime(2025, 1, 1), start, end)
    assert mondays == [utc(2025, 6, 2, 0), utc(2025, 6, 9, 0)]
    sixes = _between(PRESETS["daily_0600"].rrule, datetime(2025, 1, 1), start, end)
    assert len(sixes) == 14
    assert sixes[0] == utc(2025, 6, 1, 23)


def test_window_is_half_open() -> None:
    found = _between("FREQ=DAILY", datetime(2025, 6, 1, 7), utc(2025, 6, 2), utc(2025, 6, 3))
    assert found == [utc(2025, 6, 2, 0)]


def test_validity_window_limits_occurrences() -> None:
    found = occurrences(
        rrule=PRESETS["daily_0600"].rrule,
        dtstart_local=datetime(2025, 1, 1),
        window_start=utc(2025, 6, 1),
        window_end=utc(2025, 6, 30),
        valid_from=utc(2025, 6, 10),
        valid_until=utc(2025, 6, 12, 23),  # exclusive: 06:00 on 13 June is out
    )
    assert found == [utc(2025, 6, 10, 23), utc(2025, 6, 11, 23)]


def test_validity_outside_window_gives_nothing() -> None:
    found = occurrences(
        rrule="FREQ=DAILY",
        dtstart_local=datetime(2025, 1, 1, 6),
        window_start=utc(2025, 6, 1),
        window_end=utc(2025, 6, 8),
        valid_until=utc(2025, 5, 1),
    )
    assert found == []


def test_aware_dtstart_is_taken_in_local_time() -> None:
    # 22:00 UTC is 05:00 the next day in Hà Nội: the rule's default hour is 05.
    found = occurrences(
        rrule="FREQ=DAILY",
        dtstart_local=utc(2025, 5, 31, 22),
        window_start=utc(2025, 6, 1),
        window_end=utc(2025, 6, 3),
    )
    assert found == [utc(2025, 6, 1, 22), utc(2025, 6, 2, 22)]


def test_until_in_utc_and_as_a_date() -> None:
    dtstart, start, end = datetime(2025, 6, 1, 5), utc(2025, 5, 1), utc(2025, 7, 1)
    # UNTIL 2025-06-02 22:00Z is 05:00 local on 3 June: inclusive.
    utc_until = _between("FREQ=DAILY;UNTIL=20250602T220000Z", dtstart, start, end)
    assert utc_until == [utc(2025, 5, 31, 22), utc(2025, 6, 1, 22), utc(2025, 6, 2, 22)]
    # A date-only UNTIL covers that whole local day.
    date_until = _between("FREQ=DAILY;UNTIL=20250603", dtstart, start, end)
    assert date_until == utc_until


def test_count_is_respected() -> None:
    found = occurrences(
        rrule="FREQ=DAILY;COUNT=3",
        dtstart_local=datetime(2025, 6, 1, 5),
        window_start=utc(2025, 5, 1),
        window_end=utc(2025, 7, 1),
    )
    assert len(found) == 3


def test_daylight_saving_is_handled_in_local_time() -> None:
    # Vietnam has no DST; Berlin does, and 09:00 must stay 09:00 on the wall clock.
    found = occurrences(
        rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
        dtstart_local=datetime(2025, 3, 1),
        window_start=utc(2025, 3, 29),
        window_end=utc(2025, 4, 1),
        tz=BERLIN,
    )
    assert found == [utc(2025, 3, 29, 8), utc(2025, 3, 30, 7), utc(2025, 3, 31, 7)]


def test_skipped_and_repeated_wall_times_follow_rfc_5545() -> None:
    rule = "FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0"
    # 02:30 does not exist on 30 March: the offset before the gap (+01:00) applies.
    spring = occurrences(
        rrule=rule,
        dtstart_local=datetime(2025, 3, 1),
        window_start=utc(2025, 3, 30),
        window_end=utc(2025, 3, 31),
        tz=BERLIN,
    )
    assert spring == [utc(2025, 3, 30, 1, 30)]
    # 02:30 happens twice on 26 October: the first one (+02:00) is meant.
    autumn = occurrences(
        rrule=rule,
        dtstart_local=datetime(2025, 10, 1),
        window_start=utc(2025, 10, 26),
        window_end=utc(2025, 10, 27),
        tz=BERLIN,
    )
    assert autumn == [utc(2025, 10, 26, 0, 30)]


def _reference(rule: str, dtstart: datetime, start: datetime, end: datetime) -> list[datetime]:
    """Straight dateutil evaluation from the original DTSTART, converted to UTC."""
    walls = rrulestr(rule, dtstart=dtstart).between(
        start.astimezone(local_tz()).replace(tzinfo=None) - timedelta(days=1),
        end.astimezone(local_tz()).replace(tzinfo=None) + timedelta(days=1),
        inc=True,
    )
    instants = (w.replace(tzinfo=local_tz()).astimezone(UTC) for w in walls)
    return sorted(t for t in instants if start <= t < end)


@pytest.mark.parametrize(
    ("rule", "dtstart"),
    [
        ("FREQ=DAILY", datetime(2019, 3, 7, 5, 30)),
        ("FREQ=DAILY;INTERVAL=3;BYHOUR=5,17;BYMINUTE=0", datetime(2020, 2, 29, 11)),
        ("FREQ=WEEKLY;INTERVAL=2", datetime(2021, 1, 6, 7)),
        ("FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,SU;WKST=SU", datetime(2018, 5, 5, 6)),
        ("FREQ=HOURLY;INTERVAL=5;BYMINUTE=15", datetime(2024, 12, 31, 23, 15)),
        ("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=19", datetime(2017, 8, 3)),
        ("FREQ=MONTHLY;INTERVAL=2;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", datetime(2016, 3, 10, 8)),
        ("FREQ=MONTHLY", datetime(2020, 1, 31, 6)),
        ("FREQ=MONTHLY;INTERVAL=5", datetime(2015, 6, 12, 6)),
        ("FREQ=MONTHLY;INTERVAL=7;BYMONTHDAY=31", datetime(2019, 2, 5, 6)),
        ("FREQ=YEARLY;INTERVAL=2", datetime(2013, 6, 3, 6)),
        ("FREQ=YEARLY;BYMONTH=7;BYDAY=1MO", datetime(2010, 2, 1, 6)),
        ("FREQ=DAILY;COUNT=2000", datetime(2021, 1, 1, 6)),
        ("FREQ=DAILY;UNTIL=20250610T000000", datetime(2022, 1, 1, 6)),
    ],
)
def test_old_start_gives_the_same_occurrences_as_plain_dateutil(
    rule: str, dtstart: datetime
) -> None:
    start, end = utc(2025, 6, 1, 3), utc(2025, 8, 20, 9)
    expected = _reference(rule, dtstart, start, end)
    assert expected, "the reference window must contain occurrences to compare"
    got = occurrences(rrule=rule, dtstart_local=dtstart, window_start=start, window_end=end)
    assert got == expected


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "the rule is empty"),
        ("garbage", "'garbage' is not NAME=VALUE"),
        ("FREQ=FORTNIGHTLY", "FREQ must be one of HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY"),
        ("BYHOUR=5", "FREQ is required"),
        ("FREQ=DAILY;FOO=1", "unknown parameter 'FOO'"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice"),
        ("FREQ=MINUTELY", "FREQ=MINUTELY is not supported"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be a whole number of at least 1"),
        ("FREQ=DAILY;COUNT=-2", "COUNT must be a whole number of at least 1"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20260101", "COUNT and UNTIL cannot both be given"),
        ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL must look like"),
        ("FREQ=DAILY;UNTIL=20251301", "UNTIL 20251301 is not a real date"),
        ("FREQ=DAILY;BYHOUR=25", "hour must be in 0..23"),
        ("FREQ=WEEKLY;BYDAY=XX", "invalid 'BYDAY'"),
        ("DTSTART:20250101T050000\nRRULE:FREQ=DAILY", "give one RRULE line only"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "no month in BYMONTH has the days"),
        ("FREQ=YEARLY;BYMONTH=2;BYYEARDAY=1", "never produces an occurrence"),
        ("FREQ=DAILY;UNTIL=20200101", "never produces an occurrence"),
    ],
)
def test_garbage_rules_raise_clear_errors(rule: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid recurrence rule") as excinfo:
        validate_rrule(rule, dtstart_local=datetime(2025, 1, 1, 5))
    assert message in str(excinfo.value)


def test_rule_is_normalised() -> None:
    text = validate_rrule("Rrule:freq=weekly;byday=mo,tu", dtstart_local=datetime(2025, 1, 1))
    assert text == "FREQ=WEEKLY;BYDAY=MO,TU"


def test_naive_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="window_start must be timezone-aware"):
        occurrences(
            rrule="FREQ=DAILY",
            dtstart_local=datetime(2025, 1, 1),
            window_start=datetime(2025, 6, 1),
            window_end=utc(2025, 6, 2),
        )
