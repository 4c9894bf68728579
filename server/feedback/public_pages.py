"""The public feedback pages of a commune: the form (no JavaScript needed) and the follow-up."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from server.console.render import environment, local_time
from server.deps import Now, SessionDep, SettingsDep
from server.domain import DomainError
from server.feedback import intake
from server.feedback.models import FeedbackCase
from server.feedback.submit import read_submission, take_in
from server.feedback.views import public_out
from server.orgs.models import OrgUnit

router = APIRouter(include_in_schema=False)
Code = Annotated[str, Path(min_length=1, max_length=32)]
Tracking = Annotated[str, Path(min_length=1, max_length=40)]
# Nothing from elsewhere, no script at all; the form's own small stylesheet is inline.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'none'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the tracking code is in the URL
    "Cache-Control": "no-store",
}


def _render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(localtime=local_time, **context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def _form(
    db: Session,
    unit: OrgUnit,
    *,
    form: dict[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    return _render(
        "public_feedback_form.html",
        status_code=status_code,
        unit=unit,
        categories=intake.public_categories(db, unit_id=unit.id),
        form=form or {},
        error=error,
    )


def _not_found(unit: OrgUnit | None) -> HTMLResponse:
    return _render("public_feedback_status.html", status_code=404, unit=unit, case=None)


@router.get("/p/{code}/phan-anh", response_class=HTMLResponse)
def form_page(request: Request, db: SessionDep, code: Code) -> Response:
    """The form: category, content, optional name, phone and photo or voice note."""
    try:
        unit = intake.unit_by_code(db, code)
    except DomainError:
        return _not_found(None)
    return _form(db, unit)


@router.post("/p/{code}/phan-anh", response_class=HTMLResponse)
async def form_post(
    request: Request, db: SessionDep, settings: SettingsDep, now: Now, code: Code
) -> Response:
    """Take the form in; the answer page shows the tracking code (or the form with the reason)."""
    try:
        unit = intake.unit_by_code(db, code)
    except DomainError:
        return _not_found(None)
    form: dict[str, str] = {}
    try:
        body, data = await read_submission(request, settings, org_unit_code=code)
        form = body.model_dump(exclude={"website", "org_unit_code"})
        case = await take_in(request, db, settings=settings, body=body, data=data, now=now)
    except DomainError as exc:
        return _form(db, unit, form=form, error=str(exc.detail), status_code=exc.status_code)
    return _render(
        "public_feedback_status.html", status_code=201, unit=unit, case=public_out(case), new=True
    )


@router.get("/p/{code}/phan-anh/tra-cuu", response_model=None)
def lookup_form(
    code: Code, ma: Annotated[str, Query(max_length=40)] = ""
) -> RedirectResponse | HTMLResponse:
    """The lookup form's answer: on to the case's page."""
    clean = intake.normal_code(ma)
    if not clean:
        return _not_found(None)
    return RedirectResponse(f"/p/{code}/phan-anh/{clean}", status_code=303)


@router.get("/p/{code}/phan-anh/{tracking_code}", response_class=HTMLResponse)
def status_page(request: Request, db: SessionDep, code: Code, tracking_code: Tracking) -> Response:
    """Status, and the answer once published; any unknown code is the same 404 page."""
    try:
        unit = intake.unit_by_code(db, code)
        case: FeedbackCase = intake.lookup(db, tracking_code=tracking_code)
    except DomainError:
        return _not_found(None)
    if case.received_by_unit_id != unit.id:  # another commune's code: like none at all
        return _not_found(unit)
    return _render("public_feedback_status.html", unit=unit, case=public_out(case))
