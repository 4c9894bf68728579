"""rule_text: the recurrence rules the console writes, in words."""

from __future__ import annotations

import pytest

from schedules import PRESETS
from schedules.rule_text import rule_text

MON_SAT = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0"


@pytest.mark.parametrize(
    ("rrule", "vi", "en"),
    [
        (MON_SAT, "Thứ Hai–Thứ Bảy, 05:00 và 17:00", "Monday–Saturday, 05:00 and 17:00"),
        ("FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0", "Hằng ngày, 06:00", "Every day, 06:00"),
        ("FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=30", "Thứ Hai, 07:30", "Monday, 07:30"),
        (
            "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=5,11,17;BYMINUTE=0",
            "Thứ Hai, Thứ Tư và Thứ Sáu, 05:00, 11:00 và 17:00",
            "Monday, Wednesday and Friday, 05:00, 11:00 and 17:00",
        ),
        (
            "FREQ=WEEKLY;BYDAY=SA,SU,MO;BYHOUR=18;BYMINUTE=15,45",
            "Thứ Hai, Thứ Bảy và Chủ Nhật, 18:15 và 18:45",
            "Monday, Saturday and Sunday, 18:15 and 18:45",
        ),
        (
            "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYHOUR=5;BYMINUTE=0",
            "Hằng ngày, 05:00",
            "Every day, 05:00",
        ),
        (
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;BYHOUR=8;BYMINUTE=0",
            "2 tuần một lần, Thứ Ba, 08:00",
            "Every 2 weeks, Tuesday, 08:00",
        ),
        (
            "FREQ=MONTHLY;BYMONTHDAY=1,15;BYHOUR=7;BYMINUTE=0",
            "Ngày 1 và 15 hằng tháng, 07:00",
            "Monthly on day 1 and 15, 07:00",
        ),
        (
            "RRULE:FREQ=DAILY;BYHOUR=5;BYMINUTE=0;COUNT=10",
            "Hằng ngày, 05:00 (10 lần)",
            "Every day, 05:00 (10 times)",
        ),
        (
            "FREQ=DAILY;BYHOUR=5;BYMINUTE=0;UNTIL=20310331T235959Z",
            "Hằng ngày, 05:00, đến 31/03/2031",
            "Every day, 05:00, until 31/03/2031",
        ),
    ],
)
def test_rules_in_words(rrule: str, vi: str, en: str) -> None:
    assert rule_text(rrule) == vi
    assert rule_text(rrule, lang="en") == en


@pytest.mark.parametrize(
    "rrule",
    [
        "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1",
        "FREQ=WEEKLY;BYDAY=1MO",
        "FREQ=DAILY;BYHOUR=25",
        "FREQ=MONTHLY;BYSETPOS=-1;BYDAY=FR",
        "not a rule",
        "",
    ],
)
def test_other_rules_say_custom_never_the_raw_text(rrule: str) -> None:
    assert rule_text(rrule) == "Lịch lặp lại tuỳ chỉnh"
    assert rule_text(rrule, lang="en") == "A custom repeating schedule"


def test_every_preset_reads_like_its_label() -> None:
    said = {p.key: rule_text(p.rrule) for p in PRESETS.values()}
    assert said == {
        "daily_0500_1700": "Hằng ngày, 05:00 và 17:00",
        "mon_sat_0500_1700": "Thứ Hai–Thứ Bảy, 05:00 và 17:00",
        "daily_0600": "Hằng ngày, 06:00",
        "weekly_monday_0700": "Thứ Hai, 07:00",
    }
