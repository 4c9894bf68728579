"""Zones page: each zone of the caller's subtree and how announcements treat what plays there."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.access import policy
from server.bounds import IdPath
from server.console.programme_pages import my_zones
from server.console.render import page
from server.console.session import ConsoleActor, check_form_csrf
from server.console.zones import grouped, unit_names
from server.deps import SessionDep
from server.domain import DomainError
from server.orgs import service

router = APIRouter(include_in_schema=False)


@router.get("/zones", response_class=HTMLResponse)
def zones_page(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """The zones by org unit with their announcement mode; a form per zone for org writers."""
    if not actor.may(policy.ORGS_READ):
        raise HTTPException(403, detail="")
    units = unit_names(db, actor)
    return page(
        request,
        "zones.html",
        actor=actor,
        units=units,
        active="zones",
        groups=grouped(my_zones(db, actor), units),
        may_write=actor.may(policy.ORGS_WRITE),
        done=request.query_params.get("done", "") == "saved",
        error=request.query_params.get("error", "") == "saved",
    )


@router.post("/zones/{zone_id:int}/announcement", response_model=None)
def announcement_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    zone_id: IdPath,
    csrf: Annotated[str, Form(max_length=100)] = "",
    announcement_mode: Annotated[Literal["cut", "duck"], Form()] = "cut",
) -> Response:
    """Set a zone's announcement mode; its programmes without a mode of their own follow."""
    check_form_csrf(request, csrf)
    if not actor.may(policy.ORGS_WRITE):
        raise HTTPException(403, detail="")
    try:
        service.update_zone(
            db, actor=actor, zone_id=zone_id, changes={"announcement_mode": announcement_mode}
        )
    except DomainError:
        return RedirectResponse("/zones?error=saved", status_code=303)
    return RedirectResponse(f"/zones?done=saved#zone-{zone_id}", status_code=303)
