"""From CAP urgency and severity to the regulation's three levels, and the text to speak."""

from __future__ import annotations

from schedules.priority import Priority
from server.cap.alert import CapAlert, CapInfo


def level_of(info: CapInfo) -> Priority:
    """Immediate with Extreme or Severe is emergency; Expected is priority; the rest normal."""
    if info.urgency == "Immediate" and info.severity in ("Extreme", "Severe"):
        return Priority.EMERGENCY
    if info.urgency == "Expected":
        return Priority.PRIORITY
    return Priority.NORMAL


def alert_level(alert: CapAlert) -> Priority:
    """The highest level over the alert's infos (normal when it has none, as a Cancel may)."""
    return max((level_of(i) for i in alert.infos), key=lambda p: p.rank, default=Priority.NORMAL)


def text_of(info: CapInfo) -> str:
    """Headline, description and instruction as paragraphs for TTS (else the event)."""
    parts = [p.strip() for p in (info.headline, info.description, info.instruction) if p]
    # A headline rarely ends with a full stop; without one TTS runs it into the next sentence.
    spoken = [p if p.endswith(_STOPS) else p + "." for p in parts if p]
    return "\n\n".join(spoken) or info.event


_STOPS = (".", "!", "?", "…", ":", ";")
