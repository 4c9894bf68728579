"""Which relay parts are due: the planner's specs expanded around now, one per session id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import ProgrammeSpec, expand_programme
from schedules.model import RelayPart
from server.programmes.items import RelayTiming
from server.programmes.models import PLANNED, Programme
from server.programmes.validation import specs_of

LOOKAHEAD_S = 15.0
# The source is opened and the publisher started this long before the first frame is due,
# so the stream is connected and flowing when the relay's window begins.
LEAD_S = 1.5
MAX_DELAY_S = 10.0  # RelaySpec.playout_delay_ms's upper bound


def relay_programmes(db: Session, *, timing: RelayTiming) -> list[ProgrammeSpec]:
    """The planner's specs (specs_of, the planner's timing) of planned programmes with relays.

    The same conversion as the planner's, so session ids and delays match the documents.
    """
    rows = db.scalars(
        select(Programme).where(Programme.status.in_(PLANNED), Programme.relays.any())
    )
    return [spec for spec in specs_of(rows, timing=timing) if spec.relays]


@dataclass(frozen=True)
class PlannedRelay:
    """One relay part of one playback: its session, zones and window (server clock)."""

    part: RelayPart
    programme_id: int
    item_id: str
    org_unit_id: int | None
    zone_ids: tuple[int, ...]
    heard_start: datetime
    heard_end: datetime

    @property
    def session_id(self) -> str:
        """The live session id of the devices' schedule documents."""
        return self.part.session_id

    @property
    def delay_s(self) -> float:
        """The playout delay the devices apply to this relay's frames."""
        return self.part.playout_delay_ms / 1000

    @property
    def capture_start(self) -> float:
        """Capture time (Unix s) of the first sample heard."""
        return self.heard_start.timestamp() - self.delay_s

    @property
    def capture_end(self) -> float:
        """Capture time (Unix s) just after the last sample heard."""
        return self.heard_end.timestamp() - self.delay_s

    @property
    def open_at(self) -> float:
        """When to open the source and start the publisher."""
        return self.capture_start - LEAD_S


def planned_relays(
    specs: Sequence[ProgrammeSpec], *, now: datetime, lookahead_s: float = LOOKAHEAD_S
) -> list[PlannedRelay]:
    """Relay parts whose publisher must run within `lookahead_s` and whose window is not over."""
    horizon = now.timestamp() + lookahead_s
    found: list[PlannedRelay] = []
    for spec in specs:
        if not spec.relays:
            continue
        window_end = now + timedelta(seconds=lookahead_s + MAX_DELAY_S + LEAD_S)
        for item in expand_programme(spec, window_start=now, window_end=window_end):
            for part in item.parts():
                if part.relay is None:
                    continue
                start = item.start + timedelta(seconds=part.offset_s)
                plan = PlannedRelay(
                    part=part.relay,
                    programme_id=spec.id,
                    item_id=item.item_id,
                    org_unit_id=spec.org_unit_id,
                    zone_ids=spec.zone_ids,
                    heard_start=start,
                    heard_end=start + timedelta(seconds=part.duration_s),
                )
                if plan.open_at <= horizon and plan.capture_end > now.timestamp():
                    found.append(plan)
    return found
