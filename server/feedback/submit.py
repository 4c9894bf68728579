"""Reading a public submission (JSON or multipart, size-capped) and taking it in."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Message

from server.access.deps import client_ip
from server.domain import DomainError
from server.feedback import attachments, intake
from server.feedback.models import FeedbackCase
from server.feedback.schemas import FeedbackIn
from server.settings import ServerSettings

FORM_OVERHEAD = 64 * 1024  # the text fields and multipart framing around an attachment
# A flood of attachments (even refused ones) may use this many cores, never the whole
# server: decoding photos and transcoding voice notes is the only heavy public work.
ATTACHMENT_SLOTS = 2
SLOT_WAIT_S = 15.0
BUSY = "Too many attachments are being processed; try again in a minute. / Hệ thống đang bận."
FORM_URLENCODED = "application/x-www-form-urlencoded"
FIELDS = ("org_unit_code", "category", "content", "name", "phone", "website")


def _attachment_slots(request: Request) -> asyncio.Semaphore:
    """At most ATTACHMENT_SLOTS photos or voice notes decoded at once in this process."""
    slots: asyncio.Semaphore | None = getattr(request.app.state, "feedback_slots", None)
    if slots is None:
        slots = asyncio.Semaphore(ATTACHMENT_SLOTS)
        request.app.state.feedback_slots = slots
    return slots


def body_cap(settings: ServerSettings) -> int:
    """The largest request body taken in."""
    return settings.feedback_max_attachment_bytes + FORM_OVERHEAD


def _too_large(settings: ServerSettings) -> DomainError:
    mib = settings.feedback_max_attachment_bytes / (1024 * 1024)
    return DomainError(413, f"The submission is too large: attachments up to {mib:.0f} MiB.")


def parse(fields: dict[str, Any]) -> FeedbackIn:
    """The fields as a FeedbackIn; 422 naming the first wrong field."""
    try:
        return FeedbackIn.model_validate({k: v for k, v in fields.items() if k in FIELDS})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise DomainError(422, f"Invalid submission: {where}: {first.get('msg')}") from None


async def read_submission(
    request: Request, settings: ServerSettings, *, org_unit_code: str | None = None
) -> tuple[FeedbackIn, bytes | None]:
    """The fields and the attachment's bytes, refusing a body over the cap before reading it.

    `org_unit_code` (the public form's page) wins over a field of that name.
    """
    cap = body_cap(settings)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        raise _too_large(settings)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", "multipart/form-data", FORM_URLENCODED):
        raise DomainError(415, "Send the feedback as JSON or as multipart/form-data.")
    # Read with the cap whatever Content-Length said (a chunked body has none).
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > cap:
            raise _too_large(settings)
    if ctype == "application/json":
        try:
            fields = json.loads(raw)
        except ValueError:
            raise DomainError(422, "The body is not valid JSON.") from None
        if not isinstance(fields, dict):
            raise DomainError(422, "The body must be a JSON object.")
        return parse(fields), None
    # A form, parsed from the bytes already read.
    form = await _replayed(request, bytes(raw)).form(
        max_files=1, max_fields=len(FIELDS) + 2, max_part_size=64_000
    )
    texts: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    if org_unit_code is not None:
        texts["org_unit_code"] = org_unit_code
    body = parse(texts)
    upload = form.get("attachment")
    data = None
    if isinstance(upload, UploadFile):
        data = await upload.read(settings.feedback_max_attachment_bytes + 1)
        await upload.close()
        if len(data) > settings.feedback_max_attachment_bytes:
            raise _too_large(settings)
        data = data or None  # an empty file input: no attachment
    return body, data


def _replayed(request: Request, raw: bytes) -> Request:
    """The same request, its body served from `raw` (the stream is consumed)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(request.scope, receive)


async def take_in(
    request: Request,
    db: Session,
    *,
    settings: ServerSettings,
    body: FeedbackIn,
    data: bytes | None,
    now: datetime,
) -> FeedbackCase:
    """Honeypot and rate limits first (cheap), then the attachment, then the case."""
    limits = intake.Limits(
        per_address=settings.feedback_per_address,
        per_phone=settings.feedback_per_phone,
        window_s=settings.feedback_rate_window_s,
    )
    sender = intake.sender_hash(client_ip(request), data_dir=settings.data_dir)
    await run_in_threadpool(intake.precheck, db, body=body, sender=sender, limits=limits, now=now)
    stored = None
    if data is not None:
        slots = _attachment_slots(request)
        try:  # waiting here holds no worker thread: the console's routes keep theirs
            await asyncio.wait_for(slots.acquire(), timeout=SLOT_WAIT_S)
        except TimeoutError:
            raise DomainError(503, BUSY) from None
        try:
            stored = await run_in_threadpool(
                attachments.store,
                data,
                root=settings.data_dir / "feedback",
                max_voice_s=settings.feedback_max_voice_s,
            )
        finally:
            slots.release()
    return await run_in_threadpool(
        intake.submit,
        db,
        body=body,
        sender=sender,
        attachment=stored,
        limits=limits,
        default_due_days=settings.feedback_default_due_days,
        now=now,
    )
