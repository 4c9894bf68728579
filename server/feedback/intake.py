"""The public side: take in a citizen's feedback (rate-limited), look it up by tracking code."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from server.audit import service as audit
from server.domain import DomainError
from server.feedback.attachments import Stored
from server.feedback.models import NEW, FeedbackCase, FeedbackCategory, FeedbackStep
from server.feedback.schemas import FeedbackIn
from server.orgs.models import OrgUnit

# No 0/O, 1/I: read out on the phone or copied from paper without mistakes. 32^10 = 2^50.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10
DEFAULT_CATEGORY = "Khác"
STATUS_LABELS = {
    "new": "Đã tiếp nhận",
    "assigned": "Đang xử lý",
    "answered": "Đã trả lời",
    "forwarded": "Đã chuyển đơn vị khác xử lý",
    "closed": "Đã kết thúc",
}
# A filled honeypot gets the same plain 400 as any refused form: a robot learns nothing, and a
# person whose browser filled it by mistake is told to try again instead of getting a dead code.
HONEYPOT_DETAIL = (
    "The submission could not be accepted. / Không gửi được phản ánh, vui lòng thử lại."
)
NOT_FOUND = "No feedback has this tracking code. / Không tìm thấy phản ánh với mã này."


@dataclass(frozen=True)
class Limits:
    """Submissions allowed per client address and per phone number within the window."""

    per_address: int
    per_phone: int
    window_s: float


def new_code() -> str:
    """An unguessable tracking code of CODE_LENGTH readable characters."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normal_code(value: str) -> str:
    """A typed-in code as stored: capitals, without spaces or dashes."""
    return re.sub(r"[\s\-]", "", value).upper()[:32]


def sender_hash(ip: str, *, data_dir: Path) -> str:
    """The client address keyed with this deployment's secret salt (never stored readable)."""
    salt_file = data_dir / "feedback-salt"
    if not salt_file.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        part = salt_file.with_suffix(f".{secrets.token_hex(4)}.part")
        part.write_text(secrets.token_hex(32))
        try:  # a link never replaces: of two processes starting at once, the first salt wins
            os.link(part, salt_file)
        except FileExistsError:
            pass
        finally:
            part.unlink()
    salt = salt_file.read_text().strip().encode()
    return hmac.new(salt, ip.encode(), hashlib.sha256).hexdigest()


def _too_many(seconds: float) -> DomainError:
    minutes = max(1, math.ceil(seconds / 60))
    return DomainError(
        429,
        f"Too many submissions; try again in {minutes} minute(s). / Gửi quá nhiều phản ánh, "
        f"vui lòng thử lại sau {minutes} phút.",
    )


def _recent(db: Session, *, sender: str, phone: str, since: datetime) -> tuple[int, int]:
    by_sender = db.scalar(
        select(func.count())
        .select_from(FeedbackCase)
        .where(FeedbackCase.sender_hash == sender, FeedbackCase.created_at > since)
    )
    by_phone = 0
    if phone:
        by_phone = int(
            db.scalar(
                select(func.count())
                .select_from(FeedbackCase)
                .where(FeedbackCase.created_at > since, FeedbackCase.phone == phone)
            )
            or 0
        )
    return int(by_sender or 0), by_phone


def precheck(db: Session, *, body: FeedbackIn, sender: str, limits: Limits, now: datetime) -> None:
    """Cheap refusals before an attachment is decoded or kept: honeypot, unit, category, limits."""
    if body.website:
        raise DomainError(400, HONEYPOT_DETAIL)
    unit = unit_by_code(db, body.org_unit_code)
    _category(db, unit_id=unit.id, wanted=body.category, default_due_days=1)
    since = now - timedelta(seconds=limits.window_s)
    by_sender, by_phone = _recent(db, sender=sender, phone=body.phone, since=since)
    if by_sender >= limits.per_address or (body.phone and by_phone >= limits.per_phone):
        raise _too_many(limits.window_s)


def _category(
    db: Session, *, unit_id: int, wanted: str, default_due_days: int
) -> tuple[int | None, str, int]:
    rows = list(
        db.scalars(
            select(FeedbackCategory)
            .where(FeedbackCategory.org_unit_id == unit_id, FeedbackCategory.enabled.is_(True))
            .order_by(FeedbackCategory.name)
        )
    )
    if not rows:  # a commune that set up no categories still hears its citizens
        return None, DEFAULT_CATEGORY, default_due_days
    for row in rows:
        if (wanted.isdigit() and int(wanted) == row.id) or wanted.casefold() == row.name.casefold():
            return row.id, row.name, row.due_days
    names = ", ".join(r.name for r in rows)
    raise DomainError(422, f"Choose one of the categories: {names}. / Hãy chọn lĩnh vực.")


def unit_by_code(db: Session, code: str) -> OrgUnit:
    """The org unit a public form or page names by code; 404 when none has it."""
    # No code has a NUL, and PostgreSQL refuses one in a query.
    unit = (
        None if "\x00" in code else db.scalar(select(OrgUnit).where(OrgUnit.code == code.strip()))
    )
    if unit is None:
        raise DomainError(404, "No commune has this code. / Không có xã nào với mã này.")
    return unit


def submit(
    db: Session,
    *,
    body: FeedbackIn,
    sender: str,
    attachment: Stored | None,
    limits: Limits,
    default_due_days: int,
    now: datetime,
) -> FeedbackCase:
    """Record a case and commit it, then recount: one over the limit is removed again (429).

    Committing first and counting after means parallel submissions from one address or
    phone, in any server process, never get more than the limit through.
    """
    unit = unit_by_code(db, body.org_unit_code)
    cat_id, cat_name, due_days = _category(
        db, unit_id=unit.id, wanted=body.category, default_due_days=default_due_days
    )
    case = FeedbackCase(
        tracking_code=new_code(),
        org_unit_id=unit.id,
        received_by_unit_id=unit.id,
        category_id=cat_id,
        category_name=cat_name,
        content=body.content,
        name=body.name,
        phone=body.phone,
        attachment_sha256=attachment.sha256 if attachment else None,
        attachment_type=attachment.media_type if attachment else None,
        attachment_size=attachment.size if attachment else None,
        status=NEW,
        due_at=now + timedelta(days=due_days),
        sender_hash=sender,
        created_at=now,
        updated_at=now,
    )
    db.add(case)
    db.flush()
    db.add(FeedbackStep(case_id=case.id, action="received", at=now))
    audit.record(
        db,
        actor=None,
        action="feedback.received",
        object_type="feedback_case",
        object_id=case.id,
        org_unit_id=unit.id,
        summary=f"{cat_name} · {case.tracking_code}",
        username="(public)",
        ip="",
        at=now,
    )
    db.commit()
    since = now - timedelta(seconds=limits.window_s)
    by_sender, by_phone = _recent(db, sender=sender, phone=body.phone, since=since)
    if by_sender > limits.per_address or (body.phone and by_phone > limits.per_phone):
        db.execute(delete(FeedbackCase).where(FeedbackCase.id == case.id))
        db.commit()
        raise _too_many(limits.window_s)
    return case


def lookup(db: Session, *, tracking_code: str) -> FeedbackCase:
    """The case with this code; 404 with no hint for any other."""
    code = normal_code(tracking_code)
    if not code.isalnum() or not code.isascii():  # never a code; NUL breaks PostgreSQL
        raise DomainError(404, NOT_FOUND)
    case = db.scalar(select(FeedbackCase).where(FeedbackCase.tracking_code == code))
    if case is None:
        raise DomainError(404, NOT_FOUND)
    return case


def public_categories(db: Session, *, unit_id: int) -> list[FeedbackCategory]:
    """The enabled categories a public form offers."""
    return list(
        db.scalars(
            select(FeedbackCategory)
            .where(FeedbackCategory.org_unit_id == unit_id, FeedbackCategory.enabled.is_(True))
            .order_by(FeedbackCategory.name)
        )
    )
