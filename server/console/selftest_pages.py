"""What the device page needs of the self-test service, and its two forms (run now, schedule)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import policy, reach
from server.access.actor import Actor
from server.console.catalogue import CATALOGUE
from server.console.i18n import Translator
from server.console.selftest_view import (
    BANDS,
    TONE_COLOURS,
    band_rows,
    battery_cap,
    power_state,
    tone,
    trend,
)
from server.devices.models import Device
from server.domain import DomainError
from server.orgs.models import OrgUnit
from server.orgs.tree import ancestor_ids
from server.plays.models import DeviceEventRecord
from server.selftest import service
from server.selftest.schedule import quiet_hours_problem, resolve

RECENT_RUNS = 10
RECENT_EVENTS = 10
CODES = frozenset(k for k in CATALOGUE if k.startswith("selftest.code."))
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def run_view(row: DeviceEventRecord) -> dict[str, Any]:
    """A stored self-test event in the API's run shape (GET /devices/{id}/self-tests)."""
    data = row.data or {}
    figures = data.get("figures")
    return {
        "id": row.id,
        "at": row.at,
        "code": row.code,
        "verdict": service.VERDICTS.get(row.code, row.code),
        "detail": row.detail,
        "command_id": row.command_id,
        "baseline": bool(data.get("baseline")) or row.code == "baseline",
        "level_vs_baseline_db": data.get("level_vs_baseline_db"),
        "figures": figures if isinstance(figures, dict) else None,
        "reasons": [str(r) for r in data.get("reasons") or []],
    }


@dataclass(frozen=True)
class UnitOption:
    """An org unit a device's schedule can be set on (the device's own, or one above it)."""

    id: int
    name: str


def schedule_units(db: Session, actor: Actor, device: Device) -> list[UnitOption]:
    """The device's unit and the units above it that the caller may change, nearest first
    (PATCH /org-units/{id}/selftest: technicians and up)."""
    if not actor.may(policy.DEVICES_MANAGE):
        return []
    chain = ancestor_ids(db, org_unit_id=device.org_unit_id)
    units = {
        u.id: u
        for u in db.scalars(
            select(OrgUnit).where(OrgUnit.id.in_(chain), reach.reachable(actor, OrgUnit))
        )
    }
    return [UnitOption(uid, units[uid].name) for uid in chain if uid in units]


def selftest_context(
    db: Session, *, actor: Actor, device: Device, now: datetime, t: Translator
) -> dict[str, Any]:
    """The self-test section's data: runs, band table, trend drawing, power, events, schedule."""
    found = service.self_tests(db, actor=actor, device_id=device.id, limit=RECENT_RUNS, now=now)
    latest = run_view(found.latest) if found.latest else None
    baseline = run_view(found.baseline) if found.baseline else None
    base_figures = (baseline or {}).get("figures") or {}
    base_level = base_figures.get("level_db")
    entries = [
        {
            "at": r.at,
            "code": r.code,
            "level_db": ((r.data or {}).get("figures") or {}).get("level_db"),
        }
        for r in found.trend
    ]
    # Runs that measured nothing are left out of the service's trend: the failed ones among
    # them ("failed", "silent" without figures) still deserve a mark on the axis.
    entries += [
        {"at": r.at, "code": r.code, "level_db": None}
        for r in found.items
        if tone(r.code) == "fail" and r not in found.trend
    ]

    def label(code: str) -> str:
        key = f"selftest.code.{code}"
        return t(key) if key in CODES else code

    def verdict_text(run: dict[str, Any]) -> str:
        """The verdict in the page's language (the service's Vietnamese for an unknown code)."""
        key = f"selftest.code.{run['code']}"
        return t(key) if key in CODES else str(run["verdict"])

    events = [
        e
        for kind in ("silence", "power")
        for e in service.device_events(
            db, actor=actor, device_id=device.id, kind=kind, limit=RECENT_EVENTS
        )
    ]
    events.sort(key=lambda e: (e.at, e.id), reverse=True)
    schedule = resolve(db, org_unit_id=device.org_unit_id)
    units = schedule_units(db, actor, device)
    # A unit above the caller's subtree set it: say so without naming it (reach rules).
    setter = db.scalar(
        select(OrgUnit.name).where(
            OrgUnit.id == (schedule.unit_id or 0), reach.reachable(actor, OrgUnit)
        )
    )
    mine = [u.id for u in units]
    return {
        "st": {"latest": latest, "baseline": baseline, "runs": [run_view(r) for r in found.items]},
        "st_bands": band_rows(latest, baseline),
        "st_trend": trend(entries, now=now, baseline_db=base_level, label=label),
        "bands": [b if len(b) < 4 else f"{int(b) // 1000}k" for b in BANDS],
        "verdict_text": verdict_text,
        "tone": tone,
        "colours": TONE_COLOURS,
        "power": power_state(device.telemetry),
        "cap": battery_cap(device.telemetry),
        "events": events[:RECENT_EVENTS],
        "schedule_info": {
            "daily_at": schedule.daily_at,
            "volume": schedule.volume,
            "unit_name": setter or t("selftest.schedule_above"),
        },
        "schedule_units": units,
        "schedule_form": {
            "org_unit_id": schedule.unit_id if schedule.unit_id in mine else next(iter(mine), None),
            "daily_at": schedule.daily_at,
            "volume": schedule.volume,
        },
    }


def send_self_test(
    db: Session,
    *,
    actor: Actor,
    mqtt_on: bool,
    device_id: int,
    volume: str,
    rebaseline: bool,
    now: datetime,
    ttl: timedelta,
    t: Translator,
) -> str:
    """Ask the device for a self-test; '' when sent, else the page's error message."""
    level: int | None = None
    if volume.strip():
        if not volume.strip().isdigit() or not 0 <= int(volume) <= 100:
            return t("selftest.err.send", detail=t("selftest.err.volume"))
        level = int(volume)
    try:
        service.request_self_test(
            db, actor=actor, device_id=device_id, volume=level, rebaseline=rebaseline,
            mqtt_on=mqtt_on, now=now, ttl=ttl,
        )  # fmt: skip
    except DomainError as exc:
        if exc.status == 404:
            raise
        db.rollback()
        return t("selftest.err.send", detail=exc.detail)
    return ""


def save_schedule(
    db: Session,
    *,
    actor: Actor,
    device: Device,
    org_unit_id: int,
    daily_at: str,
    volume: str,
    t: Translator,
) -> str:
    """Set the daily self-test of one of the device's units; '' when saved, else the error."""
    if org_unit_id not in {u.id for u in schedule_units(db, actor, device)}:
        return t("selftest.err.schedule", detail=t("selftest.err.unit"))
    at = daily_at.strip() or None
    if at is not None and not HHMM.match(at):
        return t("selftest.err.schedule", detail=t("selftest.err.time"))
    if not volume.strip().isdigit() or not 0 <= int(volume) <= 100:
        return t("selftest.err.schedule", detail=t("selftest.err.volume"))
    try:
        service.set_schedule(db, actor=actor, unit_id=org_unit_id, daily_at=at, volume=int(volume))
    except DomainError as exc:
        if exc.status == 404:
            raise
        db.rollback()
        # The quiet hours are the refusal people meet: say it in their words.
        quiet = at is not None and quiet_hours_problem(at) is not None
        return t("selftest.err.schedule", detail=t("selftest.err.quiet") if quiet else exc.detail)
    return ""
