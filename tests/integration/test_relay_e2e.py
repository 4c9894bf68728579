"""Scheduled relay with the real server, a real station and three real agents.

A recurring programme relays a station for 20 s, then plays a clip. Every cluster of the zone
plays the relayed audio in step (the station's markers are heard at the same instant). The
station dies mid-relay: the server finds the dead air and stops sending, every device falls
back to the fallback clip within the configured seconds, and the clip after the relay starts on
time. Proof of play says how much was relayed and how much was fallback.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from audio.pcm import SAMPLE_RATE
from edge_agent.agent import Agent
from loa_testkit.harness import eventually, running
from loa_testkit.livesim import Recording, load_recording
from loa_testkit.playfix import FAST, make_clip
from loa_testkit.radio import radio_station
from loa_testkit.stack import stack_agent
from tests.integration.test_end_to_end import Live, in_zone, live_server
from tests.live.markers import heard_by_device, marker_wav, matched_skews
from tests.stack import requires_mosquitto

pytestmark = [requires_mosquitto, pytest.mark.slow]

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
RELAY_S = 20.0
KILL_AT_S = 8.0  # the station dies this far into the relay (heard time: killed DELAY earlier)
DEAD_AIR_S = 2.0
FALLBACK_AFTER_S = 1.5
DELAY_MS = 1500
LEAD_S = 20  # planning, distribution and the fallback clip's transfer
FALLBACK_HZ, AFTER_HZ = 660.0, 990.0
WINDOW = SAMPLE_RATE // 20  # 50 ms
# Audio the server had already taken from the station when it died (its relay queue's
# prefill, about 1.2 s): it is still sent, and heard, before the dead air begins.
BUFFERED_S = 2.0


def _agents(live: Live, tmp_path: Path, devices: list[tuple[int, str, str]]) -> list[Agent]:
    return [
        stack_agent(live.settings, uid, tmp_path / uid, password=pw, event_resend_s=2, **FAST)
        for _id, uid, pw in devices
    ]


def _synced(agent: Agent) -> bool:
    return agent.runtime.sync.estimate is not None


def tone_onset(data_dir: Path, freq: float, after: float) -> float | None:
    """Wall-clock instant a device first played `freq` (dominant, 50 ms windows) after `after`."""
    sim = data_dir / "sim"
    pcm, lines = load_recording(Recording(sim / "output.wav", sim / "plays.jsonl"))
    segments = [(x["sample_offset"], x["start_wall"]) for x in lines if x["event"] == "segment"]
    samples = pcm.astype(np.float64)
    bin_hz = SAMPLE_RATE / WINDOW
    for pos in range(0, len(samples) - WINDOW, WINDOW // 2):
        offset, start = max((s for s in segments if s[0] <= pos), key=lambda s: s[0])
        wall = start + (pos - offset) / SAMPLE_RATE
        if wall < after:
            continue
        block = samples[pos : pos + WINDOW]
        if np.sqrt(np.mean(block**2)) < 300:
            continue
        spectrum = np.abs(np.fft.rfft(block * np.hanning(WINDOW)))
        if abs(float(np.argmax(spectrum)) * bin_hz - freq) <= bin_hz:
            return wall
    return None


def _recurring_at(start: datetime) -> dict[str, Any]:
    """A daily rule whose first occurrence is `start` (local wall time, to the second)."""
    local = start.astimezone(LOCAL)
    return {
        "rrule": f"FREQ=DAILY;BYHOUR={local.hour};BYMINUTE={local.minute};BYSECOND={local.second}",
        "dtstart": local.replace(tzinfo=None).isoformat(),
    }


def test_a_relay_plays_in_step_and_falls_back_when_the_station_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "LOA_RELAY_DEAD_AIR_S": DEAD_AIR_S,
        "LOA_RELAY_FALLBACK_AFTER_S": FALLBACK_AFTER_S,
        "LOA_RELAY_PLAYOUT_DELAY_MS": DELAY_MS,
    }.items():
        monkeypatch.setenv(name, str(value))
    station = tmp_path / "station.wav"
    marker = marker_wav(station)  # 7 markers 0.5 s apart, a 4 s track the station loops
    fallback = make_clip(tmp_path / "clips", seconds=6, freq=FALLBACK_HZ)
    after = make_clip(tmp_path / "clips", seconds=3, freq=AFTER_HZ)
    with radio_station(station) as radio, live_server(tmp_path) as live:
        w = live.w
        org = w.org()
        devices = [w.device(org) for _ in range(3)]
        agents = _agents(live, tmp_path, devices)
        fallback_id, after_id = live.store_clip(fallback), live.store_clip(after)
        source = w.post(
            "/relay-sources",
            {"name": "VOV1 (thử)", "url": radio.url, "kind": "national",
             "allow_private": True, "org_unit_id": org},
            expect=201,
        )  # fmt: skip

        async def scenario() -> tuple[float, dict[str, Any]]:
            async with running(agents[0]), running(agents[1]), running(agents[2]):
                zone = await asyncio.to_thread(w.zone, org, None, [d[0] for d in devices])
                for agent in agents:
                    await eventually(partial(in_zone, agent, zone), what="the zone")
                    await eventually(partial(_synced, agent), what="a clock estimate")
                start = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
                body = {
                    "title": "Tiếp âm VOV1 rồi bản tin xã",
                    "zone_ids": [zone],
                    "items": [
                        {"kind": "relay", "relay_source_id": source["id"],
                         "duration_s": RELAY_S, "fallback_clip_id": fallback_id},
                        {"kind": "clip", "clip_id": after_id},
                    ],
                    **_recurring_at(start),
                }  # fmt: skip
                programme = await asyncio.to_thread(partial(w.approved, **body))
                kill_at = start.timestamp() + KILL_AT_S - DELAY_MS / 1000
                await asyncio.sleep(max(0.0, kill_at - time.time()))
                radio.kill()
                end = start.timestamp() + RELAY_S + after.duration_s
                await asyncio.sleep(max(0.0, end - time.time()) + 1.0)

                def proved() -> bool:
                    return all(
                        any(p["programme_id"] == programme["id"] for p in _plays(live, d[0]))
                        for d in devices
                    )

                await eventually(proved, timeout=20, what="proof of play from every device")
                return start.timestamp(), programme

        start, programme = asyncio.run(asyncio.wait_for(scenario(), 150))
        proofs = [
            next(p for p in _plays(live, d[0]) if p["programme_id"] == programme["id"])
            for d in devices
        ]
        runs = w.get("/relay-runs")
    for proof in proofs:
        assert proof["outcome"] == "played", proof
        assert proof["relay_mode"] == "mixed", proof
        assert KILL_AT_S - 1 <= proof["relayed_s"] <= KILL_AT_S + DEAD_AIR_S + BUFFERED_S, proof
        least = RELAY_S - KILL_AT_S - DEAD_AIR_S - FALLBACK_AFTER_S - BUFFERED_S
        assert proof["fallback_s"] >= least, proof
    # In step: the station's markers during the relay, heard by every device at one instant.
    heard = [
        [t for t in heard_by_device(a.settings.state_dir, marker) if t < start + KILL_AT_S]
        for a in agents
    ]
    assert all(len(h) >= 5 for h in heard), heard
    skews = matched_skews(heard)
    assert len(skews) >= 4 and statistics.median(skews) < 0.002, skews
    for agent in agents:
        state = agent.settings.state_dir
        fell_back = tone_onset(state, FALLBACK_HZ, after=start)
        assert fell_back is not None, "no fallback heard"
        # The station died at KILL_AT_S (heard time): its buffered audio, the dead air the
        # server waits out, then the devices' wait for frames.
        late = fell_back - (start + KILL_AT_S)
        assert 0 < late <= DEAD_AIR_S + FALLBACK_AFTER_S + BUFFERED_S, late
        clip_start = tone_onset(state, AFTER_HZ, after=start + RELAY_S - 1)
        assert clip_start is not None and abs(clip_start - (start + RELAY_S)) < 0.06, clip_start
    [run] = [r for r in runs["items"] if r["programme_id"] == programme["id"]]
    assert run["alarm"], run  # the dead air raised an alarm


def _plays(live: Live, device_id: int) -> list[dict[str, Any]]:
    return list(live.w.get("/plays", device_id=device_id)["items"])
