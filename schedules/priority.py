"""The three priority levels of the commune-radio regulation."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    """Programme priority; compare with `rank` or `outranks`, never as strings."""

    NORMAL = "normal"
    PRIORITY = "priority"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        """Ordering key: emergency (2) > priority (1) > normal (0)."""
        return _RANKS[self]

    def outranks(self, other: Priority) -> bool:
        """True when this level strictly beats `other` (and so may preempt it)."""
        return self.rank > other.rank


_RANKS: dict[Priority, int] = {
    Priority.NORMAL: 0,
    Priority.PRIORITY: 1,
    Priority.EMERGENCY: 2,
}
