"""The CAP 1.2 alert as Loa reads it: frozen dataclasses, the enumerations, the one error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

NS = "urn:oasis:names:tc:emergency:cap:1.2"
MIME = "application/cap+xml"

STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPES = ("Public", "Restricted", "Private")
CATEGORIES = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)
RESPONSE_TYPES = (
    "Shelter",
    "Evacuate",
    "Prepare",
    "Execute",
    "Avoid",
    "Monitor",
    "Assess",
    "AllClear",
    "None",
)
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")

Point = tuple[float, float]  # (latitude, longitude), WGS 84 degrees
Polygon = tuple[Point, ...]  # closed: the first point is repeated as the last
Circle = tuple[float, float, float]  # (latitude, longitude, radius in km)
Geocode = tuple[str, str]  # (valueName, value), e.g. ("MA_DVHC", "22")


class CapError(ValueError):
    """A CAP document Loa refuses, with a plain English sentence naming the element."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class CapReference:
    """One earlier alert an Update, Cancel or Ack names in <references>."""

    sender: str
    identifier: str
    sent: datetime


@dataclass(frozen=True)
class CapResource:
    """A <resource>: a file that goes with the alert (audio, image, document)."""

    description: str
    mime_type: str
    uri: str | None = None
    size: int | None = None
    digest: str | None = None


@dataclass(frozen=True)
class CapArea:
    """An <area>: a description and any polygons, circles and geocodes."""

    area_desc: str
    polygons: tuple[Polygon, ...] = ()
    circles: tuple[Circle, ...] = ()
    geocodes: tuple[Geocode, ...] = ()


@dataclass(frozen=True)
class CapInfo:
    """An <info> block: what happens, how urgent, in one language, where."""

    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    language: str = "en-US"
    response_types: tuple[str, ...] = ()
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    resources: tuple[CapResource, ...] = ()
    areas: tuple[CapArea, ...] = ()


@dataclass(frozen=True)
class CapAlert:
    """A whole <alert>; times are timezone-aware."""

    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    scope: str
    restriction: str | None = None
    addresses: str | None = None
    note: str | None = None
    references: tuple[CapReference, ...] = ()
    infos: tuple[CapInfo, ...] = ()
