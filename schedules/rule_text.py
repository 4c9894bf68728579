"""A recurrence rule in words an operator reads: "Thứ Hai–Thứ Bảy, 05:00 và 17:00".

Pure: the RRULE text in, a sentence out (Vietnamese or English). Rules outside the shapes
the console writes (daily, weekly on days, monthly on dates, at given times, every N) get a
plain "custom rule" sentence rather than the raw text.
"""

from __future__ import annotations

from collections.abc import Sequence

DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DAY_NAMES = {
    "vi": ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
WORDS = {
    "vi": {
        "and": "và",
        "every_day": "Hằng ngày",
        "every_n_days": "{n} ngày một lần",
        "every_week": "Hằng tuần",
        "every_n_weeks": "{n} tuần một lần",
        "monthly_on": "Ngày {days} hằng tháng",
        "every_n_months_on": "Ngày {days}, {n} tháng một lần",
        "custom": "Lịch lặp lại tuỳ chỉnh",
        "times_total": "{n} lần",
        "until": "đến {day}",
    },
    "en": {
        "and": "and",
        "every_day": "Every day",
        "every_n_days": "Every {n} days",
        "every_week": "Every week",
        "every_n_weeks": "Every {n} weeks",
        "monthly_on": "Monthly on day {days}",
        "every_n_months_on": "Every {n} months on day {days}",
        "custom": "A custom repeating schedule",
        "times_total": "{n} times",
        "until": "until {day}",
    },
}
_HANDLED = {"FREQ", "INTERVAL", "BYDAY", "BYHOUR", "BYMINUTE", "BYSECOND", "BYMONTHDAY"}
_HANDLED |= {"COUNT", "UNTIL", "WKST"}


def rule_text(rrule: str, *, lang: str = "vi") -> str:
    """The rule as one sentence in `lang` ("vi" or "en")."""
    words = WORDS.get(lang, WORDS["vi"])
    parts = _parse(rrule)
    if parts is None:
        return words["custom"]
    try:
        interval = int(parts.get("INTERVAL", "1"))
        hours = _numbers(parts.get("BYHOUR", "0"), 0, 23)
        minutes = _numbers(parts.get("BYMINUTE", "0"), 0, 59)
        monthdays = _numbers(parts.get("BYMONTHDAY", ""), 1, 31)
    except ValueError:
        return words["custom"]
    days = [d for d in parts.get("BYDAY", "").split(",") if d]
    if interval < 1 or any(d not in DAYS for d in days):
        return words["custom"]
    freq = parts.get("FREQ")
    if freq == "DAILY" and not days and not monthdays:
        when = words["every_day"] if interval == 1 else words["every_n_days"].format(n=interval)
    elif (freq == "WEEKLY" and not monthdays) or (freq == "DAILY" and days and interval == 1):
        when = _days(days, lang=lang)
        if interval > 1:
            when = f"{words['every_n_weeks'].format(n=interval)}, {when}"
        elif freq == "WEEKLY" and not days:
            when = words["every_week"]
    elif freq == "MONTHLY" and monthdays and not days:
        listed = _join([str(d) for d in monthdays], words["and"])
        key = "monthly_on" if interval == 1 else "every_n_months_on"
        when = words[key].format(days=listed, n=interval)
    else:
        return words["custom"]
    times = sorted(f"{h:02d}:{m:02d}" for h in hours for m in minutes)
    text = f"{when}, {_join(times, words['and'])}"
    if "COUNT" in parts and parts["COUNT"].isdigit():
        text += f" ({words['times_total'].format(n=int(parts['COUNT']))})"
    elif "UNTIL" in parts and len(parts["UNTIL"]) >= 8 and parts["UNTIL"][:8].isdigit():
        u = parts["UNTIL"]
        text += f", {words['until'].format(day=f'{u[6:8]}/{u[4:6]}/{u[0:4]}')}"
    return text


def _parse(rrule: str) -> dict[str, str] | None:
    """KEY=VALUE pairs of the rule (an optional "RRULE:" prefix), None for anything else."""
    body = rrule.strip().removeprefix("RRULE:")
    parts: dict[str, str] = {}
    for piece in body.split(";"):
        key, sep, value = piece.partition("=")
        key = key.strip().upper()
        if not sep or key not in _HANDLED or key in parts:
            return None
        parts[key] = value.strip().upper()
    return parts if "FREQ" in parts else None


def _numbers(text: str, low: int, high: int) -> list[int]:
    """A comma list of whole numbers in [low, high], sorted (ValueError otherwise)."""
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if any(not low <= v <= high for v in values):
        raise ValueError(text)
    return values


def _days(days: Sequence[str], *, lang: str) -> str:
    """Weekdays in week order; runs of three or more as "first–last"."""
    names = DAY_NAMES.get(lang, DAY_NAMES["vi"])
    words = WORDS.get(lang, WORDS["vi"])
    picked = sorted({DAYS.index(d) for d in days})
    if len(picked) == 7:
        return words["every_day"]
    runs: list[list[int]] = []
    for i in picked:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    pieces = []
    for run in runs:
        if len(run) >= 3:
            pieces.append(f"{names[run[0]]}–{names[run[-1]]}")
        else:
            pieces += [names[i] for i in run]
    return _join(pieces, words["and"])


def _join(items: Sequence[str], and_word: str) -> str:
    """ "a", "a và b", "a, b và c"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {and_word} {items[-1]}"
