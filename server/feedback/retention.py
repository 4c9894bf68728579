"""Erase the citizen's name, phone and attachment of cases closed more than N days ago."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.audit import service as audit
from server.feedback.attachments import path_of
from server.feedback.models import CLOSED, FeedbackCase

log = logging.getLogger(__name__)


def erase_personal_data(db: Session, *, now: datetime, days: int, root: Path) -> int:
    """Erase and stamp personal_erased_at; returns how many cases were erased."""
    cutoff = now - timedelta(days=days)
    cases = list(
        db.scalars(
            select(FeedbackCase).where(
                FeedbackCase.status == CLOSED,
                FeedbackCase.closed_at <= cutoff,
                FeedbackCase.personal_erased_at.is_(None),
            )
        )
    )
    gone: set[str] = set()
    for case in cases:
        case.name = ""
        case.phone = ""
        if case.attachment_sha256:
            gone.add(case.attachment_sha256)
        case.attachment_sha256 = None
        case.attachment_type = None
        case.attachment_size = None
        case.personal_erased_at = now
    db.flush()
    for sha in gone:  # content-addressed: another case may still hold the same file
        still = db.scalar(
            select(func.count())
            .select_from(FeedbackCase)
            .where(FeedbackCase.attachment_sha256 == sha)
        )
        if not still:
            path_of(root, sha).unlink(missing_ok=True)
    if cases:
        audit.record(
            db, actor=None, action="feedback.personal_erased", object_type="feedback_case",
            summary=f"{len(cases)} case(s) closed before {cutoff:%Y-%m-%d}",
            details={"count": len(cases), "retention_days": days}, username="(system)", at=now,
        )  # fmt: skip
    log.info("feedback retention: erased name/phone/attachment of %d case(s)", len(cases))
    return len(cases)
