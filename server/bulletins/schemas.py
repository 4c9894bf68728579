"""API shapes for bulletins: what a sender posts (a person, a source key, or a CAP alert)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from server.bounds import Id, RequestBody, When

Level = Literal["normal", "priority", "emergency"]
# An administrative code (mã đơn vị hành chính): digits, e.g. "26734" for a commune.
AdminCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z._-]+$")]


class BulletinCreate(RequestBody):
    """A bulletin for the units below the sender: audio (clips) and/or text (read by TTS)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    topic: str = Field(default="", max_length=100)
    level: Level = "normal"
    clip_ids: list[Id] = Field(default_factory=list, max_length=50)
    text: str = Field(
        default="",
        max_length=5000,
        description="for e-boards and the public page; read by TTS when there are no clips",
    )
    essential: bool = Field(default=False, description="thông tin thiết yếu (counted in reports)")
    valid_from: When | None = Field(default=None, description="UTC; default: now")
    valid_until: When = Field(description="UTC; never played after it")
    repeat_every_min: int | None = Field(
        default=None, ge=5, le=1440, description="emergency: replay this often until valid_until"
    )
    target_org_unit_ids: list[Id] = Field(default_factory=list, max_length=1000)
    target_codes: list[AdminCode] = Field(
        default_factory=list,
        max_length=1000,
        description="administrative codes of org units, instead of or beside their ids",
    )
