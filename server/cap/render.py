"""Write CAP 1.2 alerts, and an Atom feed carrying them, for e-boards, apps and neighbours."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from xml.etree.ElementTree import Element, SubElement, indent, tostring

from schedules.priority import Priority
from server.cap.alert import (
    CATEGORIES,
    MIME,
    MSG_TYPES,
    NS,
    STATUSES,
    CapAlert,
    CapArea,
    CapInfo,
    CapReference,
    Circle,
    Geocode,
    Polygon,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
# The way back from a level: level_of() of these gives the level again.
URGENCY_SEVERITY: dict[Priority, tuple[str, str]] = {
    Priority.EMERGENCY: ("Immediate", "Extreme"),
    Priority.PRIORITY: ("Expected", "Severe"),
    Priority.NORMAL: ("Future", "Moderate"),
}
# Characters XML 1.0 cannot carry at all: a stray control character in an operator's text
# would otherwise make the whole document unreadable.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, kw_only=True)
class CapOut:
    """What Loa says about one of its bulletins, as one CAP alert with one info and one area."""

    identifier: str
    sender: str
    sent: datetime
    level: Priority | str
    event: str
    headline: str
    area_desc: str
    msg_type: str = "Alert"
    status: str = "Actual"
    description: str | None = None
    instruction: str | None = None
    expires: datetime | None = None
    geocodes: tuple[Geocode, ...] = ()
    polygons: tuple[Polygon, ...] = ()
    circles: tuple[Circle, ...] = ()
    references: tuple[CapReference, ...] = ()
    language: str = "vi-VN"
    category: str = "Safety"
    sender_name: str | None = None
    web: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class FeedEntry:
    """An alert in the feed, with the address where it can be fetched alone, if any."""

    alert: CapOut | CapAlert
    link: str | None = None


def to_alert(out: CapOut) -> CapAlert:
    """The CAP alert a CapOut stands for; ValueError on values CAP has no word for."""
    for name, value, allowed in (
        ("msg_type", out.msg_type, MSG_TYPES),
        ("status", out.status, STATUSES),
        ("category", out.category, CATEGORIES),
    ):
        if value not in allowed:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")
    urgency, severity = URGENCY_SEVERITY[Priority(out.level)]
    area = CapArea(out.area_desc, out.polygons, out.circles, out.geocodes)
    info = CapInfo(
        categories=(out.category,),
        event=out.event,
        urgency=urgency,
        severity=severity,
        certainty="Likely",
        language=out.language,
        sender_name=out.sender_name,
        headline=out.headline,
        description=out.description,
        instruction=out.instruction,
        web=out.web,
        expires=out.expires,
        areas=(area,),
    )
    return CapAlert(
        identifier=out.identifier,
        sender=out.sender,
        sent=out.sent,
        status=out.status,
        msg_type=out.msg_type,
        scope="Public",
        note=out.note,
        references=out.references,
        infos=(info,),
    )


def render_alert(alert: CapOut | CapAlert) -> bytes:
    """The alert as a CAP 1.2 XML document (UTF-8); times are written to the second."""
    root = _alert_element(alert)
    indent(root)
    document: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def render_atom_feed(
    *,
    feed_id: str,
    title: str,
    updated: datetime,
    entries: Iterable[FeedEntry | CapOut | CapAlert],
    self_link: str | None = None,
) -> bytes:
    """An Atom 1.0 feed whose entries each hold one CAP alert inline (application/cap+xml)."""
    feed = Element("feed", {"xmlns": ATOM_NS})
    _text(feed, "id", feed_id)
    _text(feed, "title", title)
    _text(feed, "updated", _date(updated))
    if self_link:
        SubElement(feed, "link", {"rel": "self", "href": self_link})
    for item in entries:
        entry = item if isinstance(item, FeedEntry) else FeedEntry(item)
        alert = to_alert(entry.alert) if isinstance(entry.alert, CapOut) else entry.alert
        first = alert.infos[0] if alert.infos else None
        node = SubElement(feed, "entry")
        key = f"{NS}:{alert.sender},{alert.identifier}"
        _text(node, "id", entry.link or f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, key)}")
        _text(node, "title", (first and (first.headline or first.event)) or alert.msg_type)
        _text(node, "updated", _date(alert.sent))
        author = SubElement(node, "author")  # Atom wants an author; the CAP sender is it
        _text(author, "name", (first and first.sender_name) or alert.sender)
        if entry.link:
            SubElement(node, "link", {"rel": "alternate", "type": MIME, "href": entry.link})
        content = SubElement(node, "content", {"type": MIME})
        content.append(_alert_element(alert))
    indent(feed)
    document: bytes = tostring(feed, encoding="utf-8", xml_declaration=True)
    return document


def _alert_element(alert: CapOut | CapAlert) -> Element:
    if isinstance(alert, CapOut):
        alert = to_alert(alert)
    # The namespace as a plain attribute: children stay unprefixed, no global registry touched.
    root = Element("alert", {"xmlns": NS})
    _text(root, "identifier", alert.identifier)
    _text(root, "sender", alert.sender)
    _text(root, "sent", _date(alert.sent))
    _text(root, "status", alert.status)
    _text(root, "msgType", alert.msg_type)
    _text(root, "scope", alert.scope)
    _text(root, "restriction", alert.restriction)
    _text(root, "addresses", alert.addresses)
    _text(root, "note", alert.note)
    refs = " ".join(f"{r.sender},{r.identifier},{_date(r.sent)}" for r in alert.references)
    _text(root, "references", refs)
    for info in alert.infos:
        _info_element(SubElement(root, "info"), info)
    return root


def _info_element(node: Element, info: CapInfo) -> None:
    """The children in the order the CAP 1.2 schema requires."""
    _text(node, "language", info.language)
    for category in info.categories:
        _text(node, "category", category)
    _text(node, "event", info.event)
    for response in info.response_types:
        _text(node, "responseType", response)
    _text(node, "urgency", info.urgency)
    _text(node, "severity", info.severity)
    _text(node, "certainty", info.certainty)
    for name, when in (
        ("effective", info.effective),
        ("onset", info.onset),
        ("expires", info.expires),
    ):
        _text(node, name, None if when is None else _date(when))
    _text(node, "senderName", info.sender_name)
    _text(node, "headline", info.headline)
    _text(node, "description", info.description)
    _text(node, "instruction", info.instruction)
    _text(node, "web", info.web)
    for resource in info.resources:
        res = SubElement(node, "resource")
        _text(res, "resourceDesc", resource.description)
        _text(res, "mimeType", resource.mime_type)
        _text(res, "size", None if resource.size is None else str(resource.size))
        _text(res, "uri", resource.uri)
        _text(res, "digest", resource.digest)
    for area in info.areas:
        where = SubElement(node, "area")
        _text(where, "areaDesc", area.area_desc)
        for polygon in area.polygons:
            _text(where, "polygon", " ".join(f"{_num(a)},{_num(o)}" for a, o in polygon))
        for lat, lon, radius in area.circles:
            _text(where, "circle", f"{_num(lat)},{_num(lon)} {_num(radius)}")
        for value_name, value in area.geocodes:
            geocode = SubElement(where, "geocode")
            _text(geocode, "valueName", value_name)
            _text(geocode, "value", value)


def _text(parent: Element, tag: str, text: str | None) -> None:
    """A child holding `text`; nothing for None or an empty string (CAP has no empty elements)."""
    if text:
        SubElement(parent, tag).text = _NOT_XML.sub("", text)


def _date(value: datetime) -> str:
    """CAP's form, 2026-09-06T14:00:00+07:00: seconds, a numeric offset, never 'Z'."""
    if value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no time zone")
    return value.replace(microsecond=0).isoformat()


def _num(value: float) -> str:
    """A decimal without exponent (CAP coordinates have none) that reads back as the same float."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a coordinate")
    text = repr(float(value))
    return text if "e" not in text else f"{value:.20f}".rstrip("0").rstrip(".")
