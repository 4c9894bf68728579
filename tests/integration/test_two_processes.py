"""Two real `loa-server serve` processes on one database and one broker.

What the issue asks of several API processes, measured from outside: a device's MQTT client
counts what reaches it (clip chunks, schedules, answers to its requests), the HTTP answers
count the sign-in limit, and each process's log says which one plans.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from loa_testkit.playfix import make_clip
from loa_testkit.stack import ADMIN_PASSWORD, admin_headers, database, prepared, stack_settings
from protocol import (
    ClipRequest,
    EventBatch,
    PlayEvent,
    ScheduleMessage,
    TimeRequest,
    TopicKind,
    decode,
    device_topic,
    encode,
    zone_clip_filter,
    zone_clip_topic,
)
from protocol.clipchunk import CHUNK_SIZE, decode_chunk
from server.broker.process import free_port
from server.broker.render import write_atomic
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from server.db import make_engine, make_session_factory, session_scope
from server.migrate import upgrade
from server.settings import ServerSettings
from server.users import accounts as users
from tests.security.test_signin_limit import LIMIT, burst, evaluated
from tests.server.conftest import BACKENDS
from tests.stack import requires_mosquitto

pytestmark = requires_mosquitto
SETTLE_S = 3.0  # several planner ticks: time for a duplicate to show up if there is one


@dataclass
class Api:
    """One server process and an admin session on it."""

    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """An API call as admin; checks the status and returns the JSON."""
        r = httpx.request(
            method, f"{self.base}/api/v1{path}", json=body, headers=self.headers, timeout=60
        )
        assert r.status_code == expect, f"{self.name} {method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def logged(self) -> str:
        """What the process wrote to its log so far."""
        return self.log.read_text(errors="replace")


@dataclass
class Cluster:
    """Both processes, the shared settings and database URL."""

    settings: ServerSettings
    db_url: str
    apis: list[Api]


def _wait(pred: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _healthy(api: Api) -> bool:
    assert api.proc.poll() is None, f"{api.name} exited:\n{api.logged()[-3000:]}"
    try:
        r = httpx.get(f"{api.base}/healthz", timeout=5)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.json()["mqtt"] == "connected"


def _start(name: str, env: dict[str, str], tmp_path: Path) -> Api:
    port = free_port()
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--no-migrate"],
            env={**env, "LOA_HTTP_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Api(name, f"http://127.0.0.1:{port}", proc, log)


def _stop(api: Api) -> None:
    if api.proc.poll() is None:
        api.proc.terminate()
        try:
            api.proc.wait(20)
        except subprocess.TimeoutExpired:
            api.proc.kill()
            api.proc.wait()


@contextmanager
def two_servers(db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A migrated database, one broker, and two server processes sharing both."""
    settings = stack_settings(tmp_path / "data", db_url, mqtt_server_port=free_port())
    env = {
        **os.environ,
        "LOA_DATA_DIR": str(settings.data_dir),
        "LOA_DATABASE_URL": db_url,
        "LOA_MQTT_PORT": str(settings.mqtt_port),
        "LOA_MQTT_SERVER_PORT": str(settings.server_mqtt_port),
        "LOA_MQTT_PASSWORD": settings.mqtt_secret(),
        "LOA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LOA_PLANNER_TICK_S": "1",
        "LOA_LOGIN_MAX_FAILURES": str(LIMIT),
        "LOA_TRUSTED_PROXIES": "",
    }
    apis: list[Api] = []
    with prepared(settings):
        try:
            for name in ("api-1", "api-2"):
                apis.append(_start(name, env, tmp_path))
            for api in apis:
                _wait(lambda api=api: _healthy(api), 60, f"{api.name} to be healthy")  # type: ignore[misc]
                with httpx.Client(base_url=api.base, timeout=60) as http:
                    api.headers = admin_headers(http)
            yield Cluster(settings, db_url, apis)
        finally:
            for api in apis:
                _stop(api)
            for api in apis:
                print(f"--- {api.name} log (tail) ---\n{api.logged()[-4000:]}")


class Device:
    """A raw MQTT client with a device's credentials: records every message that reaches it."""

    def __init__(self, port: int, uid: str, password: str, subscriptions: list[str]) -> None:
        self.uid = uid
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(uid, password)
        self.client.on_message = self._on_message
        granted: list[int] = []
        self.client.on_subscribe = lambda _c, _u, mid, _rc, _p: granted.append(mid)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        _wait(self.client.is_connected, 10, "the device to connect")
        mids = [self.client.subscribe(topic, 1)[1] for topic in subscriptions]
        _wait(lambda: all(m in granted for m in mids), 10, "the subscriptions")

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def on(self, topic: str) -> list[bytes]:
        """Payloads received on one topic, in order."""
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def publish(self, kind: TopicKind, payload: bytes) -> None:
        """Publish on one of the device's own topics."""
        self.client.publish(device_topic(self.uid, kind), payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


def _store_clip(cluster: Cluster, data: bytes) -> Clip:
    """A clip in the shared store and database, as the upload pipeline leaves it."""
    sha = hashlib.sha256(data).hexdigest()
    size = len(data)
    path = ClipStorage(cluster.settings.data_dir / "clips").dist_path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    engine = make_engine(cluster.db_url)
    try:
        with session_scope(make_session_factory(engine)) as db:
            clip = Clip(
                sha256=sha, original_sha256=sha, title="Bản tin hai tiến trình",
                original_duration_s=60.0, original_sample_rate=48000, original_channels=1,
                original_size_bytes=size, duration_s=60.0, size_bytes=size, peaks=[],
            )  # fmt: skip
            db.add(clip)
            db.flush()
            db.expunge(clip)
    finally:
        engine.dispose()
    return clip


def _approve(submitter: Api, approver: Api, body: dict[str, Any]) -> int:
    """Create and submit a programme through one process, approve it through the other."""
    programme = submitter.call("POST", "/programmes", body, expect=201)
    submitter.call("POST", f"/programmes/{programme['id']}/submit")
    approver.call("POST", f"/programmes/{programme['id']}/approve")
    return int(programme["id"])


def _schedules(device: Device) -> list[tuple[int, int]]:
    """(version, number of items) of every schedule the device received."""
    out = []
    for payload in device.on(device_topic(device.uid, TopicKind.SCHEDULE)):
        message = decode(TopicKind.SCHEDULE, payload)
        assert isinstance(message, ScheduleMessage)
        out.append((message.document.version, len(message.document.items)))
    return out


@pytest.fixture(params=BACKENDS)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Two server processes on each database backend."""
    with database(request.param, tmp_path) as url, two_servers(url, tmp_path) as running:
        yield running


def _commune(cluster: Cluster) -> tuple[int, int, str]:
    """An org unit, a device registered through one process, its zone made through the other."""
    one, two = cluster.apis
    org = one.call("POST", "/org-units", {"name": "Xã Hai", "kind": "commune"}, expect=201)["id"]
    answer = two.call(
        "POST", "/devices",
        {"uid": "dev-two-01", "name": "Cụm 1", "org_unit_id": org, "firmware_profile": "sim"},
        expect=201,
    )  # fmt: skip
    device_id, password = answer["device"]["id"], answer["credentials"]["password"]
    zone = one.call(
        "POST", "/zones", {"org_unit_id": org, "name": "Thôn 1", "device_ids": [device_id]},
        expect=201,
    )["id"]  # fmt: skip
    return int(org), int(zone), str(password)


def test_two_processes_plan_fan_out_and_answer_once(cluster: Cluster) -> None:
    one, two = cluster.apis
    org, zone, password = _commune(cluster)
    with ExitStack() as stack:
        device = Device(
            cluster.settings.mqtt_port, "dev-two-01", password,
            [zone_clip_filter(zone), device_topic("dev-two-01", TopicKind.CLIP),
             device_topic("dev-two-01", TopicKind.SCHEDULE),
             device_topic("dev-two-01", TopicKind.TIME_RESPONSE),
             device_topic("dev-two-01", TopicKind.EVENTS_ACK)],
        )  # fmt: skip
        stack.callback(device.close)
        clip = _store_clip(cluster, os.urandom(3 * CHUNK_SIZE + 100))
        start = datetime.now(UTC) + timedelta(hours=2)
        body = {"org_unit_id": org, "title": "Tin", "clip_ids": [clip.id], "zone_ids": [zone],
                "start": start.isoformat()}  # fmt: skip
        _approve(two, one, body)

        # One fan-out: every chunk of the clip reaches the zone exactly once.
        zone_topic = zone_clip_topic(zone, clip.sha256)
        _wait(lambda: len(device.on(zone_topic)) >= 4, 30, "the zone's clip chunks")
        _wait(lambda: any(n == 1 for _v, n in _schedules(device)), 30, "the schedule")
        # A second programme through the other process: a replan request the leader serves.
        _approve(
            one, two, {**body, "title": "Tin 2", "start": (start + timedelta(hours=1)).isoformat()}
        )
        _wait(lambda: any(n == 2 for _v, n in _schedules(device)), 30, "the second schedule")
        time.sleep(SETTLE_S)
        chunks = sorted(decode_chunk(p).index for p in device.on(zone_topic))
        assert chunks == [0, 1, 2, 3], f"zone fan-out chunks received: {chunks}"
        # Each version published once, each a change (an empty one when the zone was formed).
        received = _schedules(device)
        versions = [v for v, _n in received]
        assert versions == sorted(set(versions)), f"schedules received: {received}"
        assert [n for _v, n in received][-2:] == [1, 2], f"schedules received: {received}"

        # One answer to a device's request for missing chunks, and to a clock probe.
        device.publish(TopicKind.CLIP_REQUEST, encode(ClipRequest(sha256=clip.sha256, chunks=[2])))
        own = device_topic("dev-two-01", TopicKind.CLIP)
        _wait(lambda: len(device.on(own)) >= 1, 15, "the requested chunk")
        device.publish(TopicKind.TIME_REQUEST, encode(TimeRequest(id="probe-1", t0=time.time())))
        answers = device_topic("dev-two-01", TopicKind.TIME_RESPONSE)
        _wait(lambda: len(device.on(answers)) >= 1, 15, "the time response")
        played = time.time() - 60
        event = PlayEvent(
            seq=1, item_id="two@1", planned_start=played, actual_start=played,
            ended_at=played + 5, outcome="played",
        )  # fmt: skip
        device.publish(TopicKind.EVENTS, encode(EventBatch(events=[event])))
        acks = device_topic("dev-two-01", TopicKind.EVENTS_ACK)
        _wait(lambda: len(device.on(acks)) >= 1, 15, "the events ack")
        time.sleep(SETTLE_S)
        assert [decode_chunk(p).index for p in device.on(own)] == [2], "chunk answered twice"
        assert len(device.on(answers)) == 1, "clock probe answered twice"
        assert len(device.on(acks)) == 1, "events stored and acknowledged twice"
        assert one.call("GET", "/plays", None)["total"] == 1

    # One planner: exactly one process leads, and only it ran planning passes.
    logs = [api.logged() for api in cluster.apis]
    leaders = [log for log in logs if re.search("this process (is|took over as) the planner", log)]
    assert len(leaders) == 1, "not exactly one planner"
    follower = next(log for log in logs if log is not leaders[0])
    assert "another process is the planner" in follower
    assert "planned " not in follower


def test_the_sign_in_limit_holds_across_both_processes(cluster: Cluster) -> None:
    bases = [api.base for api in cluster.apis]
    codes = burst(bases, 20)
    assert codes[401] <= LIMIT, f"{codes[401]} passwords evaluated across two processes"
    answered = codes[401]
    for i in range(3 * LIMIT):  # then one after another, alternating processes
        r = httpx.post(
            f"{bases[i % 2]}/api/v1/auth/token",
            data={"username": "admin", "password": f"again-{i}"},
            timeout=60,
        )
        if r.status_code == 429:
            break
        assert r.status_code == 401, r.text
        answered += 1
    assert answered == LIMIT
    assert len(evaluated(cluster.db_url)) == LIMIT
    for base in bases:
        r = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=60,
        )
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_a_live_session_started_through_one_process_is_stopped_through_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    one, two = cluster.apis
    _org, zone, password = _commune(cluster)
    clip = _store_clip(cluster, make_clip(tmp_path / "tone", seconds=60).data)
    started = one.call(
        "POST", "/live", {"source": "file", "clip_id": clip.id, "zone_ids": [zone]}, expect=201
    )
    device = Device(cluster.settings.mqtt_port, "dev-two-01", password, started["zone_topics"])
    try:

        def frames() -> int:
            return sum(len(device.on(t)) for t in started["zone_topics"])

        _wait(lambda: frames() > 0, 15, "live frames at the device")
        listed = two.call("GET", "/live")
        assert [(s["id"], s["state"]) for s in listed] == [(started["id"], "running")]
        stopped = two.call("DELETE", f"/live/{started['id']}")
        assert stopped["state"] == "ended", stopped
        _wait(lambda: one.call("GET", "/live")[0]["state"] == "ended", 10, "the end at the owner")
        time.sleep(1.0)  # frames already on the way
        heard = frames()
        time.sleep(2.0)
        assert frames() == heard, "the owner kept sending after the stop through the other"
    finally:
        device.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_starting_at_once_both_start(backend: str, tmp_path: Path) -> None:
    """Each start creates the bootstrap admin if none exists: the slower one must not crash."""
    with database(backend, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        factory = make_session_factory(engine)
        second: list[object] = []

        def start_second() -> None:
            try:
                with session_scope(factory) as db:
                    second.append(users.ensure_admin(db, password="another-password"))
            except Exception as exc:  # the test reports what the start raised
                second.append(exc)

        try:
            with session_scope(factory) as db:
                assert users.ensure_admin(db, password=ADMIN_PASSWORD)
                # The other process looks before this one commits, then waits on its insert.
                thread = threading.Thread(target=start_second)
                thread.start()
                time.sleep(0.5)
            thread.join(60)
            assert second == [False]
            with session_scope(factory) as db:
                assert users.ensure_admin(db, password="third") is False
        finally:
            engine.dispose()


def test_broker_files_written_by_two_processes_at_once_stay_whole(tmp_path: Path) -> None:
    """Every server process regenerates the broker files on start and on device changes."""
    target = tmp_path / "mosquitto" / "acl"
    texts = [f"# writer {w}\n" + "topic read loa/v1/x\n" * 2000 for w in range(4)]
    errors: list[BaseException] = []

    def writer(text: str) -> None:
        try:
            for _ in range(150):
                write_atomic(target, text)
        except BaseException as exc:  # the test reports what a writer raised
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert target.read_text() in texts
    assert sorted(p.name for p in target.parent.iterdir()) == ["acl"]  # no temporary file left
