"""CAP 1.2 in: every malformed or out-of-spec alert refused with a sentence naming why."""

from __future__ import annotations

import re

import pytest

from server.cap.alert import CapError
from server.cap.parse import parse_alert
from tests.server.cap.samples import TYPHOON, TYPHOON_CANCEL, edited

REFUSED = [
    # (what, old text, new text, the sentence expected)
    ("malformed", "</alert>", "</alrt>", "The XML is malformed: mismatched tag: line 7"),
    (
        "no info",
        TYPHOON[TYPHOON.index("  <info>") : TYPHOON.index("</alert>")],
        "",
        "The alert has no <info> element.",
    ),
    (
        "unclosed polygon",
        "21.20,106.70 21.55,107.35",
        "21.20,106.70 21.50,107.35",
        "A polygon must close: its first and last points differ (in <area> 1 of <info> 1).",
    ),
    (
        "three-point polygon",
        "20.70,107.40\n        20.85,106.65 21.20,106.70 ",
        "",
        "A polygon needs at least 4 points, the first repeated as the last;"
        " the one in <area> 1 of <info> 1 has 3.",
    ),
    (
        "latitude",
        "21.10,108.05",
        "91.10,108.05",
        "The latitude 91.10 in <area> 1 of <info> 1 is outside -90 to 90.",
    ),
    (
        "longitude",
        "21.10,108.05",
        "21.10,188.05",
        "The longitude 188.05 in <area> 1 of <info> 1 is outside -180 to 180.",
    ),
    (
        "point",
        "21.10,108.05",
        "21.10;108.05",
        "The point '21.10;108.05' in <area> 1 of <info> 1 is not a 'latitude,longitude' pair.",
    ),
    ("nan point", "21.10,108.05", "nan,108.05", "The point 'nan,108.05' in <area> 1"),
    (
        "negative radius",
        "20.6,108.3 120",
        "20.6,108.3 -120",
        "A circle must be 'latitude,longitude radius' (km), not '20.6,108.3 -120'",
    ),
    (
        "status",
        "<status>Actual",
        "<status>Live",
        "The <status> of the alert is 'Live';"
        " it must be one of: Actual, Exercise, System, Test, Draft.",
    ),
    (
        "msgType",
        "<msgType>Alert",
        "<msgType>Warning",
        "The <msgType> of the alert is 'Warning';"
        " it must be one of: Alert, Update, Cancel, Ack, Error.",
    ),
    ("scope", "<scope>Public", "<scope>Everyone", "The <scope> of the alert is 'Everyone'"),
    (
        "urgency",
        "<urgency>Immediate",
        "<urgency>Now",
        "The <urgency> of <info> 1 is 'Now';"
        " it must be one of: Immediate, Expected, Future, Past, Unknown.",
    ),
    (
        "severity",
        "<severity>Severe",
        "<severity>Bad",
        "The <severity> of <info> 2 is 'Bad';"
        " it must be one of: Extreme, Severe, Moderate, Minor, Unknown.",
    ),
    (
        "certainty",
        "<certainty>Observed",
        "<certainty>Very Likely",
        "The <certainty> of <info> 1 is 'Very Likely'",
    ),
    ("category", "<category>Safety", "<category>Flood", "The <category> of <info> 1 is 'Flood'"),
    (
        "responseType",
        "<responseType>Shelter",
        "<responseType>Run",
        "The <responseType> of <info> 1 is 'Run'",
    ),
    (
        "no identifier",
        "<identifier>NCHMF-2026-09-06-BAO3-001</identifier>",
        "",
        "The alert has no <identifier> element.",
    ),
    (
        "empty sender",
        "<sender>canhbao@nchmf.gov.vn</sender>",
        "<sender> </sender>",
        "The alert has an empty <sender> element.",
    ),
    (
        "two identifiers",
        "<sender>",
        "<identifier>B</identifier><sender>",
        "The alert has more than one <identifier> element.",
    ),
    (
        "identifier with a comma",
        "NCHMF-2026-09-06-BAO3-001",
        "NCHMF,001",
        "The <identifier> contains a space, a comma, '<' or '&': 'NCHMF,001'.",
    ),
    ("no event", "<event>Bão số 3</event>", "", "<info> 1 has no <event> element."),
    (
        "no category",
        "<category>Met</category>\n    <event>Mưa",
        "<event>Mưa",
        "<info> 2 has no <category> element.",
    ),
    (
        "naive sent",
        "2026-09-06T10:00:00+07:00</sent>",
        "2026-09-06T10:00:00</sent>",
        "The <sent> of the alert is '2026-09-06T10:00:00', not a date and time with its time zone",
    ),
    (
        "impossible date",
        "2026-09-07T22:00:00+07:00",
        "2026-09-31T22:00:00+07:00",
        "The <expires> of <info> 1 is '2026-09-31T22:00:00+07:00'",
    ),
    (
        "year",
        "2026-09-07T22:00:00+07:00",
        "9999-09-07T22:00:00+07:00",
        "The <expires> of <info> 1 is outside the years 1970-2199.",
    ),
    (
        "language",
        "<language>vi-VN</language>",
        "<language>tiếng Việt</language>",
        "The <language> of <info> 1 is 'tiếng Việt', not a code like vi-VN.",
    ),
    (
        "update without references",
        "<msgType>Alert",
        "<msgType>Update",
        "An Update alert must name the earlier alert in <references>.",
    ),
    (
        "restricted",
        "<scope>Public</scope>",
        "<scope>Restricted</scope>",
        "A Restricted alert needs a <restriction> element.",
    ),
    (
        "private",
        "<scope>Public</scope>",
        "<scope>Private</scope>",
        "A Private alert needs an <addresses> element.",
    ),
    (
        "size",
        "<size>482113",
        "<size>big",
        "The <size> of <resource> 1 of <info> 1 is 'big', not a number of bytes.",
    ),
    (
        "mime type",
        "<mimeType>audio/mpeg",
        "<mimeType>mp3",
        "The <mimeType> of <resource> 1 of <info> 1 is 'mp3', not a type/subtype.",
    ),
    (
        "geocode",
        "<value>31</value>",
        "",
        "<geocode> 2 of <area> 1 of <info> 1 has no <value> element.",
    ),
    (
        "cap 1.1",
        "cap:1.2",
        "cap:1.1",
        "The alert is in namespace urn:oasis:names:tc:emergency:cap:1.1; only CAP 1.2",
    ),
    (
        "no namespace",
        ' xmlns="urn:oasis:names:tc:emergency:cap:1.2"',
        "",
        "The alert is in no namespace; only CAP 1.2",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "sentence"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_a_broken_alert_is_refused_with_a_sentence_naming_the_element(
    old: str, new: str, sentence: str
) -> None:
    with pytest.raises(CapError) as caught:
        parse_alert(edited(TYPHOON, old, new))
    assert caught.value.detail.startswith(sentence), caught.value.detail
    assert str(caught.value) == caught.value.detail


def test_a_reference_must_have_three_parts() -> None:
    broken = edited(TYPHOON_CANCEL, ",2026-09-06T10:00:00+07:00</references>", "</references>")
    with pytest.raises(CapError, match=re.escape("A reference must be 'sender,identifier,sent'")):
        parse_alert(broken)
    without = edited(TYPHOON_CANCEL, "<references>", "<note2>").replace(
        b"</references>", b"</note2>"
    )
    with pytest.raises(CapError, match=r"^A Cancel alert must name the earlier alert"):
        parse_alert(without)


@pytest.mark.parametrize(
    "data",
    [b"", b"<alert", b"<?xml version='1.0' encoding='klingon'?><alert/>", b"\xff\xfe<x/>"],
)
def test_what_is_not_xml_is_malformed(data: bytes) -> None:
    with pytest.raises(CapError, match=r"^The XML is malformed: "):
        parse_alert(data)


def test_another_document_is_not_an_alert() -> None:
    with pytest.raises(CapError, match=r"^The document is not a CAP 1.2 alert: .* <feed>\.$"):
        parse_alert(b'<feed xmlns="http://www.w3.org/2005/Atom"/>')


def test_an_oversized_alert_is_refused_before_it_is_parsed() -> None:
    padding = "Mưa to. " * 40_000  # about 360 kB of valid text
    big = edited(TYPHOON, "<description>", f"<description>{padding}")
    with pytest.raises(
        CapError, match=r"^The alert is \d+ bytes long; at most 256000 are accepted\.$"
    ):
        parse_alert(big)
    assert parse_alert(big, max_bytes=len(big)).infos[0].description is not None
    with pytest.raises(CapError, match="at most 1000 are accepted"):
        parse_alert(TYPHOON.encode(), max_bytes=1000)
