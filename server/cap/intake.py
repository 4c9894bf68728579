"""CAP alerts in: one posted alert becomes, updates or cancels a bulletin (blocking: a thread).

The alert is read by server.cap.parse (defusedxml), mapped to a BulletinCreate and handed to
the bulletin core, which checks the sender's level and reach and delivers it (an emergency
plays at once). The audio is ready before: the alert's audio resource, else its text read by
TTS here, so that the bulletin's start is taken after the slow part. Every accepted message
is a CapMessage row, so a repeat of (sender, identifier) answers with what the first made,
also when both arrive at once (server.cap.once). Test and Exercise alerts play on the test
zone when the admin set one (server.cap.testzone), else they are only recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.bulletins import service as bulletins
from server.bulletins.models import APPROVED, EMERGENCY, SUBMITTED, Bulletin
from server.bulletins.schemas import BulletinCreate
from server.cap import once, testzone
from server.cap.alert import CapAlert, CapError, CapInfo
from server.cap.audio import Fetched, clip_of, fetch_audio
from server.cap.geo import area_contains
from server.cap.level import alert_level, text_of
from server.cap.models import CapMessage
from server.cap.parse import parse_alert
from server.clips.ingest import ClipError
from server.clips.service import speak_into_clip
from server.devices.models import Device
from server.domain import DomainError
from server.live.urlguard import Resolver, system_resolve
from server.orgs.models import OrgUnit, Zone
from server.settings import ServerSettings
from server.sources.service import allows_level, limits_for

# Statuses that never reach the public: recorded and audited only, except that Test and
# Exercise play on the test zone when LOA_CAP_TEST_ZONE_ID names one (server.cap.testzone).
LOG_ONLY_STATUSES = ("Test", "Exercise", "System", "Draft")
PLAYED = ("Alert", "Update")  # message types that carry something to broadcast
MAX_TARGETS = 1000  # BulletinCreate's bound on target lists
ID_CHARS = 255  # CapMessage.sender and .identifier
# An emergency starts the moment it is sent out, with no lead for its clip's fan-out: an
# agent holds an emergency item whose clip is still arriving and starts it when it is ready.
CLIP_LEAD = timedelta(0)


@dataclass
class Receipt:
    """What one posted message did."""

    message: CapMessage
    bulletin: Bulletin | None
    repeat: bool = False
    logged_only: bool = False
    cancelled: list[int] = field(default_factory=list)
    test_programme_id: int | None = None  # a Test/Exercise alert played on the test zone


def receive(
    db: Session,
    *,
    actor: Actor,
    data: bytes,
    settings: ServerSettings,
    clock: Callable[[], datetime],
    resolve: Resolver = system_resolve,
) -> Receipt:
    """Take in one CAP 1.2 document: 422 with the reason when it is refused, nothing made.

    `clock` is read again once the audio is ready: an emergency starts when it is sent out,
    not when the request arrived (TTS and a fetch take seconds; a short alert planned from
    the earlier instant would be over before any device got it).
    """
    now = clock()
    try:
        alert = parse_alert(data, max_bytes=settings.cap_max_bytes)
    except CapError as exc:
        raise DomainError(422, exc.detail) from None
    if len(alert.sender) > ID_CHARS or len(alert.identifier) > ID_CHARS:
        raise DomainError(422, f"The <sender> and <identifier> must be at most {ID_CHARS} long.")
    earlier = _earlier(db, alert)
    if earlier is not None:
        return _repeat(db, actor, earlier)
    zone = _test_zone(db, alert, settings)
    # The network fetch comes before any write (and so before SQLite's write lock).
    fetched = _prefetch(db, actor, alert, zone, settings, now, resolve)
    try:
        once.take_write_lock(db)
        earlier = _earlier(db, alert)  # SQLite: the lock has serialised a racing twin
        if earlier is not None:
            return _repeat(db, actor, earlier)
        with once.savepoint(db):
            return _take_in(db, actor, alert, zone, data, settings, clock, now, fetched)
    except (IntegrityError, ClipError) as exc:
        # PostgreSQL: a twin committed the same (sender, identifier), or the same clip,
        # first; this one's writes are rolled back to the savepoint. Answer as a repeat.
        if isinstance(exc, ClipError) and exc.status != 409:
            raise
        earlier = _earlier(db, alert)
        if earlier is None:
            raise
        return _repeat(db, actor, earlier)
    finally:
        if fetched is not None:
            fetched.path.unlink(missing_ok=True)


def _earlier(db: Session, alert: CapAlert) -> CapMessage | None:
    """The message taken in before with the same (sender, identifier)."""
    return db.scalar(
        select(CapMessage).where(
            CapMessage.sender == alert.sender, CapMessage.identifier == alert.identifier
        )
    )


def _prefetch(
    db: Session,
    actor: Actor,
    alert: CapAlert,
    zone: Zone | None,
    settings: ServerSettings,
    now: datetime,
    resolve: Resolver,
) -> Fetched | None:
    """The audio resource of an alert that will play, once its checks passed; else None."""
    if zone is None and (alert.status in LOG_ONLY_STATUSES or alert.msg_type not in PLAYED):
        return None
    _level_and_expiry(db, actor, alert, now)
    if zone is None:
        _targets(db, actor, alert)
    return fetch_audio(_pick_info(alert), settings=settings, resolve=resolve)


def _test_zone(db: Session, alert: CapAlert, settings: ServerSettings) -> Zone | None:
    """The zone a Test/Exercise Alert or Update plays on, if the admin configured one."""
    if alert.status not in testzone.TEST_STATUSES or alert.msg_type not in PLAYED:
        return None
    return testzone.test_zone(db, settings.cap_test_zone_id)


def _take_in(
    db: Session,
    actor: Actor,
    alert: CapAlert,
    zone: Zone | None,
    data: bytes,
    settings: ServerSettings,
    clock: Callable[[], datetime],
    now: datetime,
    fetched: Fetched | None,
) -> Receipt:
    """Everything a new message does; the caller's savepoint undoes it all when it lost a race."""
    receipt = Receipt(message=_message(db, actor, alert, data, now), bulletin=None)
    if zone is not None:
        receipt.test_programme_id = _test_play(db, actor, alert, zone, settings, clock, fetched)
        receipt.logged_only = True  # nothing reached the public
    elif alert.status in LOG_ONLY_STATUSES or alert.msg_type in ("Ack", "Error"):
        receipt.logged_only = True
    elif alert.msg_type == "Cancel":
        receipt.cancelled = _cancel_referenced(db, actor, alert, now, required=True)
        receipt.message.bulletin_id = receipt.cancelled[0]
        receipt.bulletin = reach.load(db, actor, Bulletin, receipt.cancelled[0])
    else:  # Alert, or an Update that replaces what it references
        fields = _bulletin_fields(db, actor, alert, settings, now, fetched)
        now = clock()
        if fields.valid_from is None and fields.level == EMERGENCY:
            fields = fields.model_copy(update={"valid_from": now + CLIP_LEAD})
        if alert.msg_type == "Update":
            receipt.cancelled = _cancel_referenced(db, actor, alert, now, required=False)
        receipt.bulletin = bulletins.create(
            db, actor=actor, fields=fields, now=now, settings=settings
        )
        receipt.message.bulletin_id = receipt.bulletin.id
    db.add(receipt.message)
    db.flush()
    audit.record(
        db,
        actor=actor,
        action="cap.receive",
        object_type="cap_message",
        object_id=receipt.message.id,
        org_unit_id=actor.user.org_unit_id,
        summary=f"{alert.msg_type} {alert.identifier}"[:300],
        details={
            "sender": alert.sender,
            "identifier": alert.identifier,
            "status": alert.status,
            "msg_type": alert.msg_type,
            "sha256": receipt.message.sha256,
            "bulletin_id": receipt.message.bulletin_id,
            "cancelled": receipt.cancelled,
            "logged_only": receipt.logged_only,
            "test_programme_id": receipt.test_programme_id,
        },
    )
    return receipt


def _message(db: Session, actor: Actor, alert: CapAlert, data: bytes, now: datetime) -> CapMessage:
    """The row that records the message and who posted it."""
    limits = limits_for(db, actor=actor)
    return CapMessage(
        sender=alert.sender,
        identifier=alert.identifier,
        msg_type=alert.msg_type,
        status=alert.status,
        source_id=limits.source_id if limits is not None and limits.source_id else None,
        user_id=actor.user.id,
        sha256=hashlib.sha256(data).hexdigest(),
        received_at=now,
    )


def _repeat(db: Session, actor: Actor, earlier: CapMessage) -> Receipt:
    """The same alert again: what the first one made, if the caller may see it."""
    bulletin = db.get(Bulletin, earlier.bulletin_id) if earlier.bulletin_id else None
    same_poster = earlier.user_id == actor.user.id
    if not same_poster and (bulletin is None or not actor.reaches(bulletin.org_unit_id)):
        # Another poster's alert: say nothing about what it made.
        raise DomainError(
            409, "An alert with this sender and identifier was already received from elsewhere."
        )
    return Receipt(message=earlier, bulletin=bulletin, repeat=True, logged_only=bulletin is None)


def _cancel_referenced(
    db: Session, actor: Actor, alert: CapAlert, now: datetime, *, required: bool
) -> list[int]:
    """Withdraw the bulletins the referenced alerts made (those still live); their ids."""
    found: list[int] = []
    for ref in alert.references:
        rows = db.scalars(
            select(CapMessage.bulletin_id).where(
                CapMessage.sender == ref.sender,
                CapMessage.identifier == ref.identifier,
                CapMessage.bulletin_id.is_not(None),
            )
        )
        found += [b for b in rows if b is not None and b not in found]
    # A bulletin outside the caller's reach answers like one never received.
    mine = [b for b in found if (row := db.get(Bulletin, b)) and actor.reaches(row.org_unit_id)]
    if required and not mine:
        names = ", ".join(r.identifier for r in alert.references)
        raise DomainError(422, f"The alert to cancel ({names[:200]}) was never received here.")
    live = [b for b in mine if (row := db.get(Bulletin, b)) and row.status in (SUBMITTED, APPROVED)]
    for bulletin_id in live:
        bulletins.cancel(db, actor=actor, bulletin_id=bulletin_id, now=now)
    # A Cancel of an alert already withdrawn still names the bulletin it concerns.
    return live if live or not required else mine[:1]


def _pick_info(alert: CapAlert) -> CapInfo:
    """The Vietnamese info when there is one (the loudspeakers speak Vietnamese), else the first."""
    for info in alert.infos:
        if info.language.lower().startswith("vi"):
            return info
    return alert.infos[0]


def _level_and_expiry(
    db: Session, actor: Actor, alert: CapAlert, now: datetime
) -> tuple[str, CapInfo, datetime]:
    """The level (403 above the source's), the info spoken, the end of validity (422)."""
    level = alert_level(alert).value
    limits = limits_for(db, actor=actor)
    if not allows_level(limits, level):
        top = limits.max_level if limits is not None else "?"
        raise DomainError(
            403, f"This alert is {level} (from its urgency and severity); this source may send"
            f" up to {top}.",
        )  # fmt: skip
    info = _pick_info(alert)
    expires = info.expires or min((i.expires for i in alert.infos if i.expires), default=None)
    if expires is None:
        # Loa never plays a bulletin without an end; a guessed one could play past the danger.
        raise DomainError(422, "The alert has no <expires>; Loa needs it as the end of validity.")
    if expires <= now:
        raise DomainError(
            422, f"The alert expired at {expires.isoformat()}; nothing was broadcast."
        )
    return level, info, expires


def _bulletin_fields(
    db: Session,
    actor: Actor,
    alert: CapAlert,
    settings: ServerSettings,
    now: datetime,
    fetched: Fetched | None,
) -> BulletinCreate:
    """The bulletin an Alert or Update asks for; 403/422 before anything is made."""
    level, info, expires = _level_and_expiry(db, actor, alert, now)
    codes, unit_ids = _targets(db, actor, alert)
    text = _spoken(text_of(info), settings.tts_max_chars)
    if fetched is not None:
        clip_ids = [clip_of(db, actor=actor, info=info, settings=settings, fetched=fetched).id]
    else:
        clip_ids = [_speak(db, actor, alert, info, text, settings)]
    effective = info.effective.astimezone(UTC) if info.effective else None
    return BulletinCreate(
        title=(info.headline or info.event)[:300],
        level=level,
        clip_ids=clip_ids,
        text=text,
        valid_from=effective if effective is not None and now < effective < expires else None,
        valid_until=expires.astimezone(UTC),
        target_org_unit_ids=unit_ids,
        target_codes=codes,
    )


def _test_play(
    db: Session,
    actor: Actor,
    alert: CapAlert,
    zone: Zone,
    settings: ServerSettings,
    clock: Callable[[], datetime],
    fetched: Fetched | None,
) -> int:
    """A Test/Exercise alert on the test zone only, its audio led by a spoken test mark."""
    level, info, expires = _level_and_expiry(db, actor, alert, clock())
    mark = testzone.spoken_mark(alert.status)
    if fetched is not None:
        clips = [_speak(db, actor, alert, info, mark, settings)]
        clips.append(clip_of(db, actor=actor, info=info, settings=settings, fetched=fetched).id)
    else:
        text = _spoken(f"{mark} {text_of(info)}", settings.tts_max_chars)
        clips = [_speak(db, actor, alert, info, text, settings)]
    programme = testzone.play(
        db,
        actor=actor,
        zone=zone,
        status=alert.status,
        identifier=alert.identifier,
        title=(info.headline or info.event)[:280],
        level=level,
        clip_ids=clips,
        valid_until=expires.astimezone(UTC),
        now=clock(),  # the audio is ready: its lead counts from now
        text=text_of(info),
    )
    return programme.id


def _spoken(text: str, limit: int) -> str:
    """At most `limit` characters (TTS's and the bulletin's bound), cut at a word."""
    limit = min(limit, 5000)
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(None, 1)[0] + "…"


def _targets(db: Session, actor: Actor, alert: CapAlert) -> tuple[list[str], list[int]]:
    """Org unit codes among the geocodes, and the units of the caller's clusters in the shapes."""
    areas = [a for i in alert.infos for a in i.areas]
    values = sorted({v for a in areas for _, v in a.geocodes})
    codes: list[str] = []
    if values:
        codes = list(
            db.scalars(
                select(OrgUnit.code).where(
                    OrgUnit.code.in_(values), reach.reachable(actor, OrgUnit)
                )
            )
        )
    unit_ids: set[int] = set()
    shaped = [a for a in areas if a.polygons or a.circles]
    if shaped:
        devices = db.execute(
            select(Device.org_unit_id, Device.latitude, Device.longitude).where(
                reach.reachable(actor, Device),
                Device.latitude.is_not(None),
                Device.longitude.is_not(None),
                Device.revoked_at.is_(None),
            )
        )
        for unit_id, lat, lon in devices:
            if unit_id in unit_ids or lat is None or lon is None:
                continue
            if any(area_contains(a, lat, lon) for a in shaped):
                unit_ids.add(unit_id)
    if not codes and not unit_ids:
        raise DomainError(422, "The alert's area matches no org unit or cluster of yours.")
    if len(codes) > MAX_TARGETS or len(unit_ids) > MAX_TARGETS:
        raise DomainError(422, f"The alert's area matches more than {MAX_TARGETS} org units.")
    return sorted(codes), sorted(unit_ids)


def _speak(
    db: Session, actor: Actor, alert: CapAlert, info: CapInfo, text: str, settings: ServerSettings
) -> int:
    """The text read by TTS into a clip of the caller's unit (as the bulletin core would)."""
    return speak_into_clip(
        db,
        actor=actor,
        settings=settings,
        text=text,
        title=(info.headline or info.event)[:300],
        org_unit_id=actor.user.org_unit_id,
        details={"cap": f"{alert.sender} {alert.identifier}"[:300]},
    ).id
