"""Pure scheduling domain: programmes, recurrence, expansion, conflicts, play-time priority."""

from schedules.arbiter import (
    DEFAULT_SLOT_GRACE,
    Action,
    ActivePlayback,
    Decision,
    ResumeDecision,
    Suspended,
    after_end,
    decide,
    fits_slot,
    latest_start,
    rejoin_position,
    slot_end,
)
from schedules.conflicts import Conflict, find_conflicts
from schedules.expand import (
    ScheduleCompiler,
    clip_manifest,
    compile_device_schedule,
    expand,
    expand_programme,
)
from schedules.model import (
    ClipRef,
    PlaybackItem,
    ProgrammeSpec,
    ScheduleDocument,
    playback_item_id,
    total_duration,
)
from schedules.priority import Priority
from schedules.recurrence import (
    PRESETS,
    RecurrencePreset,
    normalise_rrule,
    occurrences,
    validate_rrule,
)
from schedules.tz import LOCAL_TZ_NAME, as_utc, local_tz, to_local_wall, wall_to_utc

__all__ = [
    "DEFAULT_SLOT_GRACE",
    "LOCAL_TZ_NAME",
    "PRESETS",
    "Action",
    "ActivePlayback",
    "ClipRef",
    "Conflict",
    "Decision",
    "PlaybackItem",
    "Priority",
    "ProgrammeSpec",
    "RecurrencePreset",
    "ResumeDecision",
    "ScheduleCompiler",
    "ScheduleDocument",
    "Suspended",
    "after_end",
    "as_utc",
    "clip_manifest",
    "compile_device_schedule",
    "decide",
    "expand",
    "expand_programme",
    "find_conflicts",
    "fits_slot",
    "latest_start",
    "local_tz",
    "normalise_rrule",
    "occurrences",
    "playback_item_id",
    "rejoin_position",
    "slot_end",
    "to_local_wall",
    "total_duration",
    "validate_rrule",
    "wall_to_utc",
]
