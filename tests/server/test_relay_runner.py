"""Scheduled relays: a real station (ffmpeg MP3 over HTTP), a real Mosquitto, real SQLite.

The runner relays the station to the programme's zones; a listener subscribed with a real
MQTT client decodes the frames it receives. The station is killed and revived (dead air and
back), sources are disabled, missing, not audio or refused (failed runs, alarms, no crash), and
the dashboard and the API show the alarms.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio.opus import OpusDecoder
from loa_testkit.brokerfix import TestBroker
from loa_testkit.radio import Radio, radio_station
from loa_testkit.stack import database
from protocol import SERVER_USERNAME, live_topic
from protocol.liveframe import LiveFrame, decode_frame
from protocol.mqtt_client import MqttLink
from schedules import ClipRef, ProgrammeSpec, RelaySpec, to_local_wall
from schedules.model import relay_session_id
from server.db import make_engine, make_session_factory, session_scope
from server.migrate import upgrade
from server.orgs.models import OrgUnit
from server.programmes.items import RelayTiming
from server.programmes.models import Programme
from server.relay.deadair import level_dbfs
from server.relay.models import RelayRun, RelaySource
from server.relay.planned import planned_relays, relay_programmes
from server.relay.runner import RelayRunner
from server.settings import ServerSettings
from tests.server.test_console import sign_in
from tests.server.test_permissions_fixtures import PermWorld, running_perm_world
from tests.server.test_programmes_fixtures import NOW, one_off, running_world
from tests.stack import requires_mosquitto, skip_without_mosquitto

DELAY_MS = 500
DEAD_AIR_S = 1.0
FRAME_S = 0.02
PLANNED_AT = NOW + timedelta(hours=24)
PUBLIC = "https://203.162.4.190/vov1"
FALLBACK = ClipRef(sha256="ab" * 32, duration_s=5.0, size_bytes=1000)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Radio]:
    """A real-time MP3 station playing a 440 Hz tone."""
    wav = tmp_path / "tone.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=10", "-ac", "1", str(wav)],
        check=True,
    )
    with radio_station(wav) as radio:
        yield radio


@dataclass
class World:
    """A migrated database with a commune and its relay sources."""

    factory: sessionmaker[Session]
    org: int
    settings: ServerSettings
    sources: dict[str, int] = field(default_factory=dict)

    def source(self, name: str, url: str, *, enabled: bool = True, private: bool = True) -> int:
        """Register a relay source directly (its API checks are tested elsewhere)."""
        with session_scope(self.factory) as db:
            row = RelaySource(
                name=name, url=url, kind="national", enabled=enabled, allow_private=private,
                org_unit_id=self.org,
            )  # fmt: skip
            db.add(row)
            db.flush()
            self.sources[name] = row.id
            return row.id

    def run(self, session_id: str) -> RelayRun | None:
        """The run row of a session, detached."""
        with session_scope(self.factory) as db:
            row = db.scalar(select(RelayRun).where(RelayRun.session_id == session_id))
            if row is not None:
                db.expunge(row)
            return row


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    engine = make_engine(f"sqlite:///{tmp_path / 'loa.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as db:
        org = OrgUnit(name="Xã Bảo Ninh", kind="commune")
        db.add(org)
        db.flush()
        org_id = org.id
    settings = ServerSettings(data_dir=tmp_path / "data", relay_dead_air_s=DEAD_AIR_S)
    yield World(factory=factory, org=org_id, settings=settings)
    engine.dispose()


def programme(
    world: World,
    pid: int,
    start: datetime,
    relays: list[tuple[int, str, float]],
    zones: tuple[int, ...],
) -> ProgrammeSpec:
    """A one-off programme of relays only: (source id, source name, seconds) each."""
    return ProgrammeSpec(
        id=pid,
        title=f"Tiếp sóng {pid}",
        relays=tuple(
            RelaySpec(
                before_clip=0,
                source_id=sid,
                source_name=name,
                duration_s=seconds,
                fallback=FALLBACK,
                playout_delay_ms=DELAY_MS,
            )
            for sid, name, seconds in relays
        ),
        start=start,
        zone_ids=zones,
        org_unit_id=world.org,
    )


def soon(seconds: float) -> datetime:
    """A whole second at least `seconds` from now (session ids name whole seconds)."""
    return datetime.fromtimestamp(math.ceil(time.time() + seconds), UTC)


@dataclass
class Harness:
    """The runner on a real broker, and every frame a subscriber received, by topic."""

    runner: RelayRunner
    registry: CollectorRegistry
    frames: dict[str, list[LiveFrame]] = field(default_factory=lambda: defaultdict(list))

    def captures(self, topic: str) -> list[float]:
        """Capture times of a topic's frames, in arrival order."""
        return [f.capture_time for f in self.frames[topic]]


def _link(broker: TestBroker, name: str, on_message: object = None) -> MqttLink:
    return MqttLink(
        client_id=f"{name}-{uuid.uuid4().hex[:6]}", host=broker.host, port=broker.server_port,
        username=SERVER_USERNAME, password=broker.server_password,
        on_message=on_message or (lambda _t, _p: None), min_backoff=0.1,  # type: ignore[arg-type]
    )  # fmt: skip


@asynccontextmanager
async def running(
    broker: TestBroker,
    world: World,
    specs: list[ProgrammeSpec],
    leader: Callable[[], bool] = lambda: True,
) -> AsyncIterator[Harness]:
    """A runner (leader) on a server link, and a listener on every zone's live topics."""
    registry = CollectorRegistry()
    frames: dict[str, list[LiveFrame]] = defaultdict(list)

    def heard(topic: str, payload: bytes) -> None:
        frames[topic].append(decode_frame(payload))

    server, listener = _link(broker, "loa-server"), _link(broker, "listener", heard)
    listener.subscribe("loa/v1/zone/+/live/+", qos=0)
    tasks = [asyncio.create_task(link.run()) for link in (server, listener)]
    for link in (server, listener):
        await asyncio.wait_for(link.connected.wait(), 10)
    await asyncio.sleep(0.3)  # the subscription is in place
    runner = RelayRunner(
        session_factory=world.factory, outlet=server, settings=world.settings,
        is_leader=leader, programmes=lambda _db: list(specs), registry=registry,
        tick_s=0.2,
    )  # fmt: skip
    harness = Harness(runner=runner, registry=registry, frames=frames)
    await runner.start()
    try:
        yield harness
    finally:
        await runner.stop()
        await asyncio.sleep(0.3)  # the last frames reach the listener
        for link in (server, listener):
            await link.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until(at: float) -> None:
    """Sleep until Unix time `at`."""
    await asyncio.sleep(max(0.0, at - time.time()))


async def settled(world: World, session_id: str, timeout: float = 10.0) -> RelayRun:
    """The run once it ended or failed."""
    deadline = time.monotonic() + timeout
    while True:
        run = world.run(session_id)
        if run is not None and run.state in ("ended", "failed"):
            return run
        assert time.monotonic() < deadline, f"run {session_id} still {run and run.state}"
        await asyncio.sleep(0.1)


def window(start: datetime, offset_s: float, seconds: float) -> tuple[float, float]:
    """Capture window [heard start - delay, heard end - delay) of a relay."""
    heard = start.timestamp() + offset_s
    return heard - DELAY_MS / 1000, heard + seconds - DELAY_MS / 1000


def audible(frames: list[LiveFrame]) -> list[float]:
    """Each frame's decoded level (dBFS), decoding in order as a device would."""
    decoder = OpusDecoder()
    return [level_dbfs(decoder.decode(f.payload)) for f in frames]


@requires_mosquitto
def test_the_station_is_relayed_to_every_zone_over_the_heard_window(
    broker: TestBroker, world: World, station: Radio
) -> None:
    sid = world.source("VOV1", station.url)
    start = soon(4)
    spec = programme(world, 901, start, [(sid, "VOV1", 4.0)], (11, 12))
    session = relay_session_id(901, start, 0)
    begin, end = window(start, 0, 4.0)

    async def body() -> tuple[Harness, RelayRun]:
        async with running(broker, world, [spec]) as h:
            await until(end + 0.5)
            return h, await settled(world, session)

    h, run = asyncio.run(asyncio.wait_for(body(), 40))
    assert run.state == "ended" and run.alarm == "" and run.alarm_at is None
    assert run.started_at is not None and run.planned_start == start
    assert set(h.frames) == {live_topic(11, session), live_topic(12, session)}
    for topic, frames in h.frames.items():
        times = h.captures(topic)
        assert begin - FRAME_S < times[0] <= begin, (topic, times[0] - begin)
        assert end - FRAME_S <= times[-1] < end, (topic, times[-1] - end)
        assert [f.seq for f in frames] == list(range(frames[0].seq, frames[-1].seq + 1))
        assert [f.last for f in frames] == [False] * (len(frames) - 1) + [True]
        assert 199 <= len(frames) <= 201
        # The tone, not silence, once the stream flows (it was opened 1.5 s ahead).
        levels = audible(frames)
        assert min(levels[50:-5]) > -30, min(levels[50:-5])
    assert 199 <= run.frames_sent <= 201


@requires_mosquitto
def test_dead_air_stops_the_frames_raises_an_alarm_and_clears_it(
    broker: TestBroker, world: World, station: Radio
) -> None:
    sid = world.source("Đài thử", station.url)
    start = soon(4)
    seconds = 18.0
    spec = programme(world, 902, start, [(sid, "Đài thử", seconds)], (21,))
    session = relay_session_id(902, start, 0)
    topic = live_topic(21, session)
    begin, end = window(start, 0, seconds)
    kill_at, revive_at = begin + 3.0, begin + 8.0
    seen: dict[str, RelayRun] = {}

    async def body() -> tuple[Harness, RelayRun]:
        async with running(broker, world, [spec]) as h:
            await until(kill_at)
            station.kill()
            await until(revive_at - 0.3)
            during = world.run(session)
            assert during is not None
            seen["during"] = during
            station.revive()
            await until(end + 0.5)
            return h, await settled(world, session)

    h, run = asyncio.run(asyncio.wait_for(body(), 60))
    times = h.captures(topic)
    gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a > 0.5]
    assert len(gaps) == 1, gaps
    stopped, resumed = gaps[0]
    # Queued audio plays out, then dead_air_s of nothing: then no frame at all.
    assert kill_at <= stopped <= kill_at + DEAD_AIR_S + 2.5, stopped - kill_at
    # Back only after a whole second of audio from the revived station.
    assert resumed >= revive_at + 1.0 - FRAME_S, resumed - revive_at
    assert times[-1] >= end - FRAME_S and h.frames[topic][-1].last
    during = seen["during"]
    assert during.state == "dead_air" and during.alarm_cleared_at is None
    assert during.alarm_at is not None
    since = during.alarm_at.timestamp()
    assert kill_at - 0.1 <= since <= stopped + 0.1, since - kill_at
    local = f"{to_local_wall(during.alarm_at):%H:%M:%S}"
    assert during.alarm == f"Nguồn tiếp âm Đài thử mất tín hiệu từ {local}"
    assert run.state == "ended" and run.alarm == during.alarm
    assert run.alarm_cleared_at is not None
    assert run.alarm_cleared_at.timestamp() == pytest.approx(resumed, abs=0.1)
    assert resumed - stopped - 0.5 <= run.dead_air_s <= resumed - stopped + 0.5
    dead = h.registry.get_sample_value("loa_relay_dead_air_total", {"source": str(sid)})
    assert dead == 1.0


@requires_mosquitto
def test_broken_sources_fail_with_alarms_and_leave_the_others_alone(
    broker: TestBroker, world: World, station: Radio
) -> None:
    off = world.source("Đài tắt", station.url, enabled=False)
    junk = world.source("Không phải âm thanh", station.url.replace("/live.mp3", "/page"))
    refused = world.source("Địa chỉ nội bộ", station.url, private=False)
    good = world.source("VOV2", station.url)
    start = soon(4)
    specs = [
        programme(world, 911, start, [(off, "Đài tắt", 3.0), (999, "Đài đã xoá", 3.0)], (31,)),
        programme(world, 912, start, [(junk, "Không phải âm thanh", 3.0)], (32,)),
        programme(world, 913, start, [(refused, "Địa chỉ nội bộ", 3.0)], (33,)),
        programme(world, 914, start, [(good, "VOV2", 3.0)], (34,)),
    ]
    sessions = {
        "off": relay_session_id(911, start, 0),
        "missing": relay_session_id(911, start, 1),
        "junk": relay_session_id(912, start, 0),
        "refused": relay_session_id(913, start, 0),
        "good": relay_session_id(914, start, 0),
    }
    _, end = window(start, 3.0, 3.0)

    async def body() -> tuple[Harness, dict[str, RelayRun]]:
        async with running(broker, world, specs) as h:
            await until(end + 0.5)
            return h, {k: await settled(world, s) for k, s in sessions.items()}

    h, runs = asyncio.run(asyncio.wait_for(body(), 40))
    assert runs["good"].state == "ended" and runs["good"].alarm == ""
    assert 149 <= len(h.frames[live_topic(34, sessions["good"])]) <= 151
    for key in ("off", "missing", "junk", "refused"):
        assert runs[key].state == "failed", key
        assert runs[key].alarm.startswith("Nguồn tiếp âm "), key
        assert runs[key].alarm_cleared_at is None
    assert runs["off"].alarm == "Nguồn tiếp âm Đài tắt đã bị tắt; các cụm loa phát bản dự phòng."
    assert "không còn" in runs["missing"].alarm and runs["missing"].relay_source_id is None
    assert not any(topic.startswith("loa/v1/zone/31/") for topic in h.frames)
    for key, zone in (("junk", 32), ("refused", 33)):
        assert "mất tín hiệu từ" in runs[key].alarm
        frames = h.frames.get(live_topic(zone, sessions[key]), [])
        # Silence until dead air was found, then nothing: the devices play the fallback.
        assert len(frames) <= (DEAD_AIR_S + 0.1) / FRAME_S, len(frames)
        assert all(level == -math.inf for level in audible(frames))
        assert runs[key].frames_sent == len(frames)
    counted = h.registry.get_sample_value("loa_relay_dead_air_total", {"source": str(off)})
    assert counted == 1.0


@requires_mosquitto
def test_a_restart_mid_relay_picks_the_run_up(
    broker: TestBroker, world: World, station: Radio
) -> None:
    sid = world.source("VOV3", station.url)
    start = soon(4)
    spec = programme(world, 921, start, [(sid, "VOV3", 6.0)], (41,))
    session = relay_session_id(921, start, 0)
    topic = live_topic(41, session)
    begin, end = window(start, 0, 6.0)

    async def body() -> tuple[Harness, Harness, RelayRun, RelayRun]:
        async with running(broker, world, [spec]) as first:
            await until(begin + 2.0)
        mid = world.run(session)  # the first process stopped: its successor takes over
        assert mid is not None
        async with running(broker, world, [spec]) as second:
            await until(end + 0.5)
            return first, second, mid, await settled(world, session)

    first, second, mid, run = asyncio.run(asyncio.wait_for(body(), 40))
    assert mid.state == "running" and mid.frames_sent >= 90
    before, after = first.captures(topic), second.captures(topic)
    assert before[0] <= begin and first.frames[topic][-1].last
    assert after[0] - before[-1] < 1.5  # the successor picked up within a tick or two
    assert after[-1] >= end - FRAME_S and second.frames[topic][-1].last
    assert run.state == "ended" and run.started_at == mid.started_at
    assert run.frames_sent == len(before) + len(after)


@requires_mosquitto
def test_only_the_leader_relays_and_a_withdrawn_programme_stops_its_relay(
    broker: TestBroker, world: World, station: Radio
) -> None:
    sid = world.source("VOV4", station.url)
    start = soon(4)
    specs = [programme(world, 931, start, [(sid, "VOV4", 8.0)], (51,))]
    session = relay_session_id(931, start, 0)
    topic = live_topic(51, session)
    begin, end = window(start, 0, 8.0)
    leading = {"now": False}

    async def body() -> tuple[Harness, RelayRun | None, RelayRun]:
        async with running(broker, world, specs, leader=lambda: leading["now"]) as h:
            await until(begin + 1.0)
            follower = world.run(session)  # not the planner: nothing done
            assert not h.frames
            leading["now"] = True  # took over: picks the relay up at once
            await until(begin + 3.0)
            specs.clear()  # the programme was cancelled
            withdrawn_at = time.time()
            run = await settled(world, session, timeout=3.0)
            assert run.ended_at is not None
            assert run.ended_at.timestamp() - withdrawn_at < 1.0
            await until(end + 0.5)
            return h, follower, run

    h, follower, run = asyncio.run(asyncio.wait_for(body(), 40))
    assert follower is None
    frames = h.frames[topic]
    assert frames[0].capture_time <= begin + 2.5 and frames[-1].last
    assert frames[-1].capture_time < begin + 4.5 and sum(f.last for f in frames) == 1
    assert run.state == "ended" and run.frames_sent == len(frames)


def test_the_runner_reads_the_relay_parts_the_devices_were_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Programmes from the API, the planner's document, the runner's parts: one and the same."""
    skip_without_mosquitto()
    monkeypatch.setenv("LOA_RELAY_PLAYOUT_DELAY_MS", "2500")  # not the default
    with database("sqlite", tmp_path) as url, running_world(url, tmp_path / "data") as w:
        org = w.org("Xã Thử")
        device_id, _uid, _password = w.device(org)
        zone = w.zone(org, device_ids=[device_id])
        body = {"name": "VOV1", "url": PUBLIC, "kind": "national", "org_unit_id": org}
        source = int(w.post("/relay-sources", body, expect=201)["id"])
        fallback, clip = w.clip(duration_s=15), w.clip(duration_s=30)
        relay = {"kind": "relay", "relay_source_id": source, "duration_s": 20,
                 "fallback_clip_id": fallback.id}  # fmt: skip
        programme = one_off([], [zone], at=PLANNED_AT) | {
            "items": [{"kind": "clip", "clip_id": clip.id}, relay]
        }
        del programme["clip_ids"]
        w.approved(**programme)
        (item,) = w.get(f"/devices/{device_id}/schedule")["items"]
        (sent,) = item["relays"]
        timing = RelayTiming.from_settings(w.stack.settings)
        with session_scope(w.stack.app.state.session_factory) as db:
            specs = relay_programmes(db, timing=timing)
    heard = PLANNED_AT + timedelta(seconds=30)
    (plan,) = planned_relays(specs, now=heard - timedelta(seconds=5))
    assert plan.part.model_dump(mode="json") == sent
    assert sent["playout_delay_ms"] == 2500 and plan.zone_ids == (zone,)
    assert (plan.heard_start, plan.heard_end) == (heard, heard + timedelta(seconds=20))
    assert plan.capture_start == heard.timestamp() - 2.5
    # Not yet due 15 s before it opens; over once its last frame's capture time passed.
    assert not planned_relays(specs, now=heard - timedelta(seconds=19.1))
    assert not planned_relays(specs, now=heard + timedelta(seconds=17.5))


# -- the dashboard and the API ----------------------------------------------------------------


@pytest.fixture
def perm(tmp_path: Path) -> Iterator[PermWorld]:
    with running_perm_world("sqlite", tmp_path) as w:
        yield w


def _run(
    db: Session, org: int, source: int, programme_id: int, ago: float = 0, **values: object
) -> None:
    now = datetime.now(UTC) - timedelta(hours=ago)
    db.add(
        RelayRun(
            session_id=f"r{programme_id}-{uuid.uuid4().hex[:8]}",
            programme_id=programme_id,
            item_id=f"{programme_id}@x",
            relay_source_id=source,
            org_unit_id=org,
            planned_start=now - timedelta(minutes=10),
            planned_end=now + timedelta(minutes=20),
            **values,
        )
    )


def test_the_dashboard_and_the_api_show_dead_air_alarms_of_the_callers_subtree(
    perm: PermWorld,
) -> None:
    w = perm
    assert w.a is not None and w.b is not None
    pa, pb = w.programme(w.a), w.programme(w.b)
    now = datetime.now(UTC).replace(microsecond=0)
    since = now - timedelta(minutes=3)
    back = now - timedelta(hours=1, minutes=58)
    with session_scope(w.stack.app.state.session_factory) as db:
        src_a = RelaySource(name="VOV1 xã A", url=PUBLIC, org_unit_id=w.a.commune)
        src_b = RelaySource(name="VOV1 xã B", url=PUBLIC, org_unit_id=w.b.commune)
        db.add_all([src_a, src_b])
        db.flush()
        local = f"{to_local_wall(since):%H:%M:%S}"
        _run(
            db, w.a.commune, src_a.id, pa, state="dead_air", alarm_at=since,
            alarm=f"Nguồn tiếp âm VOV1 xã A mất tín hiệu từ {local}",
        )  # fmt: skip
        _run(
            db, w.a.commune, src_a.id, pa, state="ended", alarm="Nguồn tiếp âm VOV1 xã A im lặng",
            alarm_at=now - timedelta(hours=2), alarm_cleared_at=back,
        )  # fmt: skip
        _run(
            db, w.a.commune, src_a.id, pa, 72, state="ended", alarm="báo động ba ngày trước",
            alarm_at=now - timedelta(days=3), alarm_cleared_at=now - timedelta(days=3),
        )  # fmt: skip
        _run(db, w.a.commune, src_a.id, pa, state="ended")
        _run(db, w.b.commune, src_b.id, pb, state="dead_air", alarm="xã B", alarm_at=since)
        found = db.get(Programme, pa)
        assert found is not None
        title = found.title
    html = sign_in(w, "technician-a").get("/").text
    at = html.index("Mất tín hiệu tiếp âm")
    box = html[at : html.index("</section>", at)]
    assert f"Nguồn tiếp âm VOV1 xã A mất tín hiệu từ {local}" in box
    assert "VOV1 xã A" in box and title in box
    assert f"từ {to_local_wall(since):%H:%M:%S %d/%m/%Y}" in box
    assert f"có lại lúc {to_local_wall(back):%H:%M:%S %d/%m/%Y}" in box
    assert "xã B" not in box and "ba ngày trước" not in box
    r = w.client.get("/api/v1/relay-runs", headers=w.headers("technician"))
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 3 and {i["org_unit_id"] for i in page["items"]} == {w.a.commune}
    alarms = w.client.get(
        "/api/v1/relay-runs?alarms_only=true&hours=100", headers=w.headers("technician")
    ).json()
    assert alarms["total"] == 3
    [open_one] = [i for i in alarms["items"] if i["alarm_open"]]
    assert open_one["state"] == "dead_air" and open_one["source_name"] == "VOV1 xã A"
    assert open_one["programme_title"] == title
    everything = w.client.get("/api/v1/relay-runs", headers=w.stack.headers).json()
    assert everything["total"] == 4
    bad = w.client.get("/api/v1/relay-runs?hours=0", headers=w.headers("technician"))
    assert bad.status_code == 422 and bad.json()["detail"]
