"""Bulletins sent down the tree: what each commune did with them, and the sending form."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import to_local_wall
from server.access import policy, reach
from server.access.actor import Actor
from server.bulletins import service, views
from server.bulletins.models import EMERGENCY, LEVELS
from server.bulletins.schemas import BulletinCreate
from server.clips.models import Clip
from server.console.admin_pages import unit_choices
from server.console.bulletin_pages import FormId, local_start
from server.console.render import page
from server.console.session import ConsoleActor, check_form_csrf
from server.deps import SessionDep, SettingsDep, now_of
from server.domain import DomainError

router = APIRouter(include_in_schema=False)
SENT_ROWS = 30


def _sender(actor: Actor) -> None:
    if not actor.may(policy.BULLETINS_SEND):
        raise HTTPException(403, detail="")


@router.get("/bulletins/sent", response_class=HTMLResponse)
def sent_page(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """The unit's bulletins, newest first, each with every commune's delivery."""
    _sender(actor)
    now = now_of(request)
    listed = views.sent(db, actor=actor, status=None, level=None, limit=SENT_ROWS, offset=0)
    details = [views.detail(db, actor=actor, bulletin_id=b.id, now=now) for b in listed.items]
    return page(
        request,
        "bulletins_sent.html",
        actor=actor,
        active="bulletins_sent",
        bulletins=details,
        total=listed.total,
        shown=len(details),
        done=request.query_params.get("done", ""),
    )


def _form_page(
    request: Request,
    db: Session,
    actor: Actor,
    *,
    form: dict[str, Any],
    error: str = "",
    error_detail: str = "",
    confirm: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    clips = list(
        db.scalars(
            select(Clip)
            .where(reach.reachable(actor, Clip))
            .order_by(Clip.created_at.desc())
            .limit(300)
        )
    )
    # Targets: the units below the sender's own (sending to oneself delivers nothing new).
    units = [u for u in unit_choices(db, actor) if u.id != actor.user.org_unit_id]
    names = {u.id: u.name for u in units}
    return page(
        request,
        "bulletin_new.html",
        actor=actor,
        active="bulletins_sent",
        clips=clips,
        targets=units,
        target_names=[names[i] for i in form.get("targets", []) if i in names],
        levels=[lv for lv in LEVELS if lv != EMERGENCY or actor.may_run_emergency()],
        form=form,
        error=error,
        error_detail=error_detail,
        confirm=confirm,
        status_code=status_code,
    )


@router.get("/bulletins/new", response_class=HTMLResponse)
def new_bulletin_page(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """The form for a bulletin to the units below: title, level, audio or text, validity."""
    _sender(actor)
    until = to_local_wall(now_of(request)) + timedelta(days=7)
    form = {"level": "normal", "until_day": f"{until:%d/%m/%Y}", "until_at": "23:00"}
    return _form_page(request, db, actor, form=form)


@router.post("/bulletins/new", response_model=None)
def send_bulletin(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    actor: ConsoleActor,
    csrf: Annotated[str, Form(max_length=100)] = "",
    title: Annotated[str, Form(max_length=300)] = "",
    level: Annotated[str, Form(max_length=16)] = "normal",
    text: Annotated[str, Form(max_length=5000)] = "",
    essential: Annotated[bool, Form()] = False,
    public: Annotated[bool, Form()] = False,
    clip_ids: Annotated[list[FormId], Form(max_length=50)] = [],  # noqa: B006
    targets: Annotated[list[FormId], Form(max_length=1000)] = [],  # noqa: B006
    until_day: Annotated[str, Form(max_length=20)] = "",
    until_at: Annotated[str, Form(max_length=10)] = "",
    confirmed: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """Send the bulletin; an emergency is sent only after an explicit confirmation."""
    check_form_csrf(request, csrf)
    _sender(actor)
    form: dict[str, Any] = {
        "title": title, "level": level, "text": text, "essential": essential, "public": public,
        "clip_ids": clip_ids, "targets": targets, "until_day": until_day, "until_at": until_at,
    }  # fmt: skip
    until = local_start(until_day, until_at)
    error = ""
    if not title.strip():
        error = "bul.err.no_title"
    elif level not in LEVELS:
        error = "bul.err.level"
    elif not clip_ids and not text.strip():
        error = "bul.err.no_content"
    elif not targets:
        error = "bul.err.no_target"
    elif until is None:
        error = "bul.err.bad_until"
    if error or until is None:
        return _form_page(request, db, actor, form=form, error=error, status_code=422)
    if level == EMERGENCY and confirmed != "yes":
        return _form_page(request, db, actor, form=form, confirm=True)
    try:
        fields = BulletinCreate(
            title=title, level=level, text=text, essential=essential, public=public,
            clip_ids=clip_ids,
            valid_until=until, target_org_unit_ids=targets,
        )  # fmt: skip
        service.create(db, actor=actor, fields=fields, now=now_of(request), settings=settings)
    except ValidationError as exc:
        detail = "; ".join(str(e["msg"]) for e in exc.errors())
        return _form_page(
            request, db, actor, form=form, error="bul.err.send", error_detail=detail,
            status_code=422,
        )  # fmt: skip
    except DomainError as exc:
        db.rollback()  # nothing the use case began is kept
        return _form_page(
            request, db, actor, form=form, error="bul.err.send", error_detail=str(exc.detail),
            status_code=exc.status,
        )  # fmt: skip
    return RedirectResponse("/bulletins/sent?done=sent", status_code=303)
