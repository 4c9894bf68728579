"""Relay sources ("Nguồn tiếp âm"): the stations live and scheduled relays may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field
from sqlalchemy.orm import Session

from server.access import policy
from server.access.actor import Actor
from server.bounds import MAX_ID, IdPath
from server.console.admin_pages import unit_choices
from server.console.render import page
from server.console.session import ConsoleActor, check_form_csrf
from server.deps import SessionDep
from server.domain import DomainError
from server.relay import service
from server.relay.models import KINDS, MAX_URL

router = APIRouter(include_in_schema=False)
FormId = Annotated[int, Field(ge=1, le=MAX_ID)]


@dataclass(frozen=True)
class SourceRow:
    """A source as the list shows it: the URL's host only, never its path or query."""

    id: int
    name: str
    kind: str
    host: str
    enabled: bool
    allow_private: bool
    unit: str


def host_of(url: str) -> str:
    """The host (and a non-default port) of a URL; a path or query may carry a key."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "?"
    return f"{host}:{port}" if port else host


def _manager(actor: Actor) -> None:
    if not actor.may(policy.RELAY_SOURCES_MANAGE):
        raise HTTPException(403, detail="")


def _page(
    request: Request,
    db: Session,
    actor: Actor,
    *,
    error: str = "",
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    units = unit_choices(db, actor)
    names = {u.id: u.name for u in units}
    rows = [
        SourceRow(
            s.id,
            s.name,
            s.kind,
            host_of(s.url),
            s.enabled,
            s.allow_private,
            names.get(s.org_unit_id, str(s.org_unit_id)),
        )
        for s in service.list_sources(db, actor=actor)
    ]
    return page(
        request,
        "relay_sources.html",
        actor=actor,
        active="relay_sources",
        status_code=status_code,
        sources=rows,
        units=units,
        kinds=KINDS,
        error=error,
        form=form or {},
        done=request.query_params.get("done", ""),
    )


@router.get("/relay-sources", response_class=HTMLResponse)
def relay_sources_page(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """The sources of the caller's subtree, a form to add one, enable and disable buttons."""
    _manager(actor)
    return _page(request, db, actor)


@router.post("/relay-sources", response_model=None)
def add_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    csrf: Annotated[str, Form(max_length=100)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    url: Annotated[str, Form(max_length=MAX_URL)] = "",
    kind: Annotated[Literal["national", "provincial", "other"], Form()] = "other",
    org_unit_id: Annotated[FormId | None, Form()] = None,
) -> Response:
    """Register a source; a refused URL or name shows the form again with the reason."""
    check_form_csrf(request, csrf)
    _manager(actor)
    form = {"name": name, "kind": kind, "org_unit_id": org_unit_id}  # the URL is not echoed
    unit = org_unit_id or actor.user.org_unit_id
    if unit is None:
        return _page(request, db, actor, error="relay.err.unit", form=form, status_code=422)
    try:
        service.create(
            db, actor=actor, name=name, url=url, kind=kind, enabled=True, allow_private=False,
            org_unit_id=unit,
        )  # fmt: skip
    except DomainError as exc:
        form["detail"] = exc.detail
        return _page(request, db, actor, error="relay.err.add", form=form, status_code=exc.status)
    return RedirectResponse("/relay-sources?done=added", status_code=303)


@router.post("/relay-sources/{relay_source_id:int}/enabled", response_model=None)
def enabled_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    relay_source_id: IdPath,
    csrf: Annotated[str, Form(max_length=100)] = "",
    enabled: Annotated[bool, Form()] = False,
) -> Response:
    """Enable or disable a source (a source that unfinished programmes relay stays on)."""
    check_form_csrf(request, csrf)
    _manager(actor)
    try:
        service.update(
            db, actor=actor, relay_source_id=relay_source_id, changes={"enabled": enabled}
        )
    except DomainError as exc:
        form = {"detail": exc.detail}
        return _page(request, db, actor, error="relay.err.change", form=form,
                     status_code=exc.status)  # fmt: skip
    return RedirectResponse(
        f"/relay-sources?done={'enabled' if enabled else 'disabled'}", status_code=303
    )
