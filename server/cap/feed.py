"""CAP out: Loa's live emergency (optionally priority) bulletins as an Atom feed of CAP alerts.

Public, like the loudspeakers themselves: an entry carries only what the public hears and
sees (title, text, level, validity, the targeted units' names and codes, the sending unit).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from server.bulletins.models import APPROVED, CANCELLED, EMERGENCY, PRIORITY, Bulletin
from server.cap.alert import CapReference
from server.cap.render import CapOut, render_atom_feed
from server.orgs.models import OrgUnit
from server.settings import ServerSettings

FEED_LIMIT = 200
# A withdrawn bulletin stays in the feed this long as a Cancel, so pollers learn it ended.
CANCEL_KEPT = timedelta(hours=24)
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
GEOCODE_NAME = "MA_DVHC"  # mã đơn vị hành chính: the official administrative code


def identifier(settings: ServerSettings, bulletin_id: int) -> str:
    """The CAP identifier Loa gives one bulletin."""
    return f"{settings.cap_sender}.bulletin.{bulletin_id}"


def atom_feed(db: Session, *, settings: ServerSettings, now: datetime, self_link: str) -> bytes:
    """The feed document: live bulletins as Alerts, recently withdrawn ones as Cancels."""
    levels = [EMERGENCY, PRIORITY] if settings.cap_feed_include_priority else [EMERGENCY]
    rows = list(
        db.scalars(
            select(Bulletin)
            .where(
                Bulletin.level.in_(levels),
                Bulletin.approved_at.is_not(None),
                or_(
                    and_(Bulletin.status == APPROVED, Bulletin.valid_until > now),
                    and_(Bulletin.status == CANCELLED, Bulletin.updated_at > now - CANCEL_KEPT),
                ),
            )
            .order_by(Bulletin.updated_at.desc(), Bulletin.id.desc())
            .limit(FEED_LIMIT)
        )
    )
    unit_ids = {t.org_unit_id for b in rows for t in b.targets} | {b.org_unit_id for b in rows}
    units = {u.id: u for u in db.scalars(select(OrgUnit).where(OrgUnit.id.in_(unit_ids)))}
    entries = [_entry(settings, b, units) for b in rows]
    return render_atom_feed(
        feed_id=f"urn:loa:{settings.cap_sender}:cap-feed",
        title="Loa: cảnh báo khẩn cấp (CAP 1.2)",
        updated=max((e.sent for e in entries), default=now).astimezone(LOCAL),
        entries=entries,
        self_link=self_link,
    )


def _entry(settings: ServerSettings, bulletin: Bulletin, units: dict[int, OrgUnit]) -> CapOut:
    """One bulletin as one CAP alert (a Cancel naming the alert when it was withdrawn)."""
    targets = [units[t.org_unit_id] for t in bulletin.targets if t.org_unit_id in units]
    sender_unit = units.get(bulletin.org_unit_id)
    sent = (bulletin.approved_at or bulletin.created_at).astimezone(LOCAL)
    ident = identifier(settings, bulletin.id)
    cancelled = bulletin.status == CANCELLED
    return CapOut(
        identifier=f"{ident}.cancel" if cancelled else ident,
        sender=settings.cap_sender,
        sent=bulletin.updated_at.astimezone(LOCAL) if cancelled else sent,
        msg_type="Cancel" if cancelled else "Alert",
        level=bulletin.level,
        event=bulletin.topic or bulletin.title,
        headline=bulletin.title,
        description=bulletin.text or None,
        expires=bulletin.valid_until.astimezone(LOCAL),
        area_desc=", ".join(u.name for u in targets) or "—",
        geocodes=tuple((GEOCODE_NAME, u.code) for u in targets if u.code),
        references=(CapReference(settings.cap_sender, ident, sent),) if cancelled else (),
        sender_name=sender_unit.name if sender_unit is not None else None,
    )
