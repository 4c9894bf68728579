"""API shapes for clips."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from server.bounds import Finite, Id, RequestBody

# The subjects commune radio carries; Vietnamese labels are what the console shows.
TOPICS: dict[str, str] = {
    "news": "Tin tức",
    "announcement": "Thông báo",
    "policy": "Chính sách, pháp luật",
    "health": "Y tế",
    "agriculture": "Nông nghiệp",
    "weather": "Thời tiết",
    "disaster": "Phòng chống thiên tai",
    "security": "An ninh trật tự",
    "culture": "Văn hoá, văn nghệ",
    "other": "Khác",
}


class ClipOut(BaseModel):
    """A clip's metadata."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    title: str
    topic: str | None
    language: str
    notes: str
    source: str
    original_filename: str
    original_format: str
    original_codec: str
    original_duration_s: float
    original_sample_rate: int
    original_channels: int
    original_size_bytes: int
    duration_s: float
    size_bytes: int
    loudness_before_lufs: float | None
    true_peak_before_dbtp: float | None
    loudness_after_lufs: float | None
    true_peak_after_dbtp: float | None
    created_at: datetime


class ClipDetail(ClipOut):
    """A clip with waveform peaks for drawing: [min, max] pairs in [-1, 1]."""

    peaks: list[Annotated[list[Finite], Field(min_length=2, max_length=2)]]


class ClipPage(BaseModel):
    """One page of clips."""

    items: list[ClipOut]
    total: int


Voice = Literal["vi", "vi-vn-x-central", "vi-vn-x-south"]


class TtsRequest(RequestBody):
    """Make a clip from Vietnamese text."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        max_length=100_000, description="the text to speak (length limit: LOA_TTS_MAX_CHARS)"
    )
    voice: str = Field(default="vi", max_length=64)
    title: str | None = Field(default=None, max_length=300)
    topic: str | None = Field(default=None, max_length=40)


class ChimePart(RequestBody):
    """The project's own announcement chime."""

    type: Literal["chime"]


class ClipPart(RequestBody):
    """An existing clip."""

    type: Literal["clip"]
    clip_id: Id


class TextPart(RequestBody):
    """Spoken text."""

    type: Literal["text"]
    text: str = Field(min_length=1)
    voice: str = Field(default="vi", max_length=64)


class SilencePart(RequestBody):
    """A pause."""

    type: Literal["silence"]
    ms: int = Field(ge=1, le=60_000)


Part = Annotated[ChimePart | ClipPart | TextPart | SilencePart, Field(discriminator="type")]


class ComposeRequest(RequestBody):
    """Build an announcement from parts."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    topic: str | None = Field(default=None, max_length=40)
    parts: list[Part] = Field(min_length=1, max_length=50)
