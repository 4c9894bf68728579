"""The real server and real agents: a clip played live reaches every device of the zone in
sync; an emergency live session cuts into a running programme, which resumes afterwards."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from edge_agent.agent import Agent
from edge_agent.hardware import SimHardware
from loa_testkit.harness import eventually, running
from loa_testkit.playfix import FAST, make_clip, wav_hz
from loa_testkit.stack import stack_agent
from server.settings import ServerSettings
from tests.integration.test_end_to_end import Live, in_zone, live_server
from tests.live.markers import heard_by_device, marker_clip, matched_skews
from tests.server.test_programmes_fixtures import one_off
from tests.stack import requires_mosquitto

FRAME_MS = ServerSettings.model_fields["live_frame_ms"].default  # the server's live frames

pytestmark = requires_mosquitto


def _agents(live: Live, tmp_path: Path, devices: list[tuple[int, str, str]]) -> list[Agent]:
    return [
        stack_agent(live.settings, uid, tmp_path / uid, password=pw, event_resend_s=2, **FAST)
        for _id, uid, pw in devices
    ]


def _session(live: Live, session_id: str) -> dict[str, Any]:
    [found] = [s for s in live.w.get("/live") if s["id"] == session_id]
    return cast(dict[str, Any], found)


def _ended(live: Live, session_id: str) -> bool:
    return bool(_session(live, session_id)["state"] == "ended")


def _synced(agent: Agent) -> bool:
    return agent.runtime.sync.estimate is not None


def _proved(agent: Agent) -> bool:
    return bool(agent.runtime.live.proofs)


def _clock_reported(live: Live, device_id: int) -> bool:
    telemetry = live.w.get(f"/devices/{device_id}").get("telemetry") or {}
    error = telemetry.get("clock_error_ms")
    return isinstance(error, float) and 0 <= error < 20


def test_a_clip_played_live_reaches_every_device_of_the_zone_in_sync(tmp_path: Path) -> None:
    clip, marker = marker_clip(tmp_path / "clips")
    with live_server(tmp_path) as live:
        w = live.w
        org = w.org()
        devices = [w.device(org) for _ in range(3)]
        agents = _agents(live, tmp_path, devices)
        clip_id = live.store_clip(clip)

        async def scenario() -> dict[str, Any]:
            async with running(agents[0]), running(agents[1]), running(agents[2]):
                zone = await asyncio.to_thread(w.zone, org, None, [d[0] for d in devices])
                for agent in agents:
                    await eventually(partial(in_zone, agent, zone), what="the zone")
                    await eventually(partial(_synced, agent), what="a clock estimate")
                body = {"source": "file", "clip_id": clip_id, "zone_ids": [zone], "label": "Thử"}
                started = await asyncio.to_thread(w.post, "/live", body, 201)
                sid = started["id"]
                assert started["targeted"] == 3
                await eventually(partial(_ended, live, sid), timeout=20, what="the end")
                for agent in agents:
                    await eventually(partial(_proved, agent), timeout=5, what="live proof")
                await agents[0]._send_telemetry()  # the clock estimate's quality reaches the server
                await eventually(partial(_clock_reported, live, devices[0][0]), what="telemetry")
                return cast(dict[str, Any], await asyncio.to_thread(_session, live, sid))

        session = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert session["listeners"] + sum(d["status"] == "left" for d in session["devices"]) == 3
    ms = session["frame_ms"]  # LOA_LIVE_FRAME_MS
    assert session["frames_sent"] * ms >= 3800  # 4 s of frames (and a flagged last one)
    for agent in agents:
        [proof] = agent.runtime.live.proofs
        assert proof.outcome == "played" and proof.played * ms >= 3400, proof
        # A loop starved by a busy machine skips ahead to stay in sync: allow a few.
        assert proof.concealed + proof.late + proof.dropped <= 25, proof
    heard = [heard_by_device(agent.settings.state_dir, marker) for agent in agents]
    assert all(len(h) >= 5 for h in heard), heard  # 7 markers; a starved loop may lose one
    skews = matched_skews(heard)
    # One machine, one clock: the devices play the same sample at the same instant.
    assert len(skews) >= 4 and statistics.median(skews) < 0.002, skews


def test_an_emergency_preempts_a_running_programme_which_then_resumes(tmp_path: Path) -> None:
    programme_clip = make_clip(tmp_path / "clips", seconds=8, freq=440)
    warning = make_clip(tmp_path / "clips", seconds=2, freq=1000)
    with live_server(tmp_path) as live:
        w = live.w
        org = w.org()
        devices = [w.device(org)]
        [agent] = _agents(live, tmp_path, devices)
        programme_clip_id = live.store_clip(programme_clip)
        warning_id = live.store_clip(warning)

        called: list[float] = []

        async def scenario() -> str:
            async with running(agent):
                zone = await asyncio.to_thread(w.zone, org, None, [devices[0][0]])
                await eventually(partial(in_zone, agent, zone), what="the zone")
                start = datetime.fromtimestamp(round(time.time()) + 8, UTC)
                body = one_off([programme_clip_id], [zone], at=start)
                await asyncio.to_thread(partial(w.approved, **body))
                await eventually(partial(agent.runtime.cache.ready, programme_clip.sha256), 10)
                await asyncio.sleep(start.timestamp() + 2 - time.time())
                assert agent.runtime.player.busy
                warn = {"source": "file", "clip_id": warning_id, "org_unit_id": org,
                        "priority": "emergency"}  # fmt: skip
                called.append(time.time())
                sid = (await asyncio.to_thread(w.post, "/live", warn, 201))["id"]
                await eventually(partial(_ended, live, sid), timeout=20, what="the end")
                await asyncio.sleep(start.timestamp() + 8 + 2 + 1.5 - time.time())
                return str(sid)

        sid = asyncio.run(asyncio.wait_for(scenario(), 90))
        plays = w.get("/plays", device_id=devices[0][0])["items"]
        audit = w.get("/audit", action="live.start")
    [proof] = agent.runtime.live.proofs
    played_ms = proof.played * FRAME_MS
    assert proof.priority == "emergency" and proof.outcome == "played" and played_ms >= 1800
    assert proof.first_frame_at is not None
    audible_after = proof.first_frame_at - called[0]
    print(f"emergency audible {audible_after:.3f} s after the API call")
    assert audible_after < 2.0  # the target, with the default 500 ms playout delay
    hardware = cast(SimHardware, agent.hardware)
    volumes = [c.value for c in hardware.calls if c.action == "volume"]
    assert agent.profile.volume.emergency in volumes, volumes  # forced for the emergency
    hz = wav_hz(agent.settings.state_dir)
    tones = [round(h / 10) * 10 for h in hz if h > 100]
    # Programme, then the warning, then the programme again (resumed where it was cut).
    first_warning = tones.index(1000)
    assert 440 in tones[:first_warning] and 440 in tones[first_warning:], tones
    assert 6 <= tones.count(440) / 4 <= 10, tones  # about 8 s of programme in all
    programme = [p for p in plays if not p["item_id"].startswith("live:")]
    assert [p["outcome"] for p in programme] == ["played"], plays
    assert "resumed" in programme[0]["reason"], programme
    [warning_proof] = [p for p in plays if p["item_id"] == f"live:{sid}"]
    assert warning_proof["outcome"] == "played" and warning_proof["priority"] == "emergency"
    assert any(sid in str(entry) for entry in audit["items"]), audit
