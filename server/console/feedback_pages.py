"""Citizen feedback in the console ("Phản ánh, kiến nghị"): the queue and one case's steps.

Every string shown goes through the catalogue (keys "feedback.*"); errors from the service
are shown as they come (bilingual).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field
from sqlalchemy.orm import Session

from server.access import policy
from server.access.actor import Actor
from server.bounds import MAX_ID, IdPath
from server.console.admin_pages import unit_choices, users_in_reach
from server.console.i18n import Translator, language_of
from server.console.render import page
from server.console.session import ConsoleActor, check_form_csrf
from server.deps import SessionDep, SettingsDep, now_of
from server.domain import DomainError
from server.feedback import service
from server.feedback.intake import STATUS_LABELS
from server.feedback.views import case_out, detail_out
from server.programmes.conflicts import conflict_days

router = APIRouter(include_in_schema=False)
FormId = Annotated[int, Field(ge=1, le=MAX_ID)]
Note = Annotated[str, Form(max_length=1000)]
Csrf = Annotated[str, Form(max_length=100)]
StatusFilter = Annotated[Literal["", "new", "assigned", "answered", "forwarded", "closed"], Query()]
# Steps with a label in the catalogue ("feedback.step.<action>"); others show as stored.
ACTIONS = ("received", "assign", "answer", "forward", "close", "broadcast")


def _reader(actor: Actor) -> None:
    if not actor.may(policy.FEEDBACK_READ):
        raise HTTPException(403, detail="")


@router.get("/feedback", response_class=HTMLResponse)
def queue_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    status: StatusFilter = "",
    overdue: Annotated[bool, Query()] = False,
) -> HTMLResponse:
    """The queue of the caller's units: new and overdue counts, status and overdue filters."""
    _reader(actor)
    now = now_of(request)
    found = service.queue(
        db, actor=actor, now=now, status=status or None, overdue=True if overdue else None,
        limit=200,
    )  # fmt: skip
    units = {u.id: u.name for u in unit_choices(db, actor)}
    return page(
        request,
        "feedback_queue.html",
        actor=actor,
        active="feedback",
        cases=[case_out(c, now) for c in found.items],
        total=found.total,
        new_count=found.new_count,
        overdue_count=found.overdue_count,
        status=status,
        overdue=overdue,
        statuses=list(STATUS_LABELS),
        units=units,
    )


def _case_page(
    request: Request,
    db: Session,
    actor: Actor,
    case_id: int,
    *,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    now = now_of(request)
    case = service.get(db, actor=actor, case_id=case_id)
    detail = detail_out(db, case, now)
    choices = unit_choices(db, actor)
    return page(
        request,
        "feedback_case.html",
        actor=actor,
        active="feedback",
        status_code=status_code,
        case=detail,
        unit_name=next((u.name for u in choices if u.id == case.org_unit_id), ""),
        units=[u for u in choices if u.id != case.org_unit_id],
        users=[u for u in users_in_reach(db, actor) if u.is_active],
        actions=ACTIONS,
        error=error,
        done=request.query_params.get("done", ""),
        may_handle=actor.may(policy.FEEDBACK_HANDLE),
    )


@router.get("/feedback/{case_id:int}", response_class=HTMLResponse)
def case_page(request: Request, db: SessionDep, actor: ConsoleActor, case_id: IdPath) -> Response:
    """One case: the citizen's words, name and phone, attachment, steps and the step forms."""
    _reader(actor)
    return _case_page(request, db, actor, case_id)


def _step(
    request: Request, db: Session, actor: Actor, case_id: int, csrf: str, action: str, **kw: object
) -> Response:
    check_form_csrf(request, csrf)
    if not actor.may(policy.FEEDBACK_HANDLE):
        raise HTTPException(403, detail="")
    now = now_of(request)
    try:
        if action == "assign":
            service.assign(db, actor=actor, case_id=case_id, now=now, **kw)  # type: ignore[arg-type]
        elif action == "answer":
            service.answer(db, actor=actor, case_id=case_id, now=now, **kw)  # type: ignore[arg-type]
        elif action == "forward":
            service.forward(db, actor=actor, case_id=case_id, now=now, **kw)  # type: ignore[arg-type]
        else:
            service.close(db, actor=actor, case_id=case_id, now=now, **kw)  # type: ignore[arg-type]
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        db.rollback()
        return _case_page(
            request, db, actor, case_id, error=str(exc.detail), status_code=exc.status_code
        )
    return RedirectResponse(f"/feedback/{case_id}?done={action}", status_code=303)


@router.post("/feedback/{case_id:int}/assign", response_model=None)
def assign_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    case_id: IdPath,
    user_id: Annotated[FormId, Form()],
    csrf: Csrf = "",
    note: Note = "",
) -> Response:
    """Give the case to a user."""
    return _step(request, db, actor, case_id, csrf, "assign", user_id=user_id, note=note)


@router.post("/feedback/{case_id:int}/answer", response_model=None)
def answer_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    case_id: IdPath,
    answer: Annotated[str, Form(min_length=1, max_length=5000)],
    settings: SettingsDep,
    csrf: Csrf = "",
    publish: Annotated[bool, Form()] = False,
    broadcast: Annotated[bool, Form()] = False,
) -> Response:
    """Write the answer; published, the citizen reads it; broadcast, the horns read it too."""
    text = answer.strip()
    if not text:
        error = Translator(language_of(request))("feedback.err.empty_answer")
        return _case_page(request, db, actor, case_id, error=error, status_code=422)
    return _step(
        request, db, actor, case_id, csrf, "answer", text=text, publish=publish,
        broadcast=service.Broadcast() if broadcast else None, settings=settings,
        horizon_days=conflict_days(settings),
    )  # fmt: skip


@router.post("/feedback/{case_id:int}/forward", response_model=None)
def forward_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    case_id: IdPath,
    org_unit_id: Annotated[FormId, Form()],
    csrf: Csrf = "",
    note: Note = "",
) -> Response:
    """Hand the case to another unit."""
    return _step(request, db, actor, case_id, csrf, "forward", org_unit_id=org_unit_id, note=note)


@router.post("/feedback/{case_id:int}/close", response_model=None)
def close_form(
    request: Request, db: SessionDep, actor: ConsoleActor, case_id: IdPath, csrf: Csrf = "",
    note: Note = "",
) -> Response:  # fmt: skip
    """Close the case."""
    return _step(request, db, actor, case_id, csrf, "close", note=note)
