"""Planning-time conflicts: same-priority programmes overlapping on a shared zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from schedules.expand import expand_programme
from schedules.model import PlaybackItem, ProgrammeSpec
from schedules.priority import Priority


class Conflict(BaseModel):
    """Another programme that would collide with the candidate, and where and when first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    other_programme_id: int
    other_title: str
    priority: Priority
    zone_ids: tuple[int, ...]
    first_overlap_start: datetime
    first_overlap_end: datetime

    @property
    def zone_id(self) -> int:
        """The lowest-numbered shared zone (there is always at least one)."""
        return self.zone_ids[0]

    def describe(self) -> str:
        """One plain English sentence for the operator."""
        zones = ", ".join(str(zone) for zone in self.zone_ids)
        return (
            f"overlaps programme {self.other_programme_id} '{self.other_title}' "
            f"({self.priority} priority) in zone(s) {zones} from "
            f"{self.first_overlap_start:%Y-%m-%d %H:%M:%S} UTC"
        )


def _first_overlap(
    ours: Sequence[PlaybackItem], theirs: Sequence[PlaybackItem]
) -> tuple[datetime, datetime] | None:
    """Earliest overlap of two start-sorted item lists (half-open, so touching is fine)."""
    i = j = 0
    while i < len(ours) and j < len(theirs):
        a, b = ours[i], theirs[j]
        start, end = max(a.start, b.start), min(a.end, b.end)
        if start < end:
            return start, end
        # Drop whichever ends first: it cannot overlap anything later in the other list.
        if a.end <= b.end:
            i += 1
        else:
            j += 1
    return None


def find_conflicts(
    *,
    candidate: ProgrammeSpec,
    others: Sequence[ProgrammeSpec],
    window_start: datetime,
    window_end: datetime,
) -> list[Conflict]:
    """Same-priority programmes sharing a zone whose playbacks overlap the candidate's.

    Different priorities never conflict: the higher one preempts at play time. A programme
    with the candidate's id is skipped (it is the stored version being edited).
    """
    ours = expand_programme(candidate, window_start=window_start, window_end=window_end)
    if not ours:
        return []
    conflicts: list[Conflict] = []
    for other in others:
        if other.id == candidate.id or other.priority != candidate.priority:
            continue
        shared = tuple(sorted(set(candidate.zone_ids) & set(other.zone_ids)))
        if not shared:
            continue
        theirs = expand_programme(other, window_start=window_start, window_end=window_end)
        overlap = _first_overlap(ours, theirs)
        if overlap is not None:
            conflicts.append(
                Conflict(
                    other_programme_id=other.id,
                    other_title=other.title,
                    priority=other.priority,
                    zone_ids=shared,
                    first_overlap_start=overlap[0],
                    first_overlap_end=overlap[1],
                )
            )
    return sorted(conflicts, key=lambda c: (c.first_overlap_start, c.other_programme_id))
