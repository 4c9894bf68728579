"""Clip library pages: list with upload, speech and compose forms; one clip with its waveform."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from server.access import reach
from server.bounds import IdPath
from server.clips import service
from server.clips.models import Clip
from server.clips.schemas import TOPICS
from server.console.render import page
from server.console.session import ConsoleActor
from server.deps import SessionDep
from server.orgs.models import OrgUnit

router = APIRouter(include_in_schema=False)


@router.get("/clips", response_class=HTMLResponse)
def clips_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    q: Annotated[str, Query(max_length=100)] = "",
    topic: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    """The clips the user may play, newest first, and the forms to add one."""
    rows, total = service.list_clips(
        db,
        q=q.strip() or None,
        topic=topic if topic in TOPICS else None,
        limit=200,
        offset=0,
        visible=reach.reachable(actor, Clip),
    )
    return page(
        request,
        "clips.html",
        actor=actor,
        active="clips",
        clips=rows,
        total=total,
        q=q,
        topic=topic,
        topics=TOPICS,
    )


def loudness_key(before: float | None, after: float | None) -> str:
    """What normalising did, in plain words (the numbers go on a line for technicians)."""
    if before is None or after is None:
        return "clip.loudness_silent"
    if after - before > 1.0:
        return "clip.loudness_raised"
    if before - after > 1.0:
        return "clip.loudness_lowered"
    return "clip.loudness_done"


@router.get("/clips/{clip_id}", response_class=HTMLResponse)
def clip_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    clip_id: IdPath,
) -> HTMLResponse:
    """One clip: waveform, playback in the browser, loudness before and after."""
    clip = reach.load(db, actor, Clip, clip_id)
    return page(
        request,
        "clip.html",
        actor=actor,
        active="clips",
        clip=clip,
        topics=TOPICS,
        owner=db.get(OrgUnit, clip.org_unit_id) if clip.org_unit_id is not None else None,
        deletable=actor.reaches(clip.org_unit_id),
        loudness_key=loudness_key(clip.loudness_before_lufs, clip.loudness_after_lufs),
    )
