"""Shared fixtures and helpers for the programme, planner, fan-out and proof-of-play tests.

No tests live here; test_programmes*, test_planner*, test_fanout* and test_plays* import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from loa_testkit.brokerfix import has_mosquitto as has_mosquitto  # older tests import it here
from loa_testkit.stack import Stack, database, server_stack
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from tests.server.conftest import BACKENDS
from tests.stack import skip_without_mosquitto

# The fake "now" of every test: Monday 2031-03-03 07:00 in Vietnam (00:00 UTC).
NOW = datetime(2031, 3, 3, 0, 0, tzinfo=UTC)


class FakeClock:
    """A settable clock the app and its planner read through app.state.clock."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move time forward."""
        self.now += delta


@dataclass
class World:
    """A running server on a fake clock, with helpers to build org units, zones, devices, clips."""

    stack: Stack
    clock: FakeClock
    counter: int = 0
    first_org: int | None = None  # owner of programmes that do not name one
    clients: list[mqtt.Client] = field(default_factory=list)

    @property
    def client(self) -> Any:
        """The HTTP test client."""
        return self.stack.client

    @property
    def headers(self) -> dict[str, str]:
        """Admin bearer headers."""
        return self.stack.headers

    @property
    def planner(self) -> Any:
        """The app's planner."""
        return self.stack.app.state.planner

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def post(self, path: str, body: Any = None, expect: int | None = None) -> Any:
        """POST as admin; check the status when `expect` is given; return the JSON."""
        r = self.client.post(f"/api/v1{path}", json=body, headers=self.headers)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json() if r.content else None

    def get(self, path: str, **params: Any) -> Any:
        """GET as admin, expecting 200."""
        r = self.client.get(f"/api/v1{path}", params=params, headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    def org(self, name: str | None = None, parent_id: int | None = None) -> int:
        """A new org unit."""
        body = {"name": name or f"Xã {self._next()}", "kind": "commune", "parent_id": parent_id}
        org_id = int(self.post("/org-units", body, expect=201)["id"])
        if self.first_org is None:
            self.first_org = org_id
        return org_id

    def zone(
        self, org_id: int, name: str | None = None, device_ids: list[int] | None = None
    ) -> int:
        """A new zone with these devices (the broker ACL follows)."""
        body = {"org_unit_id": org_id, "name": name or f"Thôn {self._next()}",
                "device_ids": device_ids or []}  # fmt: skip
        return int(self.post("/zones", body, expect=201)["id"])

    def set_zone_devices(self, zone_id: int, device_ids: list[int]) -> None:
        """Replace a zone's members."""
        r = self.client.put(
            f"/api/v1/zones/{zone_id}/devices", json={"device_ids": device_ids},
            headers=self.headers,
        )  # fmt: skip
        assert r.status_code == 200, r.text

    def device(self, org_id: int, uid: str | None = None) -> tuple[int, str, str]:
        """Register a device; returns (id, uid, MQTT password)."""
        uid = uid or f"dev-{self._next():03d}"
        body = {"uid": uid, "name": uid, "org_unit_id": org_id, "firmware_profile": "sim"}
        answer = self.post("/devices", body, expect=201)
        return int(answer["device"]["id"]), uid, str(answer["credentials"]["password"])

    def clip(self, *, size: int = 2000, duration_s: float = 60.0, title: str = "") -> Clip:
        """A stored clip: random bytes in the content-addressed store and its database row."""
        data = os.urandom(size)
        sha = hashlib.sha256(data).hexdigest()
        storage = ClipStorage(self.stack.settings.data_dir / "clips")
        path = storage.dist_path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self.stack.session() as db:
            clip = Clip(
                sha256=sha, original_sha256=sha, title=title or f"clip {self._next()}",
                original_duration_s=duration_s, original_sample_rate=48000, original_channels=1,
                original_size_bytes=size, duration_s=duration_s, size_bytes=size, peaks=[],
            )  # fmt: skip
            db.add(clip)
            db.flush()
            db.expunge(clip)
        return clip

    def clip_bytes(self, sha: str) -> bytes:
        """The stored file of a clip."""
        storage = ClipStorage(self.stack.settings.data_dir / "clips")
        return storage.dist_path(sha).read_bytes()

    def programme(self, *, expect: int = 201, **fields: Any) -> Any:
        """Create a programme, owned by the first org unit unless the fields name one."""
        return self.post("/programmes", {"org_unit_id": self.first_org, **fields}, expect=expect)

    def approved(self, **fields: Any) -> Any:
        """Create, submit and approve a programme; waits for the planner pass it triggers."""
        p = self.programme(**fields)
        self.post(f"/programmes/{p['id']}/submit", expect=200)
        answer = self.post(f"/programmes/{p['id']}/approve", expect=200)
        assert self.planner.wait_idle(30)
        return answer

    def connect(self, uid: str, password: str, on_message: Callable[[mqtt.MQTTMessage], None],
                subscriptions: list[str]) -> mqtt.Client:  # fmt: skip
        """A raw paho client acting as the device, subscribed before this returns."""
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
        c.username_pw_set(uid, password)
        c.on_message = lambda _c, _u, m: on_message(m)
        subscribed: list[int] = []
        c.on_subscribe = lambda _c, _u, mid, _rc, _p: subscribed.append(mid)
        c.connect("127.0.0.1", self.stack.settings.mqtt_port, keepalive=10)
        c.loop_start()
        mids = [c.subscribe(topic, 1)[1] for topic in subscriptions]
        assert wait(lambda: all(m in subscribed for m in mids))
        self.clients.append(c)
        return c

    def close(self) -> None:
        """Disconnect every device client."""
        for c in self.clients:
            c.loop_stop()
            c.disconnect()


def wait(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll until pred() is true or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def one_off(clip_ids: list[int], zone_ids: list[int], *, at: datetime, title: str = "Tin",
            **extra: Any) -> dict[str, Any]:  # fmt: skip
    """Body of a one-off programme."""
    return {"title": title, "clip_ids": clip_ids, "zone_ids": zone_ids,
            "start": at.isoformat(), **extra}  # fmt: skip


def daily(clip_ids: list[int], zone_ids: list[int], *, hour: int = 5, title: str = "Bản tin",
          dtstart: str = "2031-03-04T00:00:00", **extra: Any) -> dict[str, Any]:  # fmt: skip
    """Body of a programme every day at `hour`:00 local time."""
    return {"title": title, "clip_ids": clip_ids, "zone_ids": zone_ids,
            "rrule": f"FREQ=DAILY;BYHOUR={hour};BYMINUTE=0;BYSECOND=0", "dtstart": dtstart,
            **extra}  # fmt: skip


@contextmanager
def running_world(db_url: str, data_dir: Path) -> Iterator[World]:
    """A server with its broker on `db_url`, its clock replaced by a FakeClock."""
    with server_stack(db_url, data_dir, with_broker=True) as stack:
        planner = stack.app.state.planner
        assert planner is not None and planner.wait_idle(30)  # the start-up pass, real clock
        clock = FakeClock()
        stack.app.state.clock = clock
        world = World(stack=stack, clock=clock)
        try:
            yield world
        finally:
            world.close()


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """A running server with broker and fake clock, on every database backend."""
    skip_without_mosquitto()
    with database(request.param, tmp_path) as url, running_world(url, tmp_path / "data") as w:
        yield w


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[World]:
    """The same on SQLite only, for the MQTT-heavy tests."""
    skip_without_mosquitto()
    with database("sqlite", tmp_path) as url, running_world(url, tmp_path / "data") as w:
        yield w


def decode_json(message: mqtt.MQTTMessage) -> dict[str, Any]:
    """A message's JSON payload."""
    return dict(json.loads(message.payload))
