"""CAP 1.2: alerts in from sources and admins (POST /cap), Loa's alerts out (the Atom feed)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import BULLETINS_SEND
from server.cap import feed, intake
from server.cap.parse import MAX_BYTES
from server.cap.schemas import CAP_TYPES, CapReceiptOut
from server.deps import Now, SessionDep, SettingsDep, now_of
from server.domain import DomainError
from server.openapi import problems

router = APIRouter(tags=["cap"])
Sender = Annotated[Actor, allow(BULLETINS_SEND)]
ATOM_TYPE = "application/atom+xml"
REPEAT: dict[int | str, dict[str, Any]] = {
    200: {"model": CapReceiptOut, "description": "the same alert was received before"}
}
# The bound shown is the default; LOA_CAP_MAX_BYTES sets the one enforced (413 past it).
_XML_BODY: dict[str, Any] = {
    "schema": {"type": "string", "maxLength": MAX_BYTES, "description": "a CAP 1.2 <alert>"}
}


async def _body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused (415, 413) before it is all read when its type or size is wrong."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in CAP_TYPES:
        raise DomainError(
            415, f"Send the alert as {' or '.join(CAP_TYPES)}, not {media[:60] or 'no type'}."
        )
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > max_bytes:
            raise DomainError(413, f"The alert is larger than {max_bytes} bytes.")
    return bytes(data)


def _receipt(receipt: intake.Receipt) -> JSONResponse:
    """201 for a message taken in now, 200 for a repeat of one taken in before."""
    message, bulletin = receipt.message, receipt.bulletin
    body = CapReceiptOut(
        message_id=message.id,
        sender=message.sender,
        identifier=message.identifier,
        msg_type=message.msg_type,
        status=message.status,
        repeat=receipt.repeat,
        logged_only=receipt.logged_only,
        bulletin_id=message.bulletin_id,
        bulletin_status=bulletin.status if bulletin is not None else None,
        level=bulletin.level if bulletin is not None else None,
        valid_until=bulletin.valid_until if bulletin is not None else None,
        cancelled_bulletin_ids=receipt.cancelled,
        test_programme_id=receipt.test_programme_id,
    )
    code = status.HTTP_200_OK if receipt.repeat else status.HTTP_201_CREATED
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


@router.post(
    "/cap",
    response_model=CapReceiptOut,
    status_code=status.HTTP_201_CREATED,
    responses=REPEAT | problems(409, 413, 415),
    openapi_extra={
        "requestBody": {
            "content": {t: _XML_BODY for t in CAP_TYPES},
            "required": True,
        }
    },
)
async def post_cap_alert(
    request: Request, db: SessionDep, settings: SettingsDep, actor: Sender
) -> JSONResponse:
    """Take in a CAP 1.2 alert: it becomes (Alert), replaces (Update) or cancels a bulletin."""
    data = await _body(request, settings.cap_max_bytes)
    receipt = await asyncio.to_thread(
        intake.receive,
        db,
        actor=actor,
        data=data,
        settings=settings,
        clock=partial(now_of, request),
    )
    return _receipt(receipt)


@router.get(
    "/cap/feed.atom",
    response_class=Response,
    responses={200: {"content": {ATOM_TYPE: {}}, "description": "an Atom feed of CAP alerts"}},
)
def cap_feed(request: Request, db: SessionDep, settings: SettingsDep, now: Now) -> Response:
    """Live emergency bulletins as CAP 1.2 alerts in an Atom feed (public, no sign-in)."""
    document = feed.atom_feed(db, settings=settings, now=now, self_link=str(request.url))
    return Response(document, media_type=ATOM_TYPE)
