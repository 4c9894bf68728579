"""What a commune shows the public: its approved, public bulletins and their audio.

One query decides what may be shown (`_shown`); the page, the feed and the audio all go
through it, so nothing that is not approved, public and reaching the commune ever leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.etree import ElementTree as ET

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from server.bulletins.models import (
    APPROVED,
    DECLINED,
    EMERGENCY,
    WITHDRAWN,
    Bulletin,
    BulletinDelivery,
)
from server.clips.models import Clip
from server.orgs.models import OrgUnit

# A bulletin stays on the page this long after its validity ended.
RECENT = timedelta(days=30)
MAX_ITEMS = 50
CODE_MAX = 32  # OrgUnit.code's column width
LEVEL_TEXT = {"normal": "Thông thường", "priority": "Ưu tiên", "emergency": "Khẩn cấp"}


@dataclass(frozen=True)
class PublicItem:
    """One bulletin as the public sees it (no sender, no internal ids but its own)."""

    id: int
    title: str
    level: str
    level_text: str
    text: str
    published: datetime
    valid_from: datetime
    valid_until: datetime
    in_force: bool
    clip: Clip | None


@dataclass(frozen=True)
class Board:
    """A commune's public page: emergencies in force first, then the rest, newest first."""

    unit: OrgUnit
    emergencies: list[PublicItem]
    items: list[PublicItem]

    @property
    def all(self) -> list[PublicItem]:
        """Every item in the order shown (emergencies in force at the top)."""
        return [*self.emergencies, *self.items]


def commune(db: Session, *, code: str) -> OrgUnit | None:
    """The org unit with this administrative code, or None."""
    if len(code) > CODE_MAX or "\x00" in code:  # names no commune (PostgreSQL refuses NUL)
        return None
    return db.scalar(select(OrgUnit).where(OrgUnit.code == code))


def _shown(unit_id: int) -> ColumnElement[bool]:
    """Approved, public, and sent by the unit or delivered to it (a declined delivery: not)."""
    delivered = exists().where(
        BulletinDelivery.bulletin_id == Bulletin.id,
        BulletinDelivery.org_unit_id == unit_id,
        BulletinDelivery.status.not_in((DECLINED, WITHDRAWN)),
    )
    return and_(
        Bulletin.status == APPROVED,
        Bulletin.public.is_(True),
        Bulletin.approved_at.is_not(None),
        or_(Bulletin.org_unit_id == unit_id, delivered),
    )


def _first_clip(db: Session, bulletin: Bulletin) -> Clip | None:
    """The bulletin's first clip, or the clip its text was read into."""
    if bulletin.clips:
        return bulletin.clips[0].clip
    if bulletin.tts_clip_id is not None:
        return db.get(Clip, bulletin.tts_clip_id)
    return None


def _item(db: Session, bulletin: Bulletin, now: datetime) -> PublicItem:
    return PublicItem(
        id=bulletin.id,
        title=bulletin.title,
        level=bulletin.level,
        level_text=LEVEL_TEXT.get(bulletin.level, bulletin.level),
        text=bulletin.text,
        published=bulletin.approved_at or bulletin.created_at,
        valid_from=bulletin.valid_from,
        valid_until=bulletin.valid_until,
        in_force=bulletin.valid_from <= now < bulletin.valid_until,
        clip=_first_clip(db, bulletin),
    )


def board(db: Session, *, unit: OrgUnit, now: datetime) -> Board:
    """The unit's public bulletins: valid now or ended in the last 30 days, at most 50."""
    published = func.coalesce(Bulletin.approved_at, Bulletin.created_at)
    rows = db.scalars(
        select(Bulletin)
        .where(_shown(unit.id), Bulletin.valid_until > now - RECENT)
        .order_by(published.desc(), Bulletin.id.desc())
        .limit(MAX_ITEMS)
    )
    items = [_item(db, b, now) for b in rows]
    urgent = [i for i in items if i.level == EMERGENCY and i.in_force]
    rest = [i for i in items if not (i.level == EMERGENCY and i.in_force)]
    return Board(unit=unit, emergencies=urgent, items=rest)


def audio_clip(db: Session, *, unit: OrgUnit, bulletin_id: int) -> Clip | None:
    """The clip to play for a bulletin the unit shows the public; None for anything else."""
    bulletin = db.scalar(select(Bulletin).where(Bulletin.id == bulletin_id, _shown(unit.id)))
    return None if bulletin is None else _first_clip(db, bulletin)


def rss(
    board: Board,
    *,
    page_url: str,
    audio_url: Callable[[int], str],
    now: datetime,
) -> bytes:
    """The board as an RSS 2.0 document (a podcast: each item's audio as its enclosure)."""
    root = ET.Element("rss", version="2.0")
    channel = ET.SubElement(root, "channel")
    name = board.unit.name
    ET.SubElement(channel, "title").text = f"Bản tin {name}"
    ET.SubElement(channel, "link").text = page_url
    ET.SubElement(channel, "description").text = f"Bản tin công khai của {name} (hệ thống Loa)"
    ET.SubElement(channel, "language").text = "vi"
    newest = max((i.published for i in board.all), default=now)
    ET.SubElement(channel, "lastBuildDate").text = _rfc822(newest)
    for item in board.all:
        entry = ET.SubElement(channel, "item")
        title = f"[{item.level_text}] {item.title}" if item.level != "normal" else item.title
        ET.SubElement(entry, "title").text = title
        ET.SubElement(entry, "link").text = f"{page_url}#tin-{item.id}"
        ET.SubElement(entry, "description").text = item.text or item.title
        ET.SubElement(entry, "pubDate").text = _rfc822(item.published)
        ET.SubElement(entry, "guid", isPermaLink="false").text = f"loa-bulletin-{item.id}"
        if item.clip is not None:
            ET.SubElement(
                entry,
                "enclosure",
                url=audio_url(item.id),
                length=str(item.clip.size_bytes),
                type="audio/ogg",
            )
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _rfc822(value: datetime) -> str:
    """RFC 822 date as RSS wants it, e.g. 'Fri, 04 Dec 2026 05:00:00 GMT'."""
    return format_datetime(value.astimezone(UTC), usegmt=True)
