"""Read a CAP 1.2 alert from bytes, safely (defusedxml: no DTD, no entities, no fetches)."""

from __future__ import annotations

import re
from datetime import datetime
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from server.cap.alert import (
    CATEGORIES,
    CERTAINTIES,
    MSG_TYPES,
    NS,
    RESPONSE_TYPES,
    SCOPES,
    SEVERITIES,
    STATUSES,
    URGENCIES,
    CapAlert,
    CapArea,
    CapError,
    CapInfo,
    CapReference,
    CapResource,
    Circle,
    Point,
    Polygon,
)

MAX_BYTES = 256_000
FIRST_YEAR, LAST_YEAR = 1970, 2199  # as server.bounds: later date arithmetic stays in range
# CAP writes "2026-09-06T14:00:00+07:00"; "Z" and fractions are out of spec but seen in the wild.
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_RADIUS = re.compile(r"\d+(\.\d+)?")  # no sign: a radius is never negative
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
_MIME = re.compile(r"[\w.+-]+/[\w.+-]+")
_UNSAFE_ID = re.compile(r"[\s,<&]")  # references separate entries by spaces, fields by commas


def parse_alert(data: bytes, *, max_bytes: int = MAX_BYTES) -> CapAlert:
    """The alert in `data`, or CapError with a sentence saying what is wrong."""
    if len(data) > max_bytes:
        raise CapError(f"The alert is {len(data)} bytes long; at most {max_bytes} are accepted.")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError("The XML declares a DTD or entities, which are not accepted.") from exc
    except (ParseError, LookupError) as exc:  # LookupError: an encoding Python does not know
        raise CapError(f"The XML is malformed: {exc}.") from exc
    if root.tag != _q("alert"):
        namespace, _, name = root.tag.lstrip("{").rpartition("}")
        if name == "alert":
            found = f"namespace {namespace}" if namespace else "no namespace"
            raise CapError(f"The alert is in {found}; only CAP 1.2 ({NS}) is accepted.")
        raise CapError(f"The document is not a CAP 1.2 alert: its root element is <{name}>.")
    return _alert(root)


def _alert(root: Element) -> CapAlert:
    where = "the alert"
    identifier, sender = _required(root, "identifier", where), _required(root, "sender", where)
    for name, value in (("identifier", identifier), ("sender", sender)):
        if _UNSAFE_ID.search(value):
            raise CapError(f"The <{name}> contains a space, a comma, '<' or '&': {_show(value)}.")
    sent = _date(_required(root, "sent", where), "sent", where)
    status = _choice(root, "status", STATUSES, where)
    msg_type = _choice(root, "msgType", MSG_TYPES, where)
    scope = _choice(root, "scope", SCOPES, where)
    restriction = _optional(root, "restriction", where)
    addresses = _optional(root, "addresses", where)
    if scope == "Restricted" and restriction is None:
        raise CapError("A Restricted alert needs a <restriction> element.")
    if scope == "Private" and addresses is None:
        raise CapError("A Private alert needs an <addresses> element.")
    references = _references(_optional(root, "references", where) or "")
    if msg_type in ("Update", "Cancel") and not references:
        article = "An" if msg_type == "Update" else "A"
        raise CapError(f"{article} {msg_type} alert must name the earlier alert in <references>.")
    infos = tuple(_info(el, f"<info> {n}") for n, el in enumerate(_all(root, "info"), 1))
    if not infos and msg_type in ("Alert", "Update"):
        raise CapError("The alert has no <info> element.")
    return CapAlert(
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=msg_type,
        scope=scope,
        restriction=restriction,
        addresses=addresses,
        note=_optional(root, "note", where),
        references=references,
        infos=infos,
    )


def _references(text: str) -> tuple[CapReference, ...]:
    found = []
    for entry in text.split():
        parts = entry.split(",")
        if len(parts) != 3 or not all(parts):
            raise CapError(f"A reference must be 'sender,identifier,sent', not {_show(entry)}.")
        found.append(CapReference(parts[0], parts[1], _date(parts[2], "references", "the alert")))
    return tuple(found)


def _info(el: Element, where: str) -> CapInfo:
    categories = tuple(_enum(c.text, "category", CATEGORIES, where) for c in _all(el, "category"))
    if not categories:
        raise CapError(f"{where} has no <category> element.")
    language = _optional(el, "language", where) or "en-US"
    if not _LANGUAGE.fullmatch(language):
        raise CapError(f"The <language> of {where} is {_show(language)}, not a code like vi-VN.")
    return CapInfo(
        categories=categories,
        event=_required(el, "event", where),
        urgency=_choice(el, "urgency", URGENCIES, where),
        severity=_choice(el, "severity", SEVERITIES, where),
        certainty=_choice(el, "certainty", CERTAINTIES, where),
        language=language,
        response_types=tuple(
            _enum(r.text, "responseType", RESPONSE_TYPES, where) for r in _all(el, "responseType")
        ),
        sender_name=_optional(el, "senderName", where),
        headline=_optional(el, "headline", where),
        description=_optional(el, "description", where),
        instruction=_optional(el, "instruction", where),
        web=_optional(el, "web", where),
        effective=_optional_date(el, "effective", where),
        onset=_optional_date(el, "onset", where),
        expires=_optional_date(el, "expires", where),
        resources=tuple(
            _resource(r, f"<resource> {n} of {where}")
            for n, r in enumerate(_all(el, "resource"), 1)
        ),
        areas=tuple(_area(a, f"<area> {n} of {where}") for n, a in enumerate(_all(el, "area"), 1)),
    )


def _resource(el: Element, where: str) -> CapResource:
    mime_type = _required(el, "mimeType", where)
    if not _MIME.fullmatch(mime_type):
        raise CapError(f"The <mimeType> of {where} is {_show(mime_type)}, not a type/subtype.")
    size_text = _optional(el, "size", where)
    if size_text is not None and not size_text.isdecimal():
        raise CapError(f"The <size> of {where} is {_show(size_text)}, not a number of bytes.")
    return CapResource(
        description=_required(el, "resourceDesc", where),
        mime_type=mime_type,
        uri=_optional(el, "uri", where),
        size=None if size_text is None else int(size_text),
        digest=_optional(el, "digest", where),
    )


def _area(el: Element, where: str) -> CapArea:
    geocodes = []
    for n, geo in enumerate(_all(el, "geocode"), 1):
        inner = f"<geocode> {n} of {where}"
        geocodes.append((_required(geo, "valueName", inner), _required(geo, "value", inner)))
    return CapArea(
        area_desc=_required(el, "areaDesc", where),
        polygons=tuple(_polygon(p.text or "", where) for p in _all(el, "polygon")),
        circles=tuple(_circle(c.text or "", where) for c in _all(el, "circle")),
        geocodes=tuple(geocodes),
    )


def _polygon(text: str, where: str) -> Polygon:
    points = tuple(_point(pair, where) for pair in text.split())
    if len(points) < 4:
        raise CapError(
            f"A polygon needs at least 4 points, the first repeated as the last;"
            f" the one in {where} has {len(points)}."
        )
    if points[0] != points[-1]:
        raise CapError(f"A polygon must close: its first and last points differ (in {where}).")
    return points


def _circle(text: str, where: str) -> Circle:
    parts = text.split()
    if len(parts) != 2 or not _RADIUS.fullmatch(parts[1]):
        raise CapError(
            f"A circle must be 'latitude,longitude radius' (km), not {_show(text)} ({where})."
        )
    lat, lon = _point(parts[0], where)
    return (lat, lon, float(parts[1]))


def _point(pair: str, where: str) -> Point:
    parts = pair.split(",")
    if len(parts) != 2 or not all(_NUMBER.fullmatch(p) for p in parts):
        raise CapError(f"The point {_show(pair)} in {where} is not a 'latitude,longitude' pair.")
    lat, lon = float(parts[0]), float(parts[1])
    if not -90 <= lat <= 90:
        raise CapError(f"The latitude {parts[0]} in {where} is outside -90 to 90.")
    if not -180 <= lon <= 180:
        raise CapError(f"The longitude {parts[1]} in {where} is outside -180 to 180.")
    return (lat, lon)


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _all(el: Element, name: str) -> list[Element]:
    return el.findall(_q(name))


def _optional(el: Element, name: str, where: str) -> str | None:
    found = _all(el, name)
    if len(found) > 1:
        raise CapError(f"{_capital(where)} has more than one <{name}> element.")
    text = (found[0].text or "").strip() if found else ""
    return text or None


def _required(el: Element, name: str, where: str) -> str:
    text = _optional(el, name, where)
    if text is None:
        state = "an empty" if _all(el, name) else "no"
        raise CapError(f"{_capital(where)} has {state} <{name}> element.")
    return text


def _choice(el: Element, name: str, allowed: tuple[str, ...], where: str) -> str:
    return _enum(_required(el, name, where), name, allowed, where)


def _enum(value: str | None, name: str, allowed: tuple[str, ...], where: str) -> str:
    text = (value or "").strip()
    if text not in allowed:
        raise CapError(
            f"The <{name}> of {where} is {_show(text)}; it must be one of: {', '.join(allowed)}."
        )
    return text


def _optional_date(el: Element, name: str, where: str) -> datetime | None:
    text = _optional(el, name, where)
    return None if text is None else _date(text, name, where)


def _date(text: str, name: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text) if _DATE.fullmatch(text) else None
    except ValueError:
        value = None
    if value is None:
        raise CapError(
            f"The <{name}> of {where} is {_show(text)}, not a date and time with its time zone"
            " (like 2026-09-06T14:00:00+07:00)."
        )
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise CapError(f"The <{name}> of {where} is outside the years {FIRST_YEAR}-{LAST_YEAR}.")
    return value


def _show(value: str) -> str:
    """A value quoted for a message, cut short so a huge value never fills the answer."""
    return repr(value if len(value) <= 60 else value[:60] + "…")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
