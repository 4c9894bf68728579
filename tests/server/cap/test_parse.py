"""CAP 1.2 in: real alerts read field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from server.cap.alert import CapReference
from server.cap.parse import parse_alert
from tests.server.cap.samples import THUNDERSTORM, TYPHOON, TYPHOON_CANCEL, edited

HANOI = timezone(timedelta(hours=7))


def test_a_vietnamese_typhoon_alert_is_read_field_by_field() -> None:
    alert = parse_alert(TYPHOON.encode())
    assert (alert.identifier, alert.sender) == ("NCHMF-2026-09-06-BAO3-001", "canhbao@nchmf.gov.vn")
    assert alert.sent == datetime(2026, 9, 6, 10, tzinfo=HANOI)
    assert alert.sent.utcoffset() == timedelta(hours=7)
    assert (alert.status, alert.msg_type, alert.scope) == ("Actual", "Alert", "Public")
    assert alert.references == ()
    coast, inland = alert.infos
    assert coast.language == "vi-VN"
    assert coast.categories == ("Met", "Safety")
    assert coast.response_types == ("Shelter", "Evacuate")
    assert (coast.event, coast.urgency, coast.severity, coast.certainty) == (
        "Bão số 3",
        "Immediate",
        "Extreme",
        "Observed",
    )
    assert coast.headline == "Bão số 3 (YAGI) đổ bộ vùng biển Quảng Ninh – Hải Phòng"
    assert coast.description is not None and "cấp 14\n      (150-166 km/h)" in coast.description
    assert coast.instruction is not None and coast.instruction.startswith("Người dân")
    assert coast.effective == datetime(2026, 9, 6, 10, tzinfo=HANOI)
    assert coast.onset == datetime(2026, 9, 6, 16, tzinfo=HANOI)
    assert coast.expires == datetime(2026, 9, 7, 22, tzinfo=HANOI)
    (resource,) = coast.resources
    assert (resource.mime_type, resource.size) == ("audio/mpeg", 482113)
    assert resource.uri == "https://nchmf.gov.vn/cap/audio/bao-so-3-001.mp3"
    (area,) = coast.areas
    assert area.area_desc.startswith("Vùng ven biển tỉnh Quảng Ninh")
    ring = ((21.55, 107.35), (21.10, 108.05), (20.70, 107.40), (20.85, 106.65), (21.20, 106.70))
    assert area.polygons == ((*ring, (21.55, 107.35)),)
    assert area.circles == ((20.6, 108.3, 120.0),)
    assert area.geocodes == (("MA_DVHC", "22"), ("MA_DVHC", "31"))
    assert inland.areas[0].geocodes == (("MA_DVHC", "20"), ("MA_DVHC", "04"))
    assert inland.resources == () and inland.onset is None


def test_the_oasis_thunderstorm_example_is_read() -> None:
    alert = parse_alert(THUNDERSTORM.encode())
    (info,) = alert.infos
    assert alert.sent == datetime(2003, 6, 17, 14, 57, tzinfo=timezone(timedelta(hours=-7)))
    assert info.language == "en-US"  # the default when <language> is absent
    assert info.areas[0].polygons[0][0] == (38.47, -120.14)
    assert info.areas[0].geocodes == (("SAME", "006109"), ("SAME", "006009"))


def test_a_cancel_needs_no_info_and_names_what_it_cancels() -> None:
    alert = parse_alert(TYPHOON_CANCEL.encode())
    assert (alert.msg_type, alert.infos) == ("Cancel", ())
    assert alert.note == "Bão số 3 đã suy yếu thành áp thấp nhiệt đới."
    assert alert.references == (
        CapReference(
            "canhbao@nchmf.gov.vn",
            "NCHMF-2026-09-06-BAO3-001",
            datetime(2026, 9, 6, 10, tzinfo=HANOI),
        ),
    )


def test_z_and_fractional_seconds_are_tolerated_as_utc() -> None:
    alert = parse_alert(
        edited(TYPHOON, "2026-09-06T10:00:00+07:00</sent>", "2026-09-06T03:00:00.5Z</sent>")
    )
    assert alert.sent == datetime(2026, 9, 6, 3, 0, 0, 500000, tzinfo=UTC)


def test_the_alert_is_frozen() -> None:
    alert = parse_alert(TYPHOON.encode())
    with pytest.raises(AttributeError):
        alert.identifier = "x"  # type: ignore[misc]
    assert hash(alert) == hash(parse_alert(TYPHOON.encode()))
