"""Feedback API: the public intake and lookup (no sign-in), the staff queue and its steps."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import FileResponse

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import FEEDBACK_HANDLE, FEEDBACK_READ
from server.bounds import IdFilter, IdPath, Offset, page_limit
from server.deps import Now, SessionDep, SettingsDep
from server.domain import DomainError
from server.feedback import intake, service
from server.feedback.attachments import path_of
from server.feedback.models import FeedbackCategory
from server.feedback.schemas import (
    AnswerIn,
    AssignIn,
    CaseDetailOut,
    CasePage,
    CategoryIn,
    CategoryOut,
    CategoryUpdate,
    CloseIn,
    ForwardIn,
    PublicCaseOut,
    SubmittedOut,
)
from server.feedback.submit import read_submission, take_in
from server.feedback.views import case_out, detail_out, public_out
from server.openapi import problems
from server.programmes.conflicts import conflict_days

BINARY = {"schema": {"type": "string", "format": "binary"}}
ATTACHMENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the photo (re-encoded) or the voice note (Ogg/Opus)",
        "content": {"image/jpeg": BINARY, "image/png": BINARY, "image/webp": BINARY,
                    "audio/ogg": BINARY},
    },
}  # fmt: skip
router = APIRouter(tags=["feedback"])
public_router = APIRouter(tags=["public feedback"])
Reader = Annotated[Actor, allow(FEEDBACK_READ)]
Handler = Annotated[Actor, allow(FEEDBACK_HANDLE)]
Status = Annotated[Literal["new", "assigned", "answered", "forwarded", "closed"] | None, Query()]
Code = Annotated[str, Path(min_length=1, max_length=40)]
FORM_SCHEMA = {
    "type": "object",
    "required": ["org_unit_code", "content"],
    "properties": {
        "org_unit_code": {"type": "string", "maxLength": 32},
        "category": {"type": "string", "maxLength": 100},
        "content": {"type": "string", "maxLength": 5000},
        "name": {"type": "string", "maxLength": 200},
        "phone": {"type": "string", "maxLength": 32},
        "website": {"type": "string", "maxLength": 500, "description": "leave empty"},
        "attachment": {"type": "string", "format": "binary"},
    },
}
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": FORM_SCHEMA},
            "multipart/form-data": {"schema": FORM_SCHEMA},
        },
    }
}


# -- public ----------------------------------------------------------------------------------


@public_router.post(
    "/public/feedback",
    status_code=status.HTTP_201_CREATED,
    response_model=SubmittedOut,
    openapi_extra=SUBMIT_BODY,
    responses=problems(404, 413, 415, 429, 503),
)
async def submit_feedback(
    request: Request, db: SessionDep, settings: SettingsDep, now: Now
) -> SubmittedOut:
    """A citizen's feedback to a commune (JSON or multipart with an optional attachment)."""
    body, data = await read_submission(request, settings)
    case = await take_in(request, db, settings=settings, body=body, data=data, now=now)
    return SubmittedOut(
        tracking_code=case.tracking_code,
        status=case.status,
        status_label=intake.STATUS_LABELS[case.status],
        due_at=case.due_at,
    )


@public_router.get(
    "/public/feedback/{tracking_code}", response_model=PublicCaseOut, responses=problems(503)
)
def get_public_feedback(db: SessionDep, tracking_code: Code) -> PublicCaseOut:
    """Status and, once published, the answer; any unknown code is the same 404."""
    return public_out(intake.lookup(db, tracking_code=tracking_code))


# -- staff -----------------------------------------------------------------------------------


@router.get("/feedback", response_model=CasePage)
def list_feedback(
    db: SessionDep,
    actor: Reader,
    now: Now,
    status: Status = None,
    overdue: Annotated[bool | None, Query()] = None,
    org_unit_id: IdFilter = None,
    offset: Offset = 0,
    limit: Annotated[int, page_limit(200)] = 50,
) -> CasePage:
    """Cases of your units, oldest due first (closed last), with new and overdue counts."""
    found = service.queue(
        db, actor=actor, now=now, status=status, overdue=overdue, org_unit_id=org_unit_id,
        offset=offset, limit=limit,
    )  # fmt: skip
    return CasePage(
        items=[case_out(c, now) for c in found.items],
        total=found.total,
        new_count=found.new_count,
        overdue_count=found.overdue_count,
    )


@router.get("/feedback/categories", response_model=list[CategoryOut])
def list_categories(
    db: SessionDep, actor: Reader, org_unit_id: IdFilter = None
) -> list[CategoryOut]:
    """Feedback categories of your units."""
    rows = service.categories(db, actor=actor, org_unit_id=org_unit_id)
    return [CategoryOut.model_validate(r, from_attributes=True) for r in rows]


@router.post("/feedback/categories", response_model=CategoryOut, status_code=201)
def create_category(db: SessionDep, actor: Handler, body: CategoryIn) -> CategoryOut:
    """A new category (with its answer time in days, 1-90)."""
    row: FeedbackCategory = service.create_category(db, actor=actor, **body.model_dump())
    return CategoryOut.model_validate(row, from_attributes=True)


@router.patch("/feedback/categories/{category_id:int}", response_model=CategoryOut)
def update_category(
    db: SessionDep, actor: Handler, category_id: IdPath, body: CategoryUpdate
) -> CategoryOut:
    """Rename, re-time, enable or disable a category."""
    changes = body.model_dump(exclude_unset=True)
    row = service.update_category(db, actor=actor, category_id=category_id, changes=changes)
    return CategoryOut.model_validate(row, from_attributes=True)


@router.get("/feedback/{case_id:int}", response_model=CaseDetailOut)
def get_feedback(db: SessionDep, actor: Reader, now: Now, case_id: IdPath) -> CaseDetailOut:
    """One case with the citizen's name and phone, its answer and its steps."""
    return detail_out(db, service.get(db, actor=actor, case_id=case_id), now)


@router.get("/feedback/{case_id:int}/attachment", response_class=FileResponse, responses=ATTACHMENT)
def get_attachment(
    db: SessionDep, actor: Reader, settings: SettingsDep, case_id: IdPath
) -> FileResponse:
    """The case's photo or voice note (staff only)."""
    case = service.get(db, actor=actor, case_id=case_id)
    path = None
    if case.attachment_sha256:
        path = path_of(settings.data_dir / "feedback", case.attachment_sha256)
    if path is None or not path.is_file():
        raise DomainError(404, f"Feedback case {case_id} has no attachment.")
    return FileResponse(
        path,
        media_type=case.attachment_type or "application/octet-stream",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.post("/feedback/{case_id:int}/assign", response_model=CaseDetailOut)
def assign(
    db: SessionDep, actor: Handler, now: Now, case_id: IdPath, body: AssignIn
) -> CaseDetailOut:
    """Give the case to a user of your units."""
    case = service.assign(
        db, actor=actor, case_id=case_id, user_id=body.user_id, note=body.note, now=now
    )
    return detail_out(db, case, now)


@router.post("/feedback/{case_id:int}/answer", response_model=CaseDetailOut)
def answer(
    db: SessionDep,
    actor: Handler,
    now: Now,
    settings: SettingsDep,
    case_id: IdPath,
    body: AnswerIn,
) -> CaseDetailOut:
    """Answer the case; publish=true lets the citizen read it with the tracking code.

    broadcast=true also reads it on the horns: a normal programme of the case's unit (TTS,
    display text, no name or phone), at the next free minute from now + 5 min or broadcast_at
    (within 30 days), in zone_ids or every zone of the unit, submitted for approval.
    """
    wanted = service.Broadcast(body.zone_ids, body.broadcast_at) if body.broadcast else None
    case = service.answer(
        db, actor=actor, case_id=case_id, text=body.answer, publish=body.publish, now=now,
        broadcast=wanted, settings=settings, horizon_days=conflict_days(settings),
    )  # fmt: skip
    return detail_out(db, case, now)


@router.post("/feedback/{case_id:int}/forward", response_model=CaseDetailOut)
def forward(
    db: SessionDep, actor: Handler, now: Now, case_id: IdPath, body: ForwardIn
) -> CaseDetailOut:
    """Hand the case to another unit of your subtree."""
    case = service.forward(
        db, actor=actor, case_id=case_id, org_unit_id=body.org_unit_id, note=body.note, now=now
    )
    return detail_out(db, case, now)


@router.post("/feedback/{case_id:int}/close", response_model=CaseDetailOut)
def close(
    db: SessionDep, actor: Handler, now: Now, case_id: IdPath, body: CloseIn
) -> CaseDetailOut:
    """Close the case."""
    case = service.close(db, actor=actor, case_id=case_id, note=body.note, now=now)
    return detail_out(db, case, now)
