"""CAP Test and Exercise alerts on the admin's test zone (LOA_CAP_TEST_ZONE_ID), never public.

Unset, they are only recorded (intake.LOG_ONLY_STATUSES). Set, such an alert becomes one
programme on that zone alone, approved at once, its title and its audio marked as a test,
so the whole path (levels, audio, TTS, the agents) can be tried without a citizen hearing it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.audit import service as audit
from server.domain import DomainError
from server.events.outbox import emit
from server.events.types import ReplanNeeded
from server.orgs.models import Zone
from server.programmes.models import (
    APPROVED,
    DRAFT,
    Programme,
    ProgrammeClip,
    ProgrammeTransition,
)
from server.programmes.validation import display_text_of, to_spec
from server.programmes.workflow import record

log = logging.getLogger(__name__)
TEST_STATUSES = ("Test", "Exercise")
MARKS = {"Test": "THỬ NGHIỆM", "Exercise": "DIỄN TẬP"}
# Not urgent: time for the clip to reach the zone's devices before the item starts.
TEST_LEAD = timedelta(seconds=5)


def spoken_mark(status: str) -> str:
    """The sentence said before a test's own text, so nobody takes it for a real alert."""
    return f"Đây là tin {MARKS[status].lower()}, không phải cảnh báo thật."


def test_zone(db: Session, zone_id: int | None) -> Zone | None:
    """The configured test zone; None (log only) when unset or gone, the latter logged."""
    if zone_id is None:
        return None
    zone = db.get(Zone, zone_id)
    if zone is None:
        log.warning(
            "LOA_CAP_TEST_ZONE_ID=%s names no zone: CAP test alerts are only logged", zone_id
        )
    return zone


def play(
    db: Session,
    *,
    actor: Actor,
    zone: Zone,
    status: str,
    identifier: str,
    title: str,
    level: str,
    clip_ids: list[int],
    valid_until: datetime,
    now: datetime,
    text: str = "",
) -> Programme:
    """One programme on the test zone only, approved at once, marked as a test.

    text: the alert's text, for e-boards (marked too); none: the marked title.
    """
    start = (now + TEST_LEAD).replace(microsecond=0)
    if start >= valid_until:
        raise DomainError(422, "The test alert expires before it could be played.")
    mark = MARKS[status]
    marked_title = f"[{mark}] {title}"[:300]
    programme = Programme(
        title=marked_title,
        display_text=display_text_of(f"[{mark}] {text.strip()}" if text.strip() else marked_title),
        description=f"CAP {status} {identifier}: chỉ phát ở vùng thử nghiệm"[:2000],
        priority=level,
        status=DRAFT,
        start=start,
        valid_until=valid_until,
        org_unit_id=zone.org_unit_id,
        created_by=actor.user.id,
        created_at=now,
        updated_at=now,
    )
    programme.clips = [ProgrammeClip(position=i, clip_id=c) for i, c in enumerate(clip_ids)]
    programme.zones = [zone]
    db.add(programme)
    db.flush()
    to_spec(programme)
    db.add(
        ProgrammeTransition(
            programme_id=programme.id, from_status=None, to_status=DRAFT, user_id=actor.user.id,
            at=now, note=f"CAP {status} {identifier}"[:1000],
        )
    )  # fmt: skip
    record(
        db, programme=programme, to=APPROVED, user_id=actor.user.id, now=now,
        note="CAP test alert: the test zone only (LOA_CAP_TEST_ZONE_ID)",
    )  # fmt: skip
    audit.record(
        db,
        actor=actor,
        action="cap.test_play",
        object_type="programme",
        object_id=programme.id,
        org_unit_id=zone.org_unit_id,
        summary=programme.title,
        details={"identifier": identifier, "status": status, "zone_id": zone.id, "level": level},
        at=now,
    )
    emit(db, ReplanNeeded(reason=f"CAP {status} alert on test zone {zone.id}"))
    return programme
