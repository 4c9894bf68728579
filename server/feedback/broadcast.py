"""An answer read on the horns: a normal programme of the case's unit, through approval.

The programme never carries the citizen's name or phone: its title names the tracking code and
the category, and the text spoken and shown is the answer with the name and phone removed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import DISPLAY_TEXT_MAX
from server.access import reach
from server.access.actor import Actor
from server.access.policy import PROGRAMMES_APPROVE, PROGRAMMES_CREATE
from server.audit import service as audit
from server.domain import DomainError
from server.events.outbox import emit
from server.events.types import ReplanNeeded
from server.feedback.models import FeedbackCase
from server.orgs.models import Zone
from server.orgs.tree import subtree_ids
from server.programmes import conflicts, items, workflow
from server.programmes.models import Programme
from server.programmes.validation import check_fields
from server.settings import ServerSettings

LEAD = timedelta(minutes=5)  # time for an approver to look, and for devices to fetch the clip
MAX_AHEAD = timedelta(days=30)
MAX_TRIES = 48  # candidate minutes tried past other programmes before giving up
CITIZEN = "người phản ánh"


def title_of(case: FeedbackCase) -> str:
    """'Trả lời phản ánh <code>', with the category when there is one."""
    title = f"Trả lời phản ánh {case.tracking_code}"
    return f"{title} ({case.category_name})"[:300] if case.category_name else title


def _phone_pattern(phone: str) -> re.Pattern[str] | None:
    """The number as written with any spaces, dots or dashes, in 0… or +84… form."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 6:
        return None
    rest = digits[1:] if digits.startswith("0") else digits
    body = r"[\s.\-]*".join(re.escape(d) for d in rest)
    return re.compile(rf"(?:\+?84|0)[\s.\-]*{body}(?!\d)")


def public_text(case: FeedbackCase, text: str) -> str:
    """The answer without the citizen's name and phone (staff may have written them in it)."""
    name = " ".join(case.name.split())
    if len(name) >= 2:
        words = [re.escape(w) for w in name.split()]
        text = re.sub(r"\s+".join(words), CITIZEN, text, flags=re.IGNORECASE)
    pattern = _phone_pattern(case.phone)
    if pattern is not None:
        text = pattern.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, ending at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip() + "…"


def _minute_up(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def _zones(db: Session, actor: Actor, case: FeedbackCase, zone_ids: list[int] | None) -> list[int]:
    """The asked zones (each in reach, else the 422 of a missing one) or all of the unit's."""
    if zone_ids:
        reach.check_ids(db, actor, Zone, zone_ids)
        return sorted(set(zone_ids))
    units = subtree_ids(db, root_id=case.org_unit_id)
    query = select(Zone.id).where(Zone.org_unit_id.in_(units), reach.reachable(actor, Zone))
    found = list(db.scalars(query.order_by(Zone.id)))
    if not found:
        raise DomainError(
            422, "The case's org unit has no zones to broadcast in. / Đơn vị xử lý chưa có "
            "vùng phát nào để phát câu trả lời.",
        )  # fmt: skip
    return found


def _when(at: datetime | None, now: datetime) -> datetime | None:
    """A chosen start, checked: with a time zone, not past, at most 30 days ahead."""
    if at is None:
        return None
    if at.tzinfo is None or at.utcoffset() is None:
        raise DomainError(422, "broadcast_at needs a time zone, e.g. 2031-03-01T17:00:00+07:00.")
    at = at.astimezone(UTC)
    if at < now:
        raise DomainError(422, "broadcast_at is in the past. / Giờ phát đã qua.")
    if at > now + MAX_AHEAD:
        raise DomainError(
            422, "broadcast_at is at most 30 days ahead. / Giờ phát tối đa sau 30 ngày."
        )
    return at


def _free_start(
    db: Session, actor: Actor, fields: dict[str, Any], now: datetime, horizon_days: int
) -> datetime:
    """The first minute from now + 5 min where no same-priority programme shares a zone."""
    start = _minute_up(now + LEAD)
    for _ in range(MAX_TRIES):
        checked = check_fields(db, fields={**fields, "start": start}, user=actor.user, now=now)
        _, found = conflicts.find_programme_conflicts(
            db, spec=checked.spec, now=now, horizon_days=horizon_days
        )
        if not found:
            return start
        latest = max(f.conflict.first_overlap_end for f in found)
        start = _minute_up(max(latest, start + timedelta(minutes=1)))
        if start > now + MAX_AHEAD:
            break
    raise DomainError(
        409, "No free time found for the broadcast; give broadcast_at. / Không tìm được giờ "
        "trống để phát, hãy chọn giờ phát.",
    )  # fmt: skip


def _audit(db: Session, actor: Actor, action: str, programme: Programme, note: str) -> None:
    audit.record(
        db, actor=actor, action=action, object_type="programme", object_id=programme.id,
        org_unit_id=programme.org_unit_id, summary=programme.title,
        details={"status": programme.status, "priority": programme.priority,
                 "zone_ids": sorted(z.id for z in programme.zones), "note": note},
    )  # fmt: skip


def check_request(
    db: Session,
    *,
    actor: Actor,
    case: FeedbackCase,
    zone_ids: list[int] | None,
    at: datetime | None,
    now: datetime,
) -> tuple[list[int], datetime | None]:
    """Everything cheap checked before the answer is spoken: the role, the zones, the time."""
    if not actor.may(PROGRAMMES_CREATE):
        raise DomainError(403, f"Your role ({actor.role}) may not create programmes.")
    return _zones(db, actor, case, zone_ids), _when(at, now)


def broadcast(
    db: Session,
    *,
    actor: Actor,
    case: FeedbackCase,
    text: str,
    zone_ids: list[int],
    at: datetime | None,
    now: datetime,
    settings: ServerSettings | None,
    horizon_days: int,
) -> Programme:
    """The answer as a normal programme: spoken (blocking TTS), submitted, approved if allowed."""
    shown = public_text(case, text)
    title = title_of(case)
    limit = settings.tts_max_chars if settings is not None else DISPLAY_TEXT_MAX
    spoken = items.speak_items(
        db, actor=actor, settings=settings, items=[{"kind": "tts", "text": _cut(shown, limit)}],
        org_unit_id=case.org_unit_id, title=title,
    )  # fmt: skip
    fields: dict[str, Any] = {
        "title": title,
        "description": f"Câu trả lời phản ánh {case.tracking_code}, phát trên loa.",
        "priority": "normal",
        "items": spoken,
        "zone_ids": zone_ids,
        "org_unit_id": case.org_unit_id,
        "display_text": _cut(shown, DISPLAY_TEXT_MAX),
    }
    fields["start"] = at or _free_start(db, actor, fields, now, horizon_days)
    programme = workflow.create_programme(
        db, fields=fields, user=actor.user, now=now, approve_now=False,
        horizon_days=horizon_days, may_run_emergency=False,
    )  # fmt: skip
    programme.display_text = fields["display_text"]  # also where check_fields ignores it
    note = f"answer to feedback case {case.id}"
    _audit(db, actor, "programme.create", programme, note)
    workflow.submit(db, programme=programme, user=actor.user, now=now, horizon_days=horizon_days)
    _audit(db, actor, "programme.submit", programme, note)
    if actor.may(PROGRAMMES_APPROVE) and actor.role in workflow.APPROVER_ROLES:
        workflow.approve(
            db, programme=programme, user=actor.user, now=now, horizon_days=horizon_days,
            note=note,
        )  # fmt: skip
        _audit(db, actor, "programme.approve", programme, note)
        emit(db, ReplanNeeded(reason=f"programme {programme.id} approved ({note})"))
    db.flush()
    return programme
