"""Deciding whether a device's clip request is answered."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from protocol import ClipRequest
from server.clips.models import Clip
from server.devices.models import Device
from server.distribution.sender import ClipJob
from server.planner.compile import latest_schedule


@dataclass(frozen=True)
class Refusal:
    """Why a clip request is not answered: a metrics reason and a log sentence."""

    reason: str
    why: str


def check_clip_request(db: Session, *, device: Device, request: ClipRequest) -> ClipJob | Refusal:
    """A job sending exactly the asked chunks, or why not (unknown clip, not in the schedule)."""
    if db.scalar(select(Clip.id).where(Clip.sha256 == request.sha256)) is None:
        return Refusal("unknown_clip", f"no clip with sha256 {request.sha256}")
    schedule = latest_schedule(db, device_id=device.id)
    manifest = {c["sha256"] for c in schedule.document.get("clips", [])} if schedule else set()
    if request.sha256 not in manifest:
        return Refusal(
            "not_in_schedule",
            f"clip {request.sha256[:12]} is not in the current schedule of {device.uid}",
        )
    chunks = None if request.chunks is None else tuple(sorted(set(request.chunks)))
    if chunks == ():
        return Refusal("no_chunks", "the request lists no chunks")
    return ClipJob(sha256=request.sha256, device_uid=device.uid, chunks=chunks)
