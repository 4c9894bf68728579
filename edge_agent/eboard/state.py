"""What an e-board shows at one instant: pure, from the held schedule and the player's reports.

The player is the source of truth for "now": an item counts as playing from the instant its
first sample is heard until its outcome, so the board and the horns agree (an item that could
not play, e.g. its clip is missing, is never shown as playing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from schedules import PlaybackItem, Priority, ScheduleDocument
from schedules.tz import local_tz

LIVE_EMERGENCY_TITLE = "PHÁT TRỰC TIẾP KHẨN CẤP"
LIVE_EMERGENCY_TEXT = "Đề nghị bà con chú ý lắng nghe loa."
UNKNOWN_UNIT = "Bảng tin điện tử"


@dataclass(frozen=True)
class Entry:
    """One programme occurrence as the board lists it."""

    item_id: str
    title: str
    text: str
    start: str  # local wall time, HH:MM
    mark: str  # "done", "now", "next" or ""
    emergency: bool


@dataclass(frozen=True)
class Banner:
    """The full-screen emergency banner."""

    title: str
    text: str


@dataclass(frozen=True)
class BoardState:
    """Everything the board page renders; equal states render the same page."""

    unit_name: str
    now: Entry | None
    next: Entry | None
    today: tuple[Entry, ...]
    emergency: Banner | None
    link_up: bool
    schedule_version: int | None
    server_time: float

    def content(self) -> tuple[Any, ...]:
        """The state without the instant it was computed at (what a change is judged by)."""
        return (
            self.unit_name,
            self.now,
            self.next,
            self.today,
            self.emergency,
            self.link_up,
            self.schedule_version,
        )

    def to_json(self) -> dict[str, Any]:
        """The /state.json body."""
        return {
            "unit_name": self.unit_name,
            "now": None if self.now is None else asdict(self.now),
            "next": None if self.next is None else asdict(self.next),
            "today": [asdict(e) for e in self.today],
            "emergency": None if self.emergency is None else asdict(self.emergency),
            "link_up": self.link_up,
            "schedule_version": self.schedule_version,
            "server_time": self.server_time,
        }


def local_hhmm(instant: datetime) -> str:
    """HH:MM of an instant in the deployment's time zone."""
    return instant.astimezone(local_tz()).strftime("%H:%M")


def _entry(doc: ScheduleDocument, item: PlaybackItem, mark: str) -> Entry:
    shown = doc.display_text(item.programme_id)
    title = shown.title if shown is not None else f"Chương trình số {item.programme_id}"
    return Entry(
        item_id=item.item_id,
        title=title,
        text="" if shown is None else shown.text,
        start=local_hhmm(item.start),
        mark=mark,
        emergency=item.priority is Priority.EMERGENCY,
    )


def board_state(
    *,
    document: ScheduleDocument | None,
    server_time: float,
    on_air: PlaybackItem | None,
    live_emergency: bool = False,
    link_up: bool = False,
) -> BoardState:
    """The board at server_time, with `on_air` the item the player reports heard now."""
    now_dt = datetime.fromtimestamp(server_time, UTC)
    if document is None:
        return BoardState(
            unit_name=UNKNOWN_UNIT,
            now=None,
            next=None,
            today=(),
            emergency=_live_banner() if live_emergency else None,
            link_up=link_up,
            schedule_version=None,
            server_time=server_time,
        )
    on_air_id = None if on_air is None else on_air.item_id
    upcoming = next(
        (i for i in document.items if i.start > now_dt and i.item_id != on_air_id), None
    )
    next_id = None if upcoming is None else upcoming.item_id
    today_date = now_dt.astimezone(local_tz()).date()

    def mark(item: PlaybackItem) -> str:
        if item.item_id == on_air_id:
            return "now"
        if item.item_id == next_id:
            return "next"
        return "done" if item.end <= now_dt else ""

    today = tuple(
        _entry(document, i, mark(i))
        for i in document.items
        if i.start.astimezone(local_tz()).date() == today_date
    )
    now_entry = None if on_air is None else _entry(document, on_air, "now")
    banner = None
    if on_air is not None and on_air.priority is Priority.EMERGENCY:
        assert now_entry is not None
        banner = Banner(title=now_entry.title, text=now_entry.text)
    elif live_emergency:
        banner = _live_banner()
    return BoardState(
        unit_name=UNKNOWN_UNIT if document.display is None else document.display.unit_name,
        now=now_entry,
        next=None if upcoming is None else _entry(document, upcoming, "next"),
        today=today,
        emergency=banner,
        link_up=link_up,
        schedule_version=document.version,
        server_time=server_time,
    )


def _live_banner() -> Banner:
    return Banner(title=LIVE_EMERGENCY_TITLE, text=LIVE_EMERGENCY_TEXT)
