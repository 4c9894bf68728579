"""The first page after signing in: device health of my org units and today's programmes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schedules import expand_programme, local_tz, to_local_wall, wall_to_utc
from server.access import policy, reach
from server.access.actor import Actor
from server.console.bulletin_pages import new_count
from server.console.device_pages import devices_with_flags, needs_attention
from server.console.render import page
from server.console.session import ConsoleActor
from server.console.zones import unit_names
from server.deps import SessionDep, now_of
from server.devices.models import Device
from server.live.schemas import LiveSessionOut
from server.plays.models import PlayRecord
from server.programmes.models import ENDED, PLANNED, SUBMITTED, Programme
from server.programmes.validation import to_spec
from server.relay import runs as relay_runs

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Occurrence:
    """One playback of a programme on the day shown."""

    start: datetime
    end: datetime
    programme: Programme
    item_id: str = ""


# Today's box lists what already played too: a one-off programme is "ended" once played.
TODAY_STATUSES = (*PLANNED, ENDED)


@dataclass(frozen=True)
class TodayItem:
    """One of today's playbacks with its state (outcome.* key) and how many devices played it."""

    occurrence: Occurrence
    state: str
    played: int
    reported: int


def local_day(now: datetime) -> tuple[datetime, datetime]:
    """Today in Vietnam, as a UTC interval."""
    today = to_local_wall(now).date()
    start = wall_to_utc(datetime.combine(today, time(0, 0)), tz=local_tz())
    return start, start + timedelta(days=1)


def occurrences(
    db: Session, actor: Actor, *, since: datetime, until: datetime, statuses: tuple[str, ...]
) -> list[Occurrence]:
    """Playbacks of the caller's programmes in [since, until), by start."""
    query = select(Programme).where(
        reach.reachable(actor, Programme), Programme.status.in_(statuses)
    )
    out: list[Occurrence] = []
    for programme in db.scalars(query):
        spec = to_spec(programme)
        if spec is None:
            continue
        for item in expand_programme(spec, window_start=since, window_end=until):
            if since <= item.start < until:
                out.append(Occurrence(item.start, item.end, programme, item.item_id))
    return sorted(out, key=lambda o: (o.start, o.programme.id))


def today_items(
    db: Session, actor: Actor, *, since: datetime, until: datetime, now: datetime
) -> list[TodayItem]:
    """Today's playbacks, played and still to come, each with what the devices reported."""
    found = occurrences(db, actor, since=since, until=until, statuses=TODAY_STATUSES)
    records = list(
        db.scalars(
            select(PlayRecord).where(
                PlayRecord.item_id.in_([o.item_id for o in found]),
                PlayRecord.planned_start >= since,
                PlayRecord.planned_start < until,
            )
        )
    )
    out: list[TodayItem] = []
    for o in found:
        mine = [r for r in records if r.item_id == o.item_id]
        played = sum(1 for r in mine if r.outcome == "played")
        if played:
            state = "played"
        elif mine:
            state = mine[0].outcome
        elif o.start <= now < o.end:
            state = "on_air"
        else:
            state = "upcoming" if o.start > now else "no_report"
        out.append(TodayItem(o, state, played, len(mine)))
    return out


def attention_list(rows: list[tuple[Device, list[str]]]) -> list[tuple[Device, list[str]]]:
    """Devices that need a technician, offline ones first, then by name."""
    found = [(d, f) for d, f in rows if needs_attention(d, f)]
    return sorted(found, key=lambda row: ("offline" not in row[1], row[0].name, row[0].uid))


def live_now(request: Request, actor: Actor) -> list[LiveSessionOut]:
    """Running live sessions the user may see (none when live audio is off)."""
    live = getattr(request.app.state, "live", None)
    if live is None:
        return []
    # The sessions belong to the event loop: read them there, not from this worker thread.
    sessions: list[LiveSessionOut] = anyio.from_thread.run(partial(live.list_sessions, actor=actor))
    return [s for s in sessions if s.state == "running"]


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """Devices online, offline and with alarms; today's programmes; live now; relay dead air."""
    rows = devices_with_flags(db, actor)
    online = sum(1 for d, _ in rows if d.online)
    alarms = attention_list(rows)
    now = now_of(request)
    since, until = local_day(now)
    today = today_items(db, actor, since=since, until=until, now=now)
    relay_open, relay_cleared = relay_runs.dashboard_alarms(db, actor=actor, now=now)
    waiting = db.scalar(
        select(func.count()).where(Programme.status == SUBMITTED, reach.reachable(actor, Programme))
    )
    return page(
        request,
        "dashboard.html",
        actor=actor,
        units=unit_names(db, actor),
        active="dashboard",
        total=len(rows),
        online=online,
        offline=len(rows) - online,
        alarms=alarms[:20],
        alarm_count=len(alarms),
        today=today,
        waiting=waiting or 0,
        day=to_local_wall(since),
        live=live_now(request, actor),
        relay_open=relay_open,
        relay_cleared=relay_cleared,
        bulletins_new=new_count(db, actor) if actor.may(policy.BULLETINS_RECEIVE) else 0,
    )
