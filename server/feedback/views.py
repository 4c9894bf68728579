"""Feedback cases as the API and the pages show them (staff: with name and phone)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from server.feedback import intake, service
from server.feedback.models import FeedbackCase
from server.feedback.schemas import CaseDetailOut, CaseOut, PublicCaseOut, StepOut


def case_out(case: FeedbackCase, now: datetime) -> CaseOut:
    """A case as the queue lists it."""
    return CaseOut(**_case_fields(case, now))


def _case_fields(case: FeedbackCase, now: datetime) -> dict[str, object]:
    return {
        "id": case.id,
        "tracking_code": case.tracking_code,
        "org_unit_id": case.org_unit_id,
        "received_by_unit_id": case.received_by_unit_id,
        "category_id": case.category_id,
        "category": case.category_name,
        "content": case.content,
        "status": case.status,
        "status_label": intake.STATUS_LABELS[case.status],
        "assigned_to": case.assigned_to,
        "created_at": case.created_at,
        "due_at": case.due_at,
        "overdue": service.is_overdue(case, now),
        "answered_at": case.answered_at,
        "closed_at": case.closed_at,
    }


def detail_out(db: Session, case: FeedbackCase, now: datetime) -> CaseDetailOut:
    """A case with the citizen's name and phone and its steps (staff only)."""
    steps = [
        StepOut(
            action=s.action,
            user_id=s.user_id,
            username=name,
            to_org_unit_id=s.to_org_unit_id,
            note=s.note,
            at=s.at,
        )
        for s, name in service.steps(db, case_id=case.id)
    ]
    return CaseDetailOut(
        **_case_fields(case, now),
        name=case.name,
        phone=case.phone,
        personal_erased=case.personal_erased_at is not None,
        answer=case.answer,
        answer_public=case.answer_public,
        programme_id=case.programme_id,
        attachment_type=case.attachment_type,
        attachment_size=case.attachment_size,
        steps=steps,
    )


def public_out(case: FeedbackCase) -> PublicCaseOut:
    """What a tracking code shows: never name, phone, unit staff or an unpublished answer."""
    published = case.answer_public and bool(case.answer)
    return PublicCaseOut(
        tracking_code=case.tracking_code,
        status=case.status,
        status_label=intake.STATUS_LABELS[case.status],
        category=case.category_name,
        created_at=case.created_at,
        due_at=case.due_at,
        answer=case.answer if published else None,
        answered_at=case.answered_at if published else None,
    )
