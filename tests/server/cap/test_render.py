"""CAP 1.2 out: Loa's bulletins as alerts and as an Atom feed, read back by our own parser."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from xml.etree.ElementTree import Element, tostring

import pytest
from defusedxml.ElementTree import fromstring

from schedules.priority import Priority
from server.cap.alert import NS, CapReference
from server.cap.level import alert_level
from server.cap.parse import parse_alert
from server.cap.render import ATOM_NS, CapOut, FeedEntry, render_alert, render_atom_feed
from tests.server.cap.samples import THUNDERSTORM, TYPHOON, TYPHOON_CANCEL

HANOI = timezone(timedelta(hours=7))
SENT = datetime(2026, 9, 6, 10, 30, tzinfo=HANOI)

OUT = CapOut(
    identifier="loa-bulletin-42",
    sender="loa@quangninh.gov.vn",
    sent=SENT,
    msg_type="Alert",
    status="Actual",
    level=Priority.EMERGENCY,
    event="Bão số 3",
    headline="Khẩn cấp: bão số 3 đổ bộ – sơ tán ngay",
    description="Gió mạnh cấp 14, giật cấp 17 <cấp độ rủi ro 5> & nước dâng 2-4 m.",
    instruction="Đến nhà văn hoá thôn hoặc trường học gần nhất.",
    expires=SENT + timedelta(hours=30),
    area_desc="Phường Hạ Long; đặc khu Cô Tô",
    geocodes=(("MA_DVHC", "22"), ("MA_DVHC", "25"), ("MA_DVHC", "07192")),
)


def test_a_bulletin_comes_back_with_the_same_fields() -> None:
    document = render_alert(OUT)
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    alert = parse_alert(document)
    assert (alert.identifier, alert.sender, alert.sent) == (OUT.identifier, OUT.sender, SENT)
    assert (alert.msg_type, alert.status, alert.scope) == ("Alert", "Actual", "Public")
    (info,) = alert.infos
    assert (info.language, info.categories, info.event) == ("vi-VN", ("Safety",), "Bão số 3")
    assert (info.headline, info.description, info.instruction) == (
        OUT.headline,
        OUT.description,
        OUT.instruction,
    )
    assert info.expires == OUT.expires
    (area,) = info.areas
    assert (area.area_desc, area.geocodes) == (OUT.area_desc, OUT.geocodes)
    assert alert_level(alert) == Priority.EMERGENCY


@pytest.mark.parametrize(
    ("level", "urgency", "severity"),
    [
        (Priority.EMERGENCY, "Immediate", "Extreme"),
        (Priority.PRIORITY, "Expected", "Severe"),
        (Priority.NORMAL, "Future", "Moderate"),
        ("priority", "Expected", "Severe"),
    ],
)
def test_each_level_is_written_so_that_it_reads_back_the_same(
    level: Priority | str, urgency: str, severity: str
) -> None:
    (info,) = parse_alert(render_alert(replace(OUT, level=level))).infos
    assert (info.urgency, info.severity) == (urgency, severity)
    assert alert_level(parse_alert(render_alert(replace(OUT, level=level)))) == level


@pytest.mark.parametrize("sample", [TYPHOON, TYPHOON_CANCEL, THUNDERSTORM])
def test_a_parsed_alert_renders_to_an_equal_alert(sample: str) -> None:
    alert = parse_alert(sample.encode())
    assert parse_alert(render_alert(alert)) == alert


def test_an_update_and_a_cancel_name_the_alert_they_follow() -> None:
    earlier = CapReference(OUT.sender, OUT.identifier, SENT)
    cancel = replace(
        OUT, identifier="loa-bulletin-42-cancel", msg_type="Cancel", references=(earlier,)
    )
    alert = parse_alert(render_alert(cancel))
    assert (alert.msg_type, alert.references) == ("Cancel", (earlier,))


def test_shapes_are_written_so_that_they_read_back_exactly() -> None:
    polygon = ((20.95, 107.0), (21.000001, 107.123456789), (20.9, 107.2), (20.95, 107.0))
    tiny = ((0.00001, -0.00002), (0.0, 1.0), (1.0, 1.0), (0.00001, -0.00002))
    out = replace(OUT, polygons=(polygon, tiny), circles=((20.6, 108.3, 120.0), (0.0, 0.0, 0.5)))
    document = render_alert(out)
    assert b"e-05" not in document  # CAP coordinates are plain decimals
    (area,) = parse_alert(document).infos[0].areas
    assert area.polygons == (polygon, tiny)
    assert area.circles == out.circles


def test_text_that_xml_cannot_carry_is_dropped_and_markup_escaped() -> None:
    out = replace(OUT, headline="Bão\x00 số 3\x0b", instruction="<script>alert(1)</script>")
    info = parse_alert(render_alert(out)).infos[0]
    assert info.headline == "Bão số 3"
    assert info.instruction == "<script>alert(1)</script>"


def test_empty_optional_text_is_left_out() -> None:
    info = parse_alert(render_alert(replace(OUT, description="", instruction=None))).infos[0]
    assert (info.description, info.instruction) == (None, None)


def test_bad_values_are_refused_before_writing() -> None:
    with pytest.raises(ValueError, match="has no time zone"):
        render_alert(replace(OUT, sent=datetime(2026, 9, 6, 10)))
    with pytest.raises(ValueError, match="msg_type 'Alarm' is not one of"):
        render_alert(replace(OUT, msg_type="Alarm"))
    with pytest.raises(ValueError, match="category 'Flood' is not one of"):
        render_alert(replace(OUT, category="Flood"))
    with pytest.raises(ValueError, match="'urgent' is not a valid Priority"):
        render_alert(replace(OUT, level="urgent"))
    with pytest.raises(ValueError, match="nan is not a coordinate"):
        render_alert(replace(OUT, circles=((float("nan"), 0.0, 1.0),)))


def test_times_are_written_to_the_second_with_a_numeric_offset() -> None:
    utc_morning = datetime(2026, 9, 6, 3, 0, 0, 123456, tzinfo=UTC)
    document = render_alert(replace(OUT, sent=utc_morning, expires=None))
    assert b"<sent>2026-09-06T03:00:00+00:00</sent>" in document
    assert b"<expires>" not in document


def _children(element: Element, name: str) -> list[Element]:
    return element.findall(f"{{{ATOM_NS}}}{name}")


def _one(element: Element, name: str) -> str:
    (child,) = _children(element, name)
    return child.text or ""


def test_the_atom_feed_carries_each_alert_inline() -> None:
    second = replace(OUT, identifier="loa-bulletin-43", level="priority", headline="Mưa lớn")
    feed_bytes = render_atom_feed(
        feed_id="https://loa.quangninh.gov.vn/api/v1/cap/feed.atom",
        title="Loa – cảnh báo khẩn cấp tỉnh Quảng Ninh",
        updated=SENT,
        entries=[
            FeedEntry(OUT, link="https://loa.quangninh.gov.vn/api/v1/cap/loa-bulletin-42.xml"),
            second,
        ],
        self_link="https://loa.quangninh.gov.vn/api/v1/cap/feed.atom",
    )
    feed = fromstring(feed_bytes)
    assert feed.tag == f"{{{ATOM_NS}}}feed"
    assert _one(feed, "id") == "https://loa.quangninh.gov.vn/api/v1/cap/feed.atom"
    assert _one(feed, "title") == "Loa – cảnh báo khẩn cấp tỉnh Quảng Ninh"
    assert _one(feed, "updated") == "2026-09-06T10:30:00+07:00"
    (self_link,) = _children(feed, "link")
    assert self_link.get("rel") == "self"
    first, other = _children(feed, "entry")
    assert _one(first, "id") == "https://loa.quangninh.gov.vn/api/v1/cap/loa-bulletin-42.xml"
    assert _one(other, "id").startswith("urn:uuid:")
    assert (_one(first, "title"), _one(other, "title")) == (OUT.headline, "Mưa lớn")
    assert _one(first, "updated") == "2026-09-06T10:30:00+07:00"
    assert _one(_children(first, "author")[0], "name") == OUT.sender
    for entry, out in ((first, OUT), (other, second)):
        (content,) = _children(entry, "content")
        assert content.get("type") == "application/cap+xml"
        (inner,) = list(content)
        assert inner.tag == f"{{{NS}}}alert"
        assert parse_alert(tostring(inner)) == parse_alert(render_alert(out))


def test_a_feed_entry_id_is_stable_and_differs_per_alert() -> None:
    def ids(*outs: CapOut) -> list[str]:
        feed = fromstring(render_atom_feed(feed_id="urn:x", title="t", updated=SENT, entries=outs))
        return [_one(e, "id") for e in _children(feed, "entry")]

    other = replace(OUT, identifier="loa-bulletin-44")
    assert ids(OUT, other) == ids(OUT, other)
    assert len(set(ids(OUT, other))) == 2


def test_an_empty_feed_is_still_a_feed() -> None:
    feed = fromstring(render_atom_feed(feed_id="urn:x", title="Loa", updated=SENT, entries=[]))
    assert _children(feed, "entry") == []
    assert _one(feed, "title") == "Loa"
