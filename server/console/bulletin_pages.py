"""Bulletins from above (Bản tin cấp trên): a commune's inbox, one bulletin, accept and decline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from schedules import local_tz, wall_to_utc
from server.access import policy, reach
from server.access.actor import Actor
from server.bounds import MAX_ID, IdPath
from server.bulletins import placement, receiving, slot_service, views
from server.bulletins.models import DELIVERED, NORMAL, SEEN, Bulletin, BulletinDelivery
from server.bulletins.schemas import AcceptBody, BulletinDetail, DeliveryOut
from server.console.dates import parse_day
from server.console.render import page
from server.console.session import ConsoleActor, check_form_csrf
from server.console.zones import unit_names
from server.deps import SessionDep, SettingsDep, now_of
from server.domain import DomainError
from server.orgs.models import OrgUnit, Zone
from server.programmes.conflicts import conflict_days

router = APIRouter(include_in_schema=False)
PAGE_ROWS = 100
FormId = Annotated[int, Field(ge=1, le=MAX_ID)]
_TIME = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def incoming(actor: Actor) -> Select[BulletinDelivery]:
    """Deliveries to the caller's units, less those the caller's side sent to units below it."""
    # The API's inbox lists every reachable delivery, so a province would find there what it
    # sent down itself; a unit's own bulletin to its villages is delivered to the unit: kept.
    return (
        select(BulletinDelivery)
        .join(Bulletin, Bulletin.id == BulletinDelivery.bulletin_id)
        .where(
            reach.reachable(actor, BulletinDelivery),
            or_(
                ~reach.reachable(actor, Bulletin),
                BulletinDelivery.org_unit_id == Bulletin.org_unit_id,
            ),
        )
    )


def received_here(actor: Actor, bulletin: Bulletin, delivery: BulletinDelivery) -> bool:
    """The same rule as `incoming`, for one delivery."""
    return not actor.reaches(bulletin.org_unit_id) or delivery.org_unit_id == bulletin.org_unit_id


def new_count(db: Session, actor: Actor) -> int:
    """Bulletins from above delivered to the caller's units and not opened yet."""
    query = incoming(actor).where(BulletinDelivery.status == DELIVERED)
    return int(db.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _names(db: Session, ids: list[int]) -> dict[int, str]:
    rows = db.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(set(ids))))
    return {unit_id: name for unit_id, name in rows.all()}


def _receiver(actor: Actor) -> None:
    if not actor.may(policy.BULLETINS_RECEIVE):
        raise HTTPException(403, detail="")


@router.get("/bulletins/inbox", response_class=HTMLResponse)
def inbox_page(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """Bulletins from above, newest first, with level, status, validity and sender."""
    _receiver(actor)
    now = now_of(request)
    query = incoming(actor).order_by(BulletinDelivery.created_at.desc(), BulletinDelivery.id.desc())
    rows = list(db.scalars(query.limit(PAGE_ROWS)))
    bulletins = {
        b.id: b
        for b in db.scalars(select(Bulletin).where(Bulletin.id.in_({d.bulletin_id for d in rows})))
    }
    names = _names(
        db, [*(d.org_unit_id for d in rows), *(b.org_unit_id for b in bulletins.values())]
    )
    items = []
    for d in rows:
        b = bulletins[d.bulletin_id]
        items.append(
            (
                views.bulletin_out(b, names.get(b.org_unit_id, ""), []),
                views.delivery_out(b, d, names.get(d.org_unit_id, ""), now),
            )
        )
    return page(
        request,
        "bulletins_inbox.html",
        actor=actor,
        active="bulletins_inbox",
        items=items,
        several_units=len({d.org_unit_id for d in rows}) > 1,
        new=new_count(db, actor),
        now=now,
    )


@dataclass(frozen=True)
class SlotRow:
    """One priority bulletin of a slot, in play order, for the reorder list."""

    delivery_id: int
    title: str
    position: int
    start: datetime | None
    mine: bool


@dataclass(frozen=True)
class Receiving:
    """What the detail page shows about one of the caller's deliveries of the bulletin."""

    delivery: DeliveryOut
    zones: list[Zone]
    may_accept: bool
    may_decline: bool
    slot: list[SlotRow]
    slot_movable: bool


def _slot(db: Session, delivery: BulletinDelivery, now: datetime) -> tuple[list[SlotRow], bool]:
    """The priority items of the delivery's slot, and whether their order may still change."""
    found = placement.placed_priority(db, delivery=delivery)
    if found is None:
        return [], False
    _bulletin, head = found
    rows = []
    for d in placement.slot_group(db, org_unit_id=delivery.org_unit_id, head=head):
        b = db.get(Bulletin, d.bulletin_id)
        rows.append(
            SlotRow(
                d.id, b.title if b else "", d.slot_position or 0, d.first_start, d.id == delivery.id
            )
        )
    return rows, head > now


def _received(
    db: Session, actor: Actor, bulletin_id: int
) -> tuple[Bulletin, list[BulletinDelivery]]:
    """The bulletin and the caller's deliveries of it; 404 when none is in the inbox."""
    deliveries = receiving.received(db, actor=actor, bulletin_id=bulletin_id)
    bulletin = receiving.bulletin_of(db, deliveries[0])
    if not any(received_here(actor, bulletin, d) for d in deliveries):
        raise HTTPException(404, detail=f"Bulletin {bulletin_id} does not exist.")
    return bulletin, deliveries


def _detail_page(
    request: Request,
    db: Session,
    actor: Actor,
    bulletin_id: int,
    *,
    error: str = "",
    error_detail: str = "",
    form: dict[str, Any] | None = None,
    status_code: int = 200,
    mark_seen: bool = True,
) -> HTMLResponse:
    now = now_of(request)
    bulletin, deliveries = _received(db, actor, bulletin_id)
    if mark_seen and any(d.status == DELIVERED for d in deliveries):
        receiving.mark_seen(db, actor=actor, bulletin_id=bulletin_id, now=now)
    detail: BulletinDetail = views.detail(db, actor=actor, bulletin_id=bulletin_id, now=now)
    by_id = {d.id: d for d in deliveries}
    open_ = bulletin.valid_until > now
    shown = []
    for out in detail.deliveries:
        row = by_id.get(out.id)
        if row is None or not received_here(actor, bulletin, row):
            continue
        slot, movable = _slot(db, row, now)
        may_accept = open_ and row.status in (DELIVERED, SEEN)
        shown.append(
            Receiving(
                delivery=out,
                zones=placement.subtree_zones(db, org_unit_id=row.org_unit_id),
                may_accept=may_accept,
                may_decline=may_accept and bulletin.level == NORMAL,
                slot=slot,
                slot_movable=movable,
            )
        )
    clips = [bc.clip for bc in bulletin.clips]
    return page(
        request,
        "bulletin_received.html",
        actor=actor,
        units=unit_names(db, actor),
        active="bulletins_inbox",
        b=detail,
        clips=clips,
        receiving=shown,
        several=len(shown) > 1,
        error=error,
        error_detail=error_detail,
        done=request.query_params.get("done", "") if not error else "",
        form=form or {},
        status_code=status_code,
    )


@router.get("/bulletins/inbox/{bulletin_id:int}", response_class=HTMLResponse)
def received_page(
    request: Request, db: SessionDep, actor: ConsoleActor, bulletin_id: IdPath
) -> HTMLResponse:
    """One bulletin from above; opening it marks the caller's deliveries seen."""
    _receiver(actor)
    return _detail_page(request, db, actor, bulletin_id)


def _failed(
    request: Request, db: Session, actor: Actor, bulletin_id: int, exc: DomainError, key: str
) -> HTMLResponse:
    """The service refused: nothing it started is kept; the page says so in Vietnamese."""
    db.rollback()
    if exc.status == 404:
        raise exc
    return _detail_page(
        request, db, actor, bulletin_id, error=key, error_detail=str(exc.detail),
        status_code=exc.status, mark_seen=False,
    )  # fmt: skip


def local_start(day: str, at: str) -> datetime | None:
    """The local date and time the form gives, as UTC; None when either is unreadable."""
    found = _TIME.match(at)
    try:
        when = parse_day(day)
    except ValueError:
        return None
    if found is None:
        return None
    wall = datetime(when.year, when.month, when.day, int(found.group(1)), int(found.group(2)))
    return wall_to_utc(wall, tz=local_tz())


@router.post("/bulletins/inbox/{bulletin_id:int}/accept", response_model=None)
def accept_form(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    actor: ConsoleActor,
    bulletin_id: IdPath,
    csrf: Annotated[str, Form(max_length=100)] = "",
    org_unit_id: Annotated[FormId | None, Form()] = None,
    when: Annotated[str, Form(max_length=10)] = "slot",
    day: Annotated[str, Form(max_length=20)] = "",
    at: Annotated[str, Form(max_length=10)] = "",
    zone_ids: Annotated[list[FormId], Form(max_length=1000)] = [],  # noqa: B006
) -> Response:
    """Schedule the bulletin in the next regular slot or at a local date and time."""
    check_form_csrf(request, csrf)
    _receiver(actor)
    form = {"when": when, "day": day, "at": at, "org_unit_id": org_unit_id}
    start = None
    if not zone_ids:
        return _detail_page(
            request, db, actor, bulletin_id, error="bul.err.no_zone", form=form,
            status_code=422, mark_seen=False,
        )  # fmt: skip
    if when == "at":
        start = local_start(day, at)
        if start is None:
            return _detail_page(
                request, db, actor, bulletin_id, error="bul.err.bad_time", form=form,
                status_code=422, mark_seen=False,
            )  # fmt: skip
    choice = AcceptBody(
        start=start, next_slot=start is None, zone_ids=zone_ids, org_unit_id=org_unit_id
    )
    try:
        receiving.accept(
            db, actor=actor, bulletin_id=bulletin_id, choice=choice, now=now_of(request),
            horizon_days=conflict_days(settings),
        )  # fmt: skip
    except DomainError as exc:
        return _failed(request, db, actor, bulletin_id, exc, "bul.err.accept")
    return RedirectResponse(f"/bulletins/inbox/{bulletin_id}?done=accepted", status_code=303)


@router.post("/bulletins/inbox/{bulletin_id:int}/decline", response_model=None)
def decline_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    bulletin_id: IdPath,
    csrf: Annotated[str, Form(max_length=100)] = "",
    org_unit_id: Annotated[FormId | None, Form()] = None,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Decline a normal bulletin; without a reason nothing changes."""
    check_form_csrf(request, csrf)
    _receiver(actor)
    if not reason.strip():
        return _detail_page(
            request, db, actor, bulletin_id, error="bul.err.no_reason",
            form={"org_unit_id": org_unit_id}, status_code=422, mark_seen=False,
        )  # fmt: skip
    try:
        receiving.decline(
            db, actor=actor, bulletin_id=bulletin_id, reason=reason, org_unit_id=org_unit_id,
            now=now_of(request),
        )  # fmt: skip
    except DomainError as exc:
        return _failed(request, db, actor, bulletin_id, exc, "bul.err.decline")
    return RedirectResponse(f"/bulletins/inbox/{bulletin_id}?done=declined", status_code=303)


@router.post("/bulletins/inbox/deliveries/{delivery_id:int}/position", response_model=None)
def move_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    delivery_id: IdPath,
    csrf: Annotated[str, Form(max_length=100)] = "",
    position: Annotated[int, Form(ge=0, le=1000)] = 0,
) -> Response:
    """Move a priority bulletin within its regular slot (0 = first)."""
    check_form_csrf(request, csrf)
    _receiver(actor)
    bulletin_id = reach.load(db, actor, BulletinDelivery, delivery_id).bulletin_id
    try:
        slot_service.move_delivery(
            db, actor=actor, delivery_id=delivery_id, position=position, now=now_of(request)
        )
    except DomainError as exc:
        return _failed(request, db, actor, bulletin_id, exc, "bul.err.move")
    return RedirectResponse(f"/bulletins/inbox/{bulletin_id}?done=moved", status_code=303)
