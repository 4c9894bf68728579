"""The live API end to end: server, real broker, simulated listeners, microphone WebSocket."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.websockets import WebSocketDisconnect

from audio.pcm import to_bytes
from audio.signals import make_marker, marker_track
from loa_testkit.harness import eventually, run
from loa_testkit.livesim import SimListener, heard_times, skews
from loa_testkit.stack import Stack, live_stack
from server.settings import ServerSettings

FRAME_MS = ServerSettings.model_fields["live_frame_ms"].default  # the app's frames


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Stack]:
    """The server with live audio and its own broker."""
    with live_stack(tmp_path) as stack:
        yield stack


def _post(api: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.client.post(path, json=body, headers=api.headers)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def _fleet(api: Stack, zones: dict[str, list[str]]) -> tuple[int, dict[str, int], dict[str, str]]:
    """An org unit, devices, zones of them; returns (unit, zone ids, device passwords)."""
    unit = _post(api, "/api/v1/org-units", {"name": "Xã Bảo Ninh", "kind": "commune"})["id"]
    ids: dict[str, int] = {}
    passwords: dict[str, str] = {}
    for uid in sorted({u for members in zones.values() for u in members}):
        r = _post(
            api,
            "/api/v1/devices",
            {"uid": uid, "name": uid, "org_unit_id": unit, "firmware_profile": "sim"},
        )
        ids[uid], passwords[uid] = r["device"]["id"], r["credentials"]["password"]
    zone_ids = {}
    for name, members in zones.items():
        body = {"org_unit_id": unit, "name": name, "device_ids": [ids[u] for u in members]}
        zone_ids[name] = _post(api, "/api/v1/zones", body)["id"]
    time.sleep(0.5)  # the broker reloads its ACL
    return unit, zone_ids, passwords


async def _listen(api: Stack, tmp: Path, passwords: dict[str, str], **kw: Any) -> list[SimListener]:
    out = []
    for uid, pw in passwords.items():
        li = SimListener(uid=uid, out_dir=tmp / uid, **kw)
        li.connect(host="127.0.0.1", port=api.settings.mqtt_port, password=pw)
        assert li.link is not None
        asyncio.get_running_loop().create_task(li.link.run())
        out.append(li)
    for li in out:
        assert li.link is not None
        await asyncio.wait_for(li.link.connected.wait(), 10)
    await asyncio.sleep(0.3)
    return out


def _get(api: Stack, sid: str) -> dict[str, Any]:
    sessions = api.client.get("/api/v1/live", headers=api.headers).json()
    return next(s for s in sessions if s["id"] == sid)


def _token(api: Stack) -> str:
    return api.headers["Authorization"].split()[1]


def test_microphone_to_every_zone_in_sync_with_proof(
    api: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.devices.commands")
    _, zones, passwords = _fleet(api, {"a": ["dev-a1", "dev-ab"], "b": ["dev-ab", "dev-b1"]})
    marker = make_marker()
    times = (0.5, 1.3, 2.1)
    # The browser records at 16 kHz and says so in its first message; the server resamples.
    track48 = marker_track(duration_s=2.8, marker_times_s=times, marker=marker)
    track16 = track48[::3]

    def speak(sid: str) -> None:
        url = f"/api/v1/live/{sid}/ingest"
        with api.client.websocket_connect(url) as ws:
            ws.send_text(json.dumps({"token": _token(api), "sample_rate": 16000}))
            t0 = time.monotonic()
            for k, i in enumerate(range(0, len(track16), 1600)):  # 100 ms messages, real time
                ws.send_bytes(to_bytes(track16[i : i + 1600]))
                time.sleep(max(0.0, t0 + (k + 1) * 0.1 - time.monotonic()))
            time.sleep(0.3)
            ws.send_text(json.dumps({"type": "stop"}))

    async def scenario() -> list[SimListener]:
        listeners = await _listen(api, tmp_path, passwords)
        body = {"source": "mic", "zone_ids": [zones["b"], zones["a"]], "playout_delay_ms": 400}
        started = time.monotonic()
        session = await asyncio.to_thread(_post, api, "/api/v1/live", body)
        sid = session["id"]
        assert session["targeted"] == 3 and session["ingest_url"].endswith("/ingest")
        await eventually(
            lambda: _get(api, sid)["listeners"] == 3, timeout=5, what="three listeners"
        )
        assert time.monotonic() - started < 2.0  # every device joined within 2 s of the call
        # dev-ab is in both zones: it joined only the lower zone's topic.
        ab = next(li for li in listeners if li.uid == "dev-ab")
        assert ab.receiver is not None and ab.receiver.current is not None
        assert ab.receiver.current.join.topic.split("/")[3] == str(min(zones.values()))
        await asyncio.to_thread(speak, sid)
        await eventually(lambda: _get(api, sid)["state"] == "ended", what="the end")
        await eventually(lambda: all(li.events for li in listeners), what="proofs")
        await eventually(
            lambda: {d["status"] for d in _get(api, sid)["devices"]} == {"left"},
            what="every device to acknowledge the leave",
        )
        view = _get(api, sid)
        assert view["end_reason"] == "the microphone ended the broadcast"
        assert view["frames_sent"] * FRAME_MS > 2000  # ms of audio
        for li in listeners:
            assert li.link is not None
            await li.link.close()
        return listeners

    listeners = run(scenario(), timeout=40)
    heard = []
    for li in listeners:
        found, underruns = heard_times(li.recordings[0], marker)
        assert len(found) == 3 and underruns == 0, (li.uid, found)
        gaps = np.diff(found)
        assert np.allclose(gaps, np.diff(times), atol=0.002)  # the timeline survived
        heard.append(found)
        assert ab_or_any_played(li.events[0])
    assert max(skews(heard)) < 0.001
    plays = api.client.get("/api/v1/plays", headers=api.headers).json()
    live_items = [p for p in plays["items"] if p["item_id"].startswith("live:")]
    assert len(live_items) == 3 and {p["outcome"] for p in live_items} == {"played"}
    # Live join/leave answers are the live service's, not unknown device commands.
    assert "matches no command" not in caplog.text


def ab_or_any_played(event: dict[str, Any]) -> bool:
    """A proof that says the device played live frames."""
    return bool(event["kind"] == "live" and event["outcome"] == "played" and event["frames_played"])


def test_emergency_preempts_and_later_emergency_wins(api: Stack, tmp_path: Path) -> None:
    unit, zones, passwords = _fleet(api, {"v": ["dev-e1", "dev-e2"]})

    async def scenario() -> None:
        listeners = await _listen(api, tmp_path, passwords, emergency_volume=95)
        normal = await asyncio.to_thread(
            _post, api, "/api/v1/live", {"source": "mic", "zone_ids": [zones["v"]]}
        )
        await eventually(lambda: _get(api, normal["id"])["listeners"] == 2, what="normal joined")
        first = await asyncio.to_thread(
            _post, api, "/api/v1/live",
            {"source": "mic", "org_unit_id": unit, "priority": "emergency"},
        )  # fmt: skip
        await eventually(lambda: _get(api, first["id"])["listeners"] == 2, what="emergency 1")
        second = await asyncio.to_thread(
            _post, api, "/api/v1/live",
            {"source": "mic", "org_unit_id": unit, "priority": "emergency"},
        )  # fmt: skip
        await eventually(lambda: _get(api, second["id"])["listeners"] == 2, what="emergency 2")
        await eventually(
            lambda: {d["status"] for d in _get(api, first["id"])["devices"]} == {"left"},
            what="the first emergency to be left",
        )
        detail = _get(api, first["id"])["devices"][0]["detail"]
        assert f"superseded by live session {second['id']}" in detail
        normal_view = _get(api, normal["id"])
        assert {d["status"] for d in normal_view["devices"]} == {"left"}
        # A normal session now is refused with the reason.
        late = await asyncio.to_thread(
            _post, api, "/api/v1/live", {"source": "mic", "zone_ids": [zones["v"]]}
        )
        await eventually(
            lambda: {d["status"] for d in _get(api, late["id"])["devices"]} == {"refused"},
            what="refusal",
        )
        assert "is playing" in _get(api, late["id"])["devices"][0]["detail"]
        for li in listeners:
            assert 95 in li.volumes  # the profile's emergency volume was forced
            assert li.link is not None
            await li.link.close()
        r = await asyncio.to_thread(
            api.client.delete, f"/api/v1/live/{second['id']}", headers=api.headers
        )
        assert r.status_code == 200 and r.json()["state"] == "ended"

    run(scenario(), timeout=40)


def test_idle_microphone_ends_the_session_with_a_reason(api: Stack) -> None:
    _, zones, _ = _fleet(api, {"q": ["dev-q1"]})
    body = {"source": "mic", "zone_ids": [zones["q"]], "idle_timeout_s": 1}
    sid = _post(api, "/api/v1/live", body)["id"]
    deadline = time.monotonic() + 5
    while _get(api, sid)["state"] != "ended" and time.monotonic() < deadline:
        time.sleep(0.1)
    view = _get(api, sid)
    assert view["state"] == "ended"
    assert view["end_reason"] == "the microphone sent no audio for 1 s"


@pytest.mark.parametrize(
    ("hello", "payloads", "code", "words"),
    [
        ({"token": "wrong"}, [], 1008, "Not signed in"),
        ("not json", [], 1008, "JSON"),
        ({"sample_rate": 1000}, [], 1003, "1000 Hz is not supported"),
        ({"format": "flac"}, [], 1003, "Unknown audio format"),
        ({}, [b"\x01\x02\x03"], 1003, "whole 16-bit samples"),
        ({"format": "opus"}, [b"garbage!" * 3] * 30, 1003, "not Opus"),
    ],
)
def test_bad_microphone_input_is_refused_clearly(
    api: Stack, hello: Any, payloads: list[bytes], code: int, words: str
) -> None:
    _, zones, _ = _fleet(api, {"m": ["dev-m1"]})
    sid = _post(api, "/api/v1/live", {"source": "mic", "zone_ids": [zones["m"]]})["id"]
    other = _post(api, "/api/v1/live", {"source": "mic", "zone_ids": [zones["m"]]})["id"]
    with api.client.websocket_connect(f"/api/v1/live/{sid}/ingest") as ws:
        if isinstance(hello, dict):
            hello = json.dumps({"token": _token(api), **hello} if "token" not in hello else hello)
        ws.send_text(hello)
        for p in payloads:
            ws.send_bytes(p)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
    assert closed.value.code == code and words in closed.value.reason
    # Nothing else was disturbed: both sessions still run.
    assert _get(api, sid)["state"] == "running" and _get(api, other)["state"] == "running"


def test_bad_targets_and_sources_get_4xx(api: Stack, tmp_path: Path) -> None:
    _, zones, _ = _fleet(api, {"x": ["dev-x1"]})
    r = api.client.post(
        "/api/v1/live", json={"source": "mic", "zone_ids": [987654]}, headers=api.headers
    )
    assert r.status_code == 422 and "Unknown zone id(s): 987654." in r.text
    r = api.client.post("/api/v1/live", json={"source": "url"}, headers=api.headers)
    assert r.status_code == 422
    r = api.client.post(
        "/api/v1/live",
        json={"source": "url", "url": "file:///etc/passwd", "zone_ids": [zones["x"]]},
        headers=api.headers,
    )
    assert r.status_code == 422 and "only registered relay sources" in r.text
    r = api.client.post(
        "/api/v1/live", json={"source": "file", "clip_id": 4242, "zone_ids": [zones["x"]]},
        headers=api.headers,
    )  # fmt: skip
    assert r.status_code == 404 and "Clip 4242 does not exist." in r.text
    assert api.client.delete("/api/v1/live/nope", headers=api.headers).status_code == 404
    assert api.client.get("/api/v1/live").status_code == 401


def test_console_cookie_feeds_the_microphone_only_from_our_own_pages(api: Stack) -> None:
    _, zones, _ = _fleet(api, {"c": ["dev-c1"]})
    sid = _post(api, "/api/v1/live", {"source": "mic", "zone_ids": [zones["c"]]})["id"]
    api.client.cookies.set("loa_session", _token(api))
    try:
        url = f"/api/v1/live/{sid}/ingest"
        # Another site's page cannot use the operator's cookie (cross-site WebSocket hijacking).
        evil = {"origin": "http://evil.example"}
        with (
            api.client.websocket_connect(url, headers=evil) as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            ws.receive_bytes()
        assert closed.value.code == 1008 and "console" in closed.value.reason
        with api.client.websocket_connect(url, headers={"origin": "http://testserver"}) as ws:
            ws.send_text(json.dumps({"format": "pcm_s16le", "sample_rate": 48000}))
            for _ in range(25):
                ws.send_bytes(to_bytes(np.full(1920, 1000, dtype=np.int16)))
            ws.send_text(json.dumps({"type": "stop"}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_bytes()
        assert closed.value.code == 4000
    finally:
        api.client.cookies.clear()
    view = _get(api, sid)
    # All 1 s of audio sent before the stop is published (50 frames), then the session ends.
    audio_ms = (view["frames_sent"] - view["silent_frames"]) * view["frame_ms"]
    assert view["state"] == "ended" and audio_ms >= 1000
    assert view["end_reason"] == "the microphone ended the broadcast"


def test_sessions_outside_the_users_subtree_are_invisible_and_unstoppable(api: Stack) -> None:
    _, zones, _ = _fleet(api, {"x": ["dev-x1"]})
    unit_b = _post(api, "/api/v1/org-units", {"name": "Xã Quảng Phú", "kind": "commune"})["id"]
    body = {"org_unit_id": unit_b, "name": "Toàn xã"}
    zone_b = _post(api, "/api/v1/zones", body)["id"]
    dev = {"uid": "dev-y1", "name": "y", "org_unit_id": unit_b, "firmware_profile": "sim",
           "zone_ids": [zone_b]}  # fmt: skip
    _post(api, "/api/v1/devices", dev)
    user = {"username": "trucphat-b", "password": "mat-khau-b-1", "role": "operator",
            "org_unit_id": unit_b}  # fmt: skip
    _post(api, "/api/v1/users", user)
    r = api.client.post(
        "/api/v1/auth/token", data={"username": "trucphat-b", "password": "mat-khau-b-1"}
    )
    headers_b = {"Authorization": f"Bearer {r.json()['access_token']}"}
    sid_a = _post(api, "/api/v1/live", {"source": "mic", "zone_ids": [zones["x"]]})["id"]
    sid_b = _post(api, "/api/v1/live", {"source": "mic", "zone_ids": [zone_b]})["id"]
    both = _post(api, "/api/v1/live", {"source": "mic", "zone_ids": [zones["x"], zone_b]})["id"]
    seen = {s["id"] for s in api.client.get("/api/v1/live", headers=headers_b).json()}
    assert sid_a not in seen and {sid_b, both} <= seen
    r = api.client.delete(f"/api/v1/live/{sid_a}", headers=headers_b)
    assert r.status_code == 404 and "No live session" in r.json()["detail"]
    r = api.client.delete(f"/api/v1/live/{both}", headers=headers_b)
    assert r.status_code == 403 and "outside your org unit" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/live", json={"source": "mic", "zone_ids": [zones["x"]]}, headers=headers_b
    )
    # A foreign zone is refused exactly like a missing one (existence never leaks).
    assert r.status_code == 422 and r.json()["detail"] == f"Unknown zone id(s): {zones['x']}."
    assert api.client.delete(f"/api/v1/live/{sid_b}", headers=headers_b).status_code == 200
