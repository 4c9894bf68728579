"""Jinja2 environment, the per-request page context, and local-time formatting."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from schedules import to_local_wall
from schedules.rule_text import rule_text
from server.access import policy
from server.access.actor import Actor
from server.access.deps import SESSION_COOKIE, csrf_token_for
from server.console.dates import day_text
from server.console.i18n import JS_KEYS, Translator, language_of
from server.console.zones import grouped, zone_label

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def local_time(value: datetime | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
    """A UTC time shown in Vietnam's wall time ('' for None)."""
    if value is None:
        return ""
    return f"{to_local_wall(value):{fmt}}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one Jinja2 environment (templates are autoescaped)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["localtime"] = local_time
    env.globals["zone_label"] = zone_label
    env.filters["vn_date"] = day_text
    env.globals["zones_grouped"] = grouped
    env.filters["rule_text"] = lambda rrule, lang="vi": rule_text(rrule or "", lang=lang)
    env.filters["tojson_attr"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env


def schedule_state(reported: int | None, published: int | None) -> str:
    """Whether a device holds the newest schedule, in words (versions are technical detail)."""
    key = "devices.schedule_none"
    if published is not None:
        key = "devices.schedule_current" if reported == published else "devices.schedule_behind"
    return key


def nav_items(actor: Actor) -> list[tuple[str, str, str]]:
    """(key, href, label key) of the menu entries this user may open."""
    items = [("dashboard", "/", "nav.dashboard"), ("devices", "/devices", "nav.devices")]
    items.append(("clips", "/clips", "nav.clips"))
    items.append(("programmes", "/programmes", "nav.programmes"))
    if actor.may(policy.PROGRAMMES_APPROVE):
        items.append(("approvals", "/approvals", "nav.approvals"))
    items.append(("reports", "/reports", "nav.reports"))
    return items


def page(
    request: Request,
    template: str,
    *,
    actor: Actor | None,
    active: str = "",
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a console page with the user, menu, language and CSRF token."""
    lang = language_of(request)
    t = Translator(lang)
    session = request.cookies.get(SESSION_COOKIE, "")
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            t=t,
            lang=lang,
            actor=actor,
            user=actor.user if actor else None,
            nav=nav_items(actor) if actor else [],
            active=active,
            csrf=csrf_token_for(session) if session and actor else "",
            js_strings=t.subset(JS_KEYS),
            schedule_state=lambda reported, published: t(schedule_state(reported, published)),
            may=(lambda perm: actor is not None and actor.may(perm)),
            P=policy,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


# The console loads nothing from elsewhere; inline scripts are limited to JSON data blocks.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
