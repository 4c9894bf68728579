"""API shapes for regular slots and for ordering a commune's priority bulletins."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.bounds import RequestBody

MAX_SLOTS = 12


class SlotIn(RequestBody):
    """One regular slot: a local start time and the ISO weekdays it runs on."""

    model_config = ConfigDict(extra="forbid")

    start_time: str = Field(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="local time Asia/Ho_Chi_Minh, HH:MM, e.g. 05:00",
    )
    weekdays: str = Field(
        default="123456",
        pattern=r"^[1-7]{1,7}$",
        description="ISO weekdays as digits, 1 = Monday … 7 = Sunday; 123456 = Mon–Sat",
    )

    @field_validator("weekdays")
    @classmethod
    def _each_day_once(cls, value: str) -> str:
        if len(set(value)) != len(value):
            raise ValueError("name each weekday once")
        return "".join(sorted(value))


class SlotsIn(RequestBody):
    """The whole list of an org unit's regular slots (replaces the stored one)."""

    model_config = ConfigDict(extra="forbid")

    slots: list[SlotIn] = Field(max_length=MAX_SLOTS, description=f"at most {MAX_SLOTS}")


class SlotOut(BaseModel):
    """A stored regular slot."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    org_unit_id: int
    start_time: str
    weekdays: str


class PositionIn(RequestBody):
    """Where a priority bulletin goes among its slot's priority bulletins (0 = first)."""

    model_config = ConfigDict(extra="forbid")

    position: int = Field(ge=0, le=1000)


class SlotItemOut(BaseModel):
    """One priority bulletin of a slot, in play order."""

    delivery_id: int
    bulletin_id: int
    programme_id: int
    slot_position: int
    start: datetime
    warning: str
