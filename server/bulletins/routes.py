"""Bulletins down the tree: send, approve on the sending side, the commune's inbox and answers."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import (
    BULLETINS_APPROVE,
    BULLETINS_INBOX,
    BULLETINS_READ,
    BULLETINS_RECEIVE,
    BULLETINS_SEND,
)
from server.bounds import IdPath, Limit, Offset
from server.bulletins import receiving, service, views
from server.bulletins.schemas import (
    AcceptBody,
    BulletinCreate,
    BulletinDetail,
    BulletinPage,
    DeclineBody,
    InboxPage,
    Level,
    RejectBody,
)
from server.deps import Now, SessionDep, SettingsDep
from server.programmes.conflicts import conflict_days

router = APIRouter(tags=["bulletins"])
Reader = Annotated[Actor, allow(BULLETINS_READ)]
Sender = Annotated[Actor, allow(BULLETINS_SEND)]
Approver = Annotated[Actor, allow(BULLETINS_APPROVE)]
Receiver = Annotated[Actor, allow(BULLETINS_RECEIVE)]
InboxReader = Annotated[Actor, allow(BULLETINS_INBOX)]
BulletinStatus = Literal["submitted", "approved", "rejected", "cancelled"]
DeliveryStatus = Literal[
    "delivered", "seen", "scheduled", "declined", "played", "expired", "withdrawn"
]


@router.post("/bulletins", response_model=BulletinDetail, status_code=status.HTTP_201_CREATED)
def create_bulletin(
    db: SessionDep, settings: SettingsDep, now: Now, actor: Sender, body: BulletinCreate
) -> BulletinDetail:
    """Send a bulletin to org units of your subtree (ids or administrative codes).

    It waits for the editorial approval, except an emergency from a user who may run
    emergencies and a trusted source's level; text-only bulletins are read by TTS.
    """
    bulletin = service.create(db, actor=actor, fields=body, now=now, settings=settings)
    return views.detail(db, actor=actor, bulletin_id=bulletin.id, now=now)


@router.get("/bulletins", response_model=BulletinPage)
def list_bulletins(
    db: SessionDep,
    actor: Reader,
    status_: Annotated[BulletinStatus | None, Query(alias="status")] = None,
    level: Annotated[Level | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> BulletinPage:
    """Bulletins sent by your subtree, newest first."""
    return views.sent(db, actor=actor, status=status_, level=level, limit=limit, offset=offset)


@router.get("/bulletins/inbox", response_model=InboxPage)
def bulletin_inbox(
    db: SessionDep,
    now: Now,
    actor: InboxReader,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> InboxPage:
    """Bulletins delivered to your units, newest first; `new` counts the unopened ones."""
    return views.inbox(db, actor=actor, status=status_, limit=limit, offset=offset, now=now)


@router.get("/bulletins/{bulletin_id:int}", response_model=BulletinDetail)
def get_bulletin(db: SessionDep, now: Now, actor: Reader, bulletin_id: IdPath) -> BulletinDetail:
    """The sender sees every delivery (overdue priority ones flagged); a receiver its own."""
    return views.detail(db, actor=actor, bulletin_id=bulletin_id, now=now)


@router.post("/bulletins/{bulletin_id:int}/approve", response_model=BulletinDetail)
def approve_bulletin(
    db: SessionDep, settings: SettingsDep, now: Now, actor: Approver, bulletin_id: IdPath
) -> BulletinDetail:
    """Approve a submitted bulletin of your subtree: it is delivered to every targeted commune."""
    service.approve(db, actor=actor, bulletin_id=bulletin_id, now=now, settings=settings)
    return views.detail(db, actor=actor, bulletin_id=bulletin_id, now=now)


@router.post("/bulletins/{bulletin_id:int}/reject", response_model=BulletinDetail)
def reject_bulletin(
    db: SessionDep, now: Now, actor: Approver, bulletin_id: IdPath, body: RejectBody
) -> BulletinDetail:
    """Send a submitted bulletin back; the reason is required."""
    service.reject(db, actor=actor, bulletin_id=bulletin_id, reason=body.reason, now=now)
    return views.detail(db, actor=actor, bulletin_id=bulletin_id, now=now)


@router.post("/bulletins/{bulletin_id:int}/cancel", response_model=BulletinDetail)
def cancel_bulletin(db: SessionDep, now: Now, actor: Sender, bulletin_id: IdPath) -> BulletinDetail:
    """Withdraw a bulletin: open deliveries withdrawn, programmes made from it cancelled."""
    service.cancel(db, actor=actor, bulletin_id=bulletin_id, now=now)
    return views.detail(db, actor=actor, bulletin_id=bulletin_id, now=now)


@router.post("/bulletins/{bulletin_id:int}/seen", response_model=BulletinDetail)
def see_bulletin(db: SessionDep, now: Now, actor: Receiver, bulletin_id: IdPath) -> BulletinDetail:
    """Mark the bulletin opened by your units (delivered -> seen)."""
    receiving.mark_seen(db, actor=actor, bulletin_id=bulletin_id, now=now)
    return views.detail(db, actor=actor, bulletin_id=bulletin_id, now=now)


@router.post("/bulletins/{bulletin_id:int}/accept", response_model=BulletinDetail)
def accept_bulletin(
    db: SessionDep,
    settings: SettingsDep,
    now: Now,
    actor: Receiver,
    bulletin_id: IdPath,
    body: AcceptBody,
) -> BulletinDetail:
    """Schedule the bulletin as your commune's own programme, at `start` or in the next slot."""
    receiving.accept(
        db,
        actor=actor,
        bulletin_id=bulletin_id,
        choice=body,
        now=now,
        horizon_days=conflict_days(settings),
    )
    return views.detail(db, actor=actor, bulletin_id=bulletin_id, now=now)


@router.post("/bulletins/{bulletin_id:int}/decline", response_model=BulletinDetail)
def decline_bulletin(
    db: SessionDep, now: Now, actor: Receiver, bulletin_id: IdPath, body: DeclineBody
) -> BulletinDetail:
    """Do not broadcast a normal bulletin; the reason is required and shown to the sender."""
    receiving.decline(
        db,
        actor=actor,
        bulletin_id=bulletin_id,
        reason=body.reason,
        org_unit_id=body.org_unit_id,
        now=now,
    )
    return views.detail(db, actor=actor, bulletin_id=bulletin_id, now=now)
