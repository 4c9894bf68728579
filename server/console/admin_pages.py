"""Administration: the users of the admin's subtree, and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schedules import local_tz, wall_to_utc
from server.access import policy, reach
from server.access.actor import Actor
from server.audit import service as audit
from server.audit.models import AuditEntry
from server.bounds import MAX_ID
from server.console.audit_text import audit_summary
from server.console.catalogue import CATALOGUE
from server.console.dates import parse_day
from server.console.i18n import Translator, language_of
from server.console.render import page
from server.console.session import ConsoleActor
from server.deps import SessionDep
from server.devices.models import Device
from server.orgs.models import OrgUnit
from server.users.models import ROLES, SERVICE_ROLES, AuthToken, User

router = APIRouter(include_in_schema=False)
# Action families the audit filter offers, in the order of the select ("auth." = sign-ins).
FAMILIES = (
    "programme",
    "live",
    "clip",
    "bulletin",
    "cap",
    "relay_source",
    "feedback",
    "device",
    "zone",
    "org_unit",
    "source",
    "user",
    "auth",
)
PAGE_ROWS = 100
MAX_ROWS = 1000


@dataclass(frozen=True)
class UnitChoice:
    """An org unit for a select, indented by its depth inside the admin's subtree."""

    id: int
    name: str
    depth: int

    @property
    def label(self) -> str:
        """The name indented with no-break spaces (a select collapses ordinary ones)."""
        return "\u00a0\u00a0\u00a0" * self.depth + ("› " if self.depth else "") + self.name


def unit_choices(db: Session, actor: Actor) -> list[UnitChoice]:
    """The org units of the caller's subtree in tree order (children under their parent)."""
    units = list(
        db.scalars(
            select(OrgUnit)
            .where(reach.reachable(actor, OrgUnit))
            .order_by(OrgUnit.name, OrgUnit.id)
            .limit(5000)
        )
    )
    ids = {u.id for u in units}
    children: dict[int | None, list[OrgUnit]] = {}
    for unit in units:
        parent = unit.parent_id if unit.parent_id in ids else None
        children.setdefault(parent, []).append(unit)
    out: list[UnitChoice] = []
    stack = [(u, 0) for u in reversed(children.get(None, []))]
    while stack:
        unit, depth = stack.pop()
        out.append(UnitChoice(unit.id, unit.name, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(unit.id, [])))
    return out


def users_in_reach(db: Session, actor: Actor) -> list[User]:
    """Users of the caller's subtree, by username (as GET /api/v1/users lists them)."""
    people = (reach.reachable(actor, User), User.role.not_in(SERVICE_ROLES))  # not sources
    query = select(User).where(*people).order_by(User.username)
    return list(db.scalars(query.limit(5000)))


def last_sign_ins(db: Session, user_ids: list[int]) -> dict[int, datetime]:
    """When each user last signed in (their newest console session or API token)."""
    if not user_ids:
        return {}
    rows = db.execute(
        select(AuthToken.user_id, func.max(AuthToken.created_at))
        .where(AuthToken.user_id.in_(user_ids))
        .group_by(AuthToken.user_id)
    ).all()
    return {user_id: at for user_id, at in rows if at is not None}


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """Users in reach with role, org unit and emergency right; add, edit, reset a password."""
    if not actor.may(policy.USERS_MANAGE):
        raise HTTPException(403, detail="")
    rows = users_in_reach(db, actor)
    units = unit_choices(db, actor)
    names = {u.id: u.name for u in units}
    missing = {u.org_unit_id for u in rows if u.org_unit_id is not None} - set(names)
    if missing:  # cannot happen with a consistent tree; show the name rather than a number
        names |= dict(db.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(missing))))
    return page(
        request,
        "users.html",
        actor=actor,
        active="users",
        users=rows,
        units=units,
        unit_names=names,
        last_seen=last_sign_ins(db, [u.id for u in rows]),
        roles=ROLES,
        emergency_roles=sorted(policy.EMERGENCY_ROLES),
    )


def _device_names(db: Session, entries: list[AuditEntry]) -> dict[str, str]:
    """uid -> name of the devices the entries' summaries mention (people know names)."""
    codes = [e.object_id or "" for e in entries if e.object_type == "device"]
    ids = {int(code) for code in codes if code.isdigit()}
    if not ids:
        return {}
    return {d.uid: d.name for d in db.scalars(select(Device).where(Device.id.in_(ids)))}


def _suffixes(prefix: str) -> frozenset[str]:
    """The values the catalogue has a label for under prefix (others are shown raw)."""
    return frozenset(k.removeprefix(prefix) for k in CATALOGUE if k.startswith(prefix))


def _optional_id(value: str) -> int | None:
    if not value.strip():
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_ID:
        raise HTTPException(422, detail=f"user_id must be a user number, not {value!r}.")
    return int(value)


def _optional_day(name: str, value: str) -> date | None:
    if not value.strip():
        return None
    try:
        return parse_day(value)
    except ValueError:
        raise HTTPException(422, detail=f"{name} must be a date like 31/03/2031.") from None


def _utc_day_start(day: date) -> datetime:
    return wall_to_utc(datetime.combine(day, time(0, 0)), tz=local_tz())


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    family: Annotated[str, Query(max_length=20)] = "",
    user: Annotated[str, Query(alias="user_id", max_length=12)] = "",
    start_day: Annotated[str, Query(alias="start", max_length=10)] = "",
    end_day: Annotated[str, Query(alias="end", max_length=10)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = PAGE_ROWS,
) -> HTMLResponse:
    """Who did what, newest first, filtered by action family, user and local dates."""
    if not actor.may(policy.AUDIT_READ):
        raise HTTPException(403, detail="")
    # The filter form sends empty fields for "any": they mean no filter, not a bad value.
    user_id = _optional_id(user)
    start, end = _optional_day("start", start_day), _optional_day("end", end_day)
    if user_id is not None:
        reach.load(db, actor, User, user_id)  # 404 outside the caller's reach, as the API does
    family = family if family in FAMILIES else ""
    if start and end and end < start:
        start, end = end, start
    where = audit.AuditFilter(
        user_id=user_id,
        action=f"{family}." if family else None,
        since=_utc_day_start(start) if start else None,
        until=_utc_day_start(end + timedelta(days=1)) if end else None,
    )
    entries, total = audit.list_entries(db, actor=actor, where=where, limit=limit, offset=0)
    more_url = ""
    if total > len(entries) and limit < MAX_ROWS:
        query: dict[str, object] = {"family": family, "user_id": user_id or ""}
        query |= {"start": start or "", "end": end or ""}
        query = {k: v for k, v in query.items() if v != ""}
        query["limit"] = min(limit + PAGE_ROWS, MAX_ROWS)
        more_url = "/audit?" + urlencode(query) + f"#a{entries[-1].id}"
    return page(
        request,
        "audit.html",
        actor=actor,
        active="audit",
        entries=entries,
        total=total,
        more_url=more_url,
        families=FAMILIES,
        family=family,
        user_id=user_id,
        start=start,
        end=end,
        users=users_in_reach(db, actor),
        summary_of=partial(
            audit_summary,
            t=Translator(language_of(request)),
            device_names=_device_names(db, entries),
        ),
        labelled=_suffixes("audit.act."),
        object_types=_suffixes("audit.obj."),
    )
