"""Bulletins with real agent processes: a province sends one bulletin of each level to two communes.

Normal waits in each commune's inbox and plays at the time the commune accepts, only there;
priority lands at the head of each commune's next regular slot, before the commune's own item;
emergency is heard on every cluster within 2 s of the send. Every delivery ends `played` with
its clusters counted. Times come from proof of play (GET /api/v1/plays), as the server got it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from loa_testkit.agentprocs import agent_processes
from loa_testkit.playfix import make_clip, wav_hz
from tests.integration.test_end_to_end import Live, live_server
from tests.server.test_programmes_fixtures import one_off
from tests.stack import requires_mosquitto

pytestmark = [requires_mosquitto, pytest.mark.slow]

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")  # regular slots are local wall times
PASSWORD = "mat-khau-thu-1"
LEAD_S = 8  # "accept, playing in a few seconds": time to plan and fetch the clip
SLOT_MARGIN_S = 25  # the slot must leave time to place, distribute, and play the emergency first
ON_TIME_S = 1.0
TONES = {"normal": 440, "priority": 660, "emergency": 990, "own": 330}  # Hz, one per clip
EMERGENCY_S = 2.0


@dataclass
class Scene:
    """Province P over communes A and B; operators, the province's editor and board, clips."""

    live: Live
    tokens: dict[str, str]
    a: int
    b: int
    zones: dict[int, int]  # commune -> its zone
    devices: dict[int, list[int]]  # commune -> its devices (clusters)
    clips: dict[str, tuple[int, str, float]]  # name -> (id, sha256, duration_s)

    @property
    def all_devices(self) -> list[int]:
        return [d for unit in (self.a, self.b) for d in self.devices[unit]]

    def call(self, who: str, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """Call /api/v1 as a named user ('admin', 'p-editor', 'a-operator', …)."""
        w = self.live.w
        headers = w.headers if who == "admin" else {"Authorization": f"Bearer {self.tokens[who]}"}
        r = w.client.request(method, f"/api/v1{path}", json=body, headers=headers)
        assert r.status_code == expect, f"{who} {method} {path}: {r.status_code} {r.text}"
        return r.json()

    def send(self, who: str, level: str, clip: str, title: str) -> Any:
        """POST /bulletins to both communes, valid for an hour."""
        body = {
            "title": title,
            "level": level,
            "clip_ids": [self.clips[clip][0]],
            "valid_until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "target_org_unit_ids": [self.a, self.b],
        }
        return self.call(who, "POST", "/bulletins", body, expect=201)

    def plays(self, device_id: int, programme_id: int) -> list[dict[str, Any]]:
        items = self.live.w.get("/plays", device_id=device_id)["items"]
        return [p for p in items if p["programme_id"] == programme_id]


def stamp(value: str) -> float:
    """An API datetime as a POSIX time (naive means UTC)."""
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.1)


def delivery(detail: dict[str, Any], unit: int) -> dict[str, Any]:
    return next(d for d in detail["deliveries"] if d["org_unit_id"] == unit)


def proofs(
    scene: Scene, devices: Sequence[int], programme_id: int, timeout: float, *, must: bool = True
) -> dict[int, dict[str, Any]]:
    """The first proof of play of the programme from each device (all of them, unless must=False
    and the time ran out: then what came)."""
    found: dict[int, dict[str, Any]] = {}

    def arrived() -> bool:
        for device in devices:
            if device not in found and (records := scene.plays(device, programme_id)):
                found[device] = records[0]
        return len(found) == len(devices)

    try:
        wait_until(arrived, timeout, f"proof of play of programme {programme_id}")
    except AssertionError:
        if must:
            raise
    return found


def build(live: Live, tmp_path: Path) -> tuple[Scene, list[tuple[str, str]]]:
    """Org tree, users, zones, devices and uploaded clips; the devices' (uid, password)."""
    w = live.w
    province = w.post("/org-units", {"name": "Tỉnh Thử", "kind": "province"}, expect=201)["id"]
    a, b = (
        w.post("/org-units", {"name": name, "kind": "commune", "parent_id": province}, 201)["id"]
        for name in ("Xã An Bình", "Xã Bình Minh")
    )
    tokens: dict[str, str] = {}
    for name, unit, role, emergency in (
        ("p-editor", province, "editor", False),
        ("p-approver", province, "approver", True),
        ("a-operator", a, "operator", False),
        ("b-operator", b, "operator", False),
    ):
        body = {"username": name, "password": PASSWORD, "role": role, "org_unit_id": unit,
                "can_emergency": emergency}  # fmt: skip
        w.post("/users", body, expect=201)
        r = w.client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        tokens[name] = r.json()["access_token"]
    registered = {a: [w.device(a, f"xa-a-{n}") for n in (1, 2)], b: [w.device(b, "xa-b-1")]}
    ids = {unit: [d[0] for d in devs] for unit, devs in registered.items()}
    zones = {unit: w.zone(unit, None, devices) for unit, devices in ids.items()}
    scene = Scene(live, tokens, a, b, zones, ids, {})
    # Real uploads through the clip pipeline: the province's three, commune A's and B's own.
    for name, freq in TONES.items():
        who = "admin" if name == "own" else "p-editor"
        source = make_clip(tmp_path / "sources", seconds=2.5, freq=freq, codec="wav")
        path = tmp_path / "sources" / f"{name}.wav"
        path.write_bytes(source.data)
        headers = w.headers if who == "admin" else {"Authorization": f"Bearer {tokens[who]}"}
        with path.open("rb") as f:
            r = w.client.post(
                "/api/v1/clips", headers=headers, data={"title": f"Bản tin {name}"},
                files={"file": (path.name, f, "audio/wav")},
            )  # fmt: skip
        assert r.status_code == 201, r.text
        clip = r.json()
        scene.clips[name] = (int(clip["id"]), str(clip["sha256"]), float(clip["duration_s"]))
    return scene, [(uid, pw) for devs in registered.values() for _id, uid, pw in devs]


def tones_heard(data_dir: Path) -> list[int]:
    """The clips one cluster's recorded output holds, in order (by their tone)."""
    heard: list[int] = []
    for hz in wav_hz(data_dir):
        tone = min(TONES.values(), key=lambda t: abs(t - hz))
        if abs(tone - hz) < 15 and (not heard or heard[-1] != tone):
            heard.append(tone)
    return heard


def synced(scene: Scene) -> bool:
    """Every agent is online and holds its desired state (so its zone)."""
    for device in scene.all_devices:
        d = scene.live.w.get(f"/devices/{device}")
        if not d["online"] or d["reported_state_version"] != d["state_version"]:
            return False
    return True


def normal_level(scene: Scene, errors: list[float]) -> int:
    """A accepts first, B later: each plays at its accepted time, B nothing before."""
    sent = scene.send("p-editor", "normal", "normal", "Thông báo lịch tiêm chủng")
    assert sent["status"] == "submitted"
    nid = sent["id"]
    scene.call("p-approver", "POST", f"/bulletins/{nid}/approve")
    for who in ("a-operator", "b-operator"):
        inbox = scene.call(who, "GET", "/bulletins/inbox")
        [entry] = [i for i in inbox["items"] if i["bulletin"]["id"] == nid]
        assert entry["delivery"]["status"] == "delivered", entry
        assert entry["delivery"]["programme_id"] is None, entry

    sha = scene.clips["normal"][1]
    for unit, who, other in ((scene.a, "a-operator", scene.b), (scene.b, "b-operator", None)):
        start = math.ceil(time.time()) + LEAD_S
        body = {"start": datetime.fromtimestamp(start, UTC).isoformat()}
        accepted = scene.call(who, "POST", f"/bulletins/{nid}/accept", body)
        [mine] = accepted["deliveries"]  # a commune sees its own delivery only
        assert mine["status"] == "scheduled" and stamp(mine["first_start"]) == start
        heard = proofs(scene, scene.devices[unit], mine["programme_id"], LEAD_S + 20)
        for record in heard.values():
            assert record["outcome"] == "played", record
            errors.append(stamp(record["actual_start"]) - start)
            assert abs(errors[-1]) < ON_TIME_S, (record, start)
        if other is not None:  # the commune that has not accepted: nothing scheduled, nothing heard
            for device in scene.devices[other]:
                assert scene.live.w.get("/plays", device_id=device)["total"] == 0
                schedule = scene.live.w.get(f"/devices/{device}/schedule")
                assert all(c["sha256"] != sha for i in schedule["items"] for c in i["clips"])
            detail = scene.call("p-editor", "GET", f"/bulletins/{nid}")
            assert delivery(detail, other)["status"] == "delivered"
    return int(nid)


def next_slot() -> datetime:
    """The first local minute boundary at least SLOT_MARGIN_S from now."""
    return datetime.fromtimestamp(math.ceil((time.time() + SLOT_MARGIN_S) / 60) * 60, UTC)


def priority_level(scene: Scene, slot: datetime) -> tuple[int, dict[int, int]]:
    """Slots at `slot`, each commune's own item there; the bulletin lands at their head."""
    hhmm = slot.astimezone(LOCAL).strftime("%H:%M")
    own: dict[int, int] = {}
    for unit, who in ((scene.a, "a-operator"), (scene.b, "b-operator")):
        body = {"slots": [{"start_time": hhmm, "weekdays": "1234567"}]}
        scene.call(who, "PUT", f"/org-units/{unit}/slots", body)
        fields = one_off([scene.clips["own"][0]], [scene.zones[unit]], at=slot, title="Tin xã")
        own[unit] = int(scene.live.w.approved(**fields, org_unit_id=unit)["id"])
    sent = scene.send("p-editor", "priority", "priority", "Lịch cắt điện tuần tới")
    pid = sent["id"]
    approved = scene.call("p-approver", "POST", f"/bulletins/{pid}/approve")
    for unit in (scene.a, scene.b):  # placed by the approval alone: no commune acted
        d = delivery(approved, unit)
        assert d["status"] == "scheduled" and d["slot_position"] == 0, d
        assert stamp(d["first_start"]) == slot.timestamp(), d
    return int(pid), own


def check_slot(
    scene: Scene, pid: int, own: dict[int, int], slot: datetime, errors: list[float]
) -> None:
    """The priority bulletin plays at the slot start, the commune's own item right after it."""
    detail = scene.call("p-editor", "GET", f"/bulletins/{pid}")
    wait = slot.timestamp() - time.time() + 20
    for unit in (scene.a, scene.b):
        devices = scene.devices[unit]
        first = proofs(scene, devices, delivery(detail, unit)["programme_id"], wait)
        then = proofs(scene, devices, own[unit], 15)
        for device in devices:
            head, local = first[device], then[device]
            # The reasons first: pytest cuts long dicts (a preempted own item said nothing).
            why = (head["outcome"], head.get("reason"), local["outcome"], local.get("reason"))
            assert head["outcome"] == local["outcome"] == "played", (why, head, local)
            errors.append(stamp(head["actual_start"]) - slot.timestamp())
            assert abs(errors[-1]) < ON_TIME_S, head
            assert stamp(local["planned_start"]) == slot.timestamp(), local
            assert stamp(local["actual_start"]) >= stamp(head["ended_at"]) - 0.1, (head, local)


@requires_mosquitto
def test_each_level_reaches_two_communes_with_real_agents(tmp_path: Path) -> None:
    began = time.monotonic()
    with live_server(tmp_path) as live:
        scene, credentials = build(live, tmp_path)
        with agent_processes(live.settings, credentials, tmp_path / "agents") as agents:
            try:
                wait_until(lambda: synced(scene), 40, "the agents online with their zones")
            except AssertionError:
                raise AssertionError("\n".join(a.output()[-2000:] for a in agents)) from None
            normal: list[float] = []
            nid = normal_level(scene, normal)
            slot = next_slot()
            pid, own = priority_level(scene, slot)

            before = time.time()
            sent = scene.send("p-approver", "emergency", "emergency", "Cảnh báo lũ quét")
            assert sent["status"] == "approved"  # an approver who may run emergencies: at once
            eid = sent["id"]
            emergency: dict[int, dict[str, Any]] = {}
            for unit in (scene.a, scene.b):  # checked after the slot, which must not wait
                programme = delivery(sent, unit)["programme_id"]
                emergency |= proofs(scene, scene.devices[unit], programme, 15, must=False)
            if len(emergency) == len(scene.all_devices):
                assert time.time() < slot.timestamp() - 3, "too slow: raise SLOT_MARGIN_S"

            priority: list[float] = []
            check_slot(scene, pid, own, slot, priority)
            late: dict[int, float] = {}
            for device in scene.all_devices:
                record = emergency.get(device)
                assert record is not None, f"device {device} sent no proof of the emergency"
                assert record["outcome"] == "played", record
                late[device] = stamp(record["actual_start"]) - before
            assert all(-0.5 < s < EMERGENCY_S for s in late.values()), late

            # The progress job's next run (every 30 s in the planner), brought forward.
            live.w.planner.bulletin_progress()
            for bulletin in (nid, pid, eid):
                detail = scene.call("p-editor", "GET", f"/bulletins/{bulletin}")
                assert detail["delivery_counts"] == {"played": 2}, detail
                for unit in (scene.a, scene.b):
                    d = delivery(detail, unit)
                    clusters = len(scene.devices[unit])
                    assert (d["clusters_played"], d["clusters_targeted"]) == (clusters, clusters)
    # What each cluster's sound card got, back to back: the four clips, each once, in order.
    expected = [TONES[n] for n in ("normal", "emergency", "priority", "own")]
    for agent in agents:
        assert tones_heard(agent.data_dir) == expected, agent.uid
    print(
        f"start error, normal: {[round(e, 3) for e in normal]}, priority: "
        f"{[round(e, 3) for e in priority]}; emergency after the send: "
        f"{[round(e, 3) for e in late.values()]}; took {time.monotonic() - began:.0f} s"
    )
