"""CAP urgency and severity to the regulation's three levels, and the text TTS reads."""

from __future__ import annotations

from dataclasses import replace

import pytest

from schedules.priority import Priority
from server.cap.alert import SEVERITIES, URGENCIES, CapInfo
from server.cap.level import alert_level, level_of, text_of
from server.cap.parse import parse_alert
from tests.server.cap.samples import THUNDERSTORM, TYPHOON, TYPHOON_CANCEL

E, P, N = Priority.EMERGENCY, Priority.PRIORITY, Priority.NORMAL
# Rows: urgency; columns: Extreme, Severe, Moderate, Minor, Unknown (the table).
TABLE = {
    "Immediate": (E, E, N, N, N),
    "Expected": (P, P, P, P, P),
    "Future": (N, N, N, N, N),
    "Past": (N, N, N, N, N),
    "Unknown": (N, N, N, N, N),
}


def _info(urgency: str = "Immediate", severity: str = "Extreme", **more: str) -> CapInfo:
    return CapInfo(("Met",), "Bão", urgency, severity, "Observed", **more)  # type: ignore[arg-type]


@pytest.mark.parametrize("urgency", URGENCIES)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_the_level_of_every_urgency_and_severity(urgency: str, severity: str) -> None:
    expected = TABLE[urgency][SEVERITIES.index(severity)]
    assert level_of(_info(urgency, severity)) == expected
    assert level_of(_info(urgency, severity)) == expected.value  # a plain string compares too


def test_an_alert_takes_its_highest_info() -> None:
    typhoon = parse_alert(TYPHOON.encode())
    assert [level_of(i) for i in typhoon.infos] == [E, P]
    assert alert_level(typhoon) == E
    assert alert_level(replace(typhoon, infos=typhoon.infos[::-1])) == E
    assert alert_level(replace(typhoon, infos=typhoon.infos[1:])) == P
    assert alert_level(parse_alert(THUNDERSTORM.encode())) == E  # Immediate and Severe
    assert alert_level(parse_alert(TYPHOON_CANCEL.encode())) == N  # no info at all


def test_the_spoken_text_is_headline_description_instruction() -> None:
    inland = parse_alert(TYPHOON.encode()).infos[1]
    assert text_of(inland) == (
        "Mưa rất to ở các tỉnh Lạng Sơn, Cao Bằng.\n\n"
        "Từ đêm 06/9 đến 08/9 có mưa to đến rất to,\n      lượng mưa phổ biến 150-250 mm.\n\n"
        "Đề phòng lũ quét và sạt lở đất ở vùng núi."
    )


def test_missing_parts_are_skipped_and_the_event_stands_in_for_nothing() -> None:
    assert text_of(_info(headline="Bão số 3!", instruction="  Sơ tán ngay  ")) == (
        "Bão số 3!\n\nSơ tán ngay."
    )
    assert text_of(_info()) == "Bão"
