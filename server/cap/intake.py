"""CAP alerts in: one posted alert becomes, updates or cancels a bulletin (blocking: a thread).

The alert is read by server.cap.parse (defusedxml), mapped to a BulletinCreate and handed to
the bulletin core, which checks the sender's level and reach and delivers it (an emergency
plays at once). The audio is ready before: the alert's audio resource, else its text read by
TTS here, so that the bulletin's start is taken after the slow part. Every accepted message
is a CapMessage row, so a repeat of (sender, identifier) answers with what the first made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.bulletins import service as bulletins
from server.bulletins.models import APPROVED, EMERGENCY, SUBMITTED, Bulletin
from server.bulletins.schemas import BulletinCreate
from server.cap import resource
from server.cap.alert import CapAlert, CapError, CapInfo
from server.cap.geo import area_contains
from server.cap.level import alert_level, text_of
from server.cap.models import CapMessage
from server.cap.parse import parse_alert
from server.clips.ingest import ClipMeta, ingest_file, speak
from server.clips.models import Clip
from server.clips.schemas import TtsRequest
from server.clips.storage import ClipStorage, sha256_file
from server.devices.models import Device
from server.domain import DomainError
from server.live.urlguard import AllowList, Resolver, system_resolve
from server.orgs.models import OrgUnit
from server.settings import ServerSettings
from server.sources.service import allows_level, limits_for

# Statuses that never reach a loudspeaker (no test zone yet): recorded and audited only.
LOG_ONLY_STATUSES = ("Test", "Exercise", "System", "Draft")
MAX_TARGETS = 1000  # BulletinCreate's bound on target lists
ID_CHARS = 255  # CapMessage.sender and .identifier
# An emergency starts this long after it is sent: an agent fails an item whose clip has not
# arrived at its start, and the clip was made a moment ago (its fan-out takes about 1 s).
CLIP_LEAD = timedelta(seconds=2)


@dataclass
class Receipt:
    """What one posted message did."""

    message: CapMessage
    bulletin: Bulletin | None
    repeat: bool = False
    logged_only: bool = False
    cancelled: list[int] = field(default_factory=list)


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
    earlier = db.scalar(
        select(CapMessage).where(
            CapMessage.sender == alert.sender, CapMessage.identifier == alert.identifier
        )
    )
    if earlier is not None:
        return _repeat(db, actor, earlier)
    receipt = Receipt(message=_message(db, actor, alert, data, now), bulletin=None)
    if alert.status in LOG_ONLY_STATUSES or alert.msg_type in ("Ack", "Error"):
        receipt.logged_only = True
    elif alert.msg_type == "Cancel":
        receipt.cancelled = _cancel_referenced(db, actor, alert, now, required=True)
        receipt.message.bulletin_id = receipt.cancelled[0]
        receipt.bulletin = db.get(Bulletin, receipt.cancelled[0])
    else:  # Alert, or an Update that replaces what it references
        fields = _bulletin_fields(db, actor, alert, settings, now, resolve)
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


def _bulletin_fields(
    db: Session,
    actor: Actor,
    alert: CapAlert,
    settings: ServerSettings,
    now: datetime,
    resolve: Resolver,
) -> BulletinCreate:
    """The bulletin an Alert or Update asks for; 403/422 before anything is fetched or made."""
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
    codes, unit_ids = _targets(db, actor, alert)
    text = _spoken(text_of(info), settings.tts_max_chars)
    clip_ids = _audio(db, actor, info, settings, resolve) or [
        _speak(db, actor, info, text, settings)
    ]
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


def _audio(
    db: Session, actor: Actor, info: CapInfo, settings: ServerSettings, resolve: Resolver
) -> list[int]:
    """The clip made from the alert's audio resource; none (TTS of the text) without one."""
    found = resource.audio_resource(info.resources)
    if found is None:
        return []
    storage = ClipStorage(settings.data_dir / "clips")
    dest = storage.temp_path(".cap")
    try:
        sha = resource.fetch(
            found,
            allow=AllowList.parse(settings.cap_resource_allowed_hosts),
            dest=dest,
            max_bytes=settings.clip_max_bytes,
            resolve=resolve,
        )
        meta = ClipMeta(
            title=(info.headline or info.event)[:300],
            language=info.language[:16],
            notes=(found.description or "")[:2000],
            source="cap",
            org_unit_id=actor.user.org_unit_id,
            user_id=actor.user.id,
        )
        clip, created = ingest_file(
            db,
            storage=storage,
            settings=settings,
            src=dest,
            original_sha256=sha,
            filename=(found.uri or "").rsplit("/", 1)[-1][:100],
            meta=meta,
        )
    finally:
        dest.unlink(missing_ok=True)
    _audit_clip(db, actor, clip, created, uri=found.uri or "")
    return [clip.id]


def _speak(db: Session, actor: Actor, info: CapInfo, text: str, settings: ServerSettings) -> int:
    """The alert's text read by TTS into a clip of the caller's unit (as the core would)."""
    storage = ClipStorage(settings.data_dir / "clips")
    wav = speak(storage=storage, settings=settings, req=TtsRequest(text=text))
    meta = ClipMeta(
        title=(info.headline or info.event)[:300],
        notes=text[:2000],
        source="tts",
        org_unit_id=actor.user.org_unit_id,
        user_id=actor.user.id,
    )
    clip, created = ingest_file(
        db,
        storage=storage,
        settings=settings,
        src=wav,
        original_sha256=sha256_file(wav),
        filename="tts.wav",
        meta=meta,
    )
    _audit_clip(db, actor, clip, created, uri="")
    return clip.id


def _audit_clip(db: Session, actor: Actor, clip: Clip, created: bool, *, uri: str) -> None:
    if created:
        audit.record(
            db,
            actor=actor,
            action="clip.create",
            object_type="clip",
            object_id=clip.id,
            org_unit_id=clip.org_unit_id,
            summary=clip.title,
            details={"source": clip.source, "sha256": clip.sha256, "uri": uri[:500]},
        )
