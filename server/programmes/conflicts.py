"""Same-priority overlaps on a shared zone, found over a planning horizon."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import Conflict, ProgrammeSpec, find_conflicts, to_local_wall
from server.orgs.models import Zone
from server.programmes.models import ACTIVE, APPROVED, SUBMITTED, Programme, programme_zones
from server.programmes.validation import ProgrammeError, specs_of
from server.settings import ServerSettings

# A submitted programme is checked against everything that may still go live ...
COMPETING_AT_SUBMIT = (SUBMITTED, APPROVED, ACTIVE)
# ... an approval only against what is live already (two rival submissions cannot both pass).
COMPETING_AT_APPROVAL = (APPROVED, ACTIVE)


def conflict_days(settings: ServerSettings) -> int:
    """How far ahead conflicts are searched (LOA_CONFLICT_HORIZON_DAYS, default 60)."""
    return settings.conflict_horizon_days


@dataclass(frozen=True)
class ConflictFinding:
    """A conflict with the other programme's status and a sentence for the operator."""

    conflict: Conflict
    other_status: str
    message: str


def conflict_window(
    spec: ProgrammeSpec, *, now: datetime, horizon_days: int
) -> tuple[datetime, datetime]:
    """The span searched for conflicts: `horizon_days` from now, or from the start of validity."""
    horizon = timedelta(days=horizon_days)
    end = now + horizon
    if spec.start is not None:
        end = max(end, spec.start + spec.duration + timedelta(seconds=1))
    if spec.valid_from is not None:
        end = max(end, spec.valid_from + horizon)
    return now, end


def _describe(conflict: Conflict, status: str, zone_names: dict[int, str]) -> str:
    zone = conflict.zone_id
    local = to_local_wall(conflict.first_overlap_start)
    return (
        f"Conflicts with programme {conflict.other_programme_id} '{conflict.other_title}' "
        f"({status}, {conflict.priority} priority) in zone {zone} '{zone_names.get(zone, '?')}' "
        f"at {local:%Y-%m-%d %H:%M} Asia/Ho_Chi_Minh "
        f"({conflict.first_overlap_start:%Y-%m-%d %H:%M} UTC)."
    )


def find_programme_conflicts(
    db: Session,
    *,
    spec: ProgrammeSpec,
    now: datetime,
    horizon_days: int,
    statuses: Sequence[str] = COMPETING_AT_SUBMIT,
) -> tuple[tuple[datetime, datetime], list[ConflictFinding]]:
    """Same-priority programmes in `statuses` overlapping the candidate on a shared zone."""
    window = conflict_window(spec, now=now, horizon_days=horizon_days)
    query = (
        select(Programme)
        .where(
            Programme.status.in_(statuses),
            Programme.priority == spec.priority.value,
            Programme.id != spec.id,
            Programme.id.in_(
                select(programme_zones.c.programme_id).where(
                    programme_zones.c.zone_id.in_(spec.zone_ids)
                )
            ),
        )
        .order_by(Programme.id)
    )
    others = list(db.scalars(query))
    status_of = {p.id: p.status for p in others}
    found = find_conflicts(
        candidate=spec, others=specs_of(others), window_start=window[0], window_end=window[1]
    )
    names = {z.id: z.name for z in db.scalars(select(Zone).where(Zone.id.in_(spec.zone_ids)))}
    return window, [
        ConflictFinding(
            c, status_of[c.other_programme_id], _describe(c, status_of[c.other_programme_id], names)
        )
        for c in found
    ]


def refuse_conflicts(
    db: Session, *, spec: ProgrammeSpec, now: datetime, horizon_days: int, statuses: Sequence[str]
) -> None:
    """Raise 409 naming the first conflicting programme, zone and time, if there is one."""
    _window, findings = find_programme_conflicts(
        db, spec=spec, now=now, horizon_days=horizon_days, statuses=statuses
    )
    if findings:
        more = f" ({len(findings) - 1} more conflict(s) besides.)" if len(findings) > 1 else ""
        raise ProgrammeError(
            409,
            f"{findings[0].message}{more} Two programmes of the same priority must not overlap "
            "in a zone: move one of them, or change its zones or priority.",
        )
