"""Presence history: births and wills append transitions; availability is measured from them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from protocol import Birth, Offline
from server.db import make_engine, make_session_factory
from server.devices import service as devices
from server.devices.models import Device
from server.migrate import upgrade
from server.orgs.models import OrgUnit
from server.reports.models import DevicePresence
from server.reports.presence import Series, availability

T0 = datetime(2031, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def db(db_url: str) -> Iterator[Session]:
    """A session on a migrated database (SQLite, and PostgreSQL when configured)."""
    engine = make_engine(db_url)
    upgrade(engine)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


def _device(db: Session, created: datetime = T0 - 100 * H) -> Device:
    unit = OrgUnit(name="Xã Thử", kind="commune")
    db.add(unit)
    db.flush()
    device = Device(
        uid=f"pres-{unit.id}", name="Cụm 1", org_unit_id=unit.id, firmware_profile="sim",
        mqtt_password_hash="x", created_at=created,
    )  # fmt: skip
    db.add(device)
    db.flush()
    return device


def _history(db: Session, device: Device) -> list[tuple[bool, datetime]]:
    rows = db.execute(
        select(DevicePresence.online, DevicePresence.at)
        .where(DevicePresence.device_id == device.id)
        .order_by(DevicePresence.id)
    )
    return [(bool(online), at) for online, at in rows]


def _birth(conn: str) -> Birth:
    return Birth(conn_id=conn, agent_version="1", firmware_profile="sim", boot_time=1.0)


def test_births_and_wills_append_transitions(db: Session) -> None:
    device = _device(db)
    devices.apply_birth(db, device=device, birth=_birth("c1"), now=T0)
    devices.apply_birth(db, device=device, birth=_birth("c1"), now=T0 + H)  # still online
    devices.apply_birth(db, device=device, birth=_birth("c2"), now=T0 + 2 * H)  # reconnect
    # A stale will from the replaced connection changes nothing.
    assert not devices.apply_offline(db, device=device, msg=Offline(conn_id="c1"), now=T0 + 3 * H)
    assert devices.apply_offline(db, device=device, msg=Offline(conn_id="c2"), now=T0 + 4 * H)
    devices.apply_birth(db, device=device, birth=_birth("c3"), now=T0 + 6 * H)
    db.flush()
    assert _history(db, device) == [(True, T0), (False, T0 + 4 * H), (True, T0 + 6 * H)]


def test_availability_over_a_window(db: Session) -> None:
    old = _device(db)
    # Online before the window, out from 10:00 to 13:00 (a repeated will at 11:00 does not
    # cut the outage in two), a repeated birth at 15:00.
    for online, at in ((True, T0 - 5 * H), (False, T0 + 10 * H), (False, T0 + 11 * H),
                       (True, T0 + 13 * H), (True, T0 + 15 * H)):  # fmt: skip
        db.add(DevicePresence(device_id=old.id, online=online, at=at))
    # Registered at 06:00, first online at 12:00 (offline before: it never connected).
    new = _device(db, created=T0 + 6 * H)
    db.add(DevicePresence(device_id=new.id, online=True, at=T0 + 12 * H))
    db.flush()
    end = T0 + 24 * H
    edges = [(T0 + i * 12 * H).timestamp() for i in range(3)]
    series = Series(edges)
    found = availability(
        db,
        devices=[(old.id, old.created_at, None), (new.id, new.created_at, None)],
        device_ids=select(Device.id),
        since=T0,
        end=end,
        series=series,
    )
    assert (found[old.id].online_s, found[old.id].measured_s) == (21 * 3600, 24 * 3600)
    assert found[old.id].longest_outage_s == 3 * 3600
    assert (found[new.id].online_s, found[new.id].measured_s) == (12 * 3600, 18 * 3600)
    assert found[new.id].longest_outage_s == 6 * 3600
    # 00-12: old online 10 h of 12, new 0 of 6; 12-24: old 11 of 12, new 12 of 12.
    assert series.finish() == [round(10 / 18, 4), round(23 / 24, 4)]
    # A device revoked before the window is not measured at all.
    gone = availability(
        db,
        devices=[(old.id, old.created_at, T0 - H)],
        device_ids=select(Device.id),
        since=T0,
        end=end,
    )
    assert gone == {}
