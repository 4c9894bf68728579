"""Horn checks with a real (ALSA) microphone at the hardware seam, and during live sessions."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio.opus import OpusEncoder
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from edge_agent.capture import SIM_ACOUSTIC_FILE, AlsaCapture, CaptureError, Recording
from edge_agent.clips import ClipCache
from edge_agent.localdb import LocalDb
from edge_agent.playback import Segment
from edge_agent.silence import HORNS_VN, MIC_EVERY_S, MIC_RETRY_S, MIC_WINDOW_S, SilenceWatcher
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, observing, run, running
from loa_testkit.playfix import FAST, make_clip, serving
from protocol import DesiredState, DeviceEvent, LiveJoin, TopicKind, encode, live_topic
from protocol.liveframe import LiveFrame, encode_frame
from protocol.mqtt_client import Outgoing
from tests.edge_agent.test_silence import DEAD_HORNS, clip_item, segment, tone

SERVER_NOW = 1_800_000_000.0
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
BASELINE_GAIN_DB = -10.0  # the self-test baseline's path gain (level_db)
HEALTHY_DB = -12.0  # healthy horns: the microphone hears the output 12 dB down
DEAD_NOISE_DBFS = -75.0  # dead horns: street noise only


@dataclass
class FakeClock:
    """The watcher's monotonic clock, moved by the test."""

    t: float = 0.0
    waiting: list[tuple[float, asyncio.Future[None]]] = field(default_factory=list)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        for entry in [w for w in self.waiting if w[0] <= self.t]:
            self.waiting.remove(entry)
            entry[1].set_result(None)

    async def sleep_until(self, when: float) -> None:
        if when > self.t:
            future = asyncio.get_running_loop().create_future()
            self.waiting.append((when, future))
            await future


class FakeMic:
    """AlsaCapture's `record` at the seam: the played tone attenuated, or noise (dead horns)."""

    def __init__(self, clock: FakeClock, *, gain_db: float | None) -> None:
        self.clock = clock
        self.gain_db = gain_db  # None: the horns are dead

    async def record(self, seconds: float) -> Recording:
        started = self.clock.t
        await self.clock.sleep_until(started + seconds)  # the frames go on while it records
        n = round(seconds * SAMPLE_RATE)
        if self.gain_db is None:
            rng = np.random.default_rng(1)
            amp = 10 ** (DEAD_NOISE_DBFS / 20)
            return Recording(started, (rng.standard_normal(n) * amp).astype(np.float32))
        heard = tone(seconds, -20.0 + self.gain_db).astype(np.float32) / 32768.0
        return Recording(started, heard)


def healthy(clock: FakeClock) -> FakeMic:
    return FakeMic(clock, gain_db=HEALTHY_DB)


def dead(clock: FakeClock) -> FakeMic:
    return FakeMic(clock, gain_db=None)


@dataclass
class MicRig:
    watcher: SilenceWatcher
    clock: FakeClock
    seg: Segment
    events: list[dict[str, Any]] = field(default_factory=list)
    written: int = 0

    async def play(self, seconds: float, dbfs: float = -20.0) -> None:
        """Write `seconds` of a tone frame by frame, the clock moving 20 ms per frame."""
        frame = tone(FRAME_S, dbfs)
        for _ in range(round(seconds / FRAME_S)):
            self.watcher.frame(self.seg, self.written, frame)
            self.written += len(frame)
            self.clock.advance(FRAME_S)
            await asyncio.sleep(0)
        await self.watcher.drain()


@asynccontextmanager
async def mic_rig(
    tmp_path: Path,
    mic_of: Callable[[FakeClock], Any],
    *,
    baseline: float | None = BASELINE_GAIN_DB,
    busy: Callable[[], bool] = lambda: False,
) -> AsyncIterator[MicRig]:
    await asyncio.to_thread(tmp_path.mkdir, parents=True, exist_ok=True)
    db = LocalDb(data_dir=tmp_path)
    await asyncio.to_thread(db.open)
    cache = ClipCache(clip_dir=tmp_path / "clips", db=db, quota_bytes=10**9)
    await asyncio.to_thread(cache.load, downloads=[])
    loud = make_clip(tmp_path / "src", seconds=2)
    events: list[dict[str, Any]] = []

    async def record(event: dict[str, Any]) -> None:
        DeviceEvent.model_validate({**event, "seq": 1})
        events.append(event)

    async def path_gain() -> float | None:
        return baseline

    clock = FakeClock()
    watcher = SilenceWatcher(
        record=record,
        server_time=lambda: SERVER_NOW,
        clips=cache,
        acoustic_file=None,
        mic=mic_of(clock),
        mic_busy=busy,
        path_gain_db=path_gain,
        monotonic=clock,
    )
    try:
        yield MicRig(watcher, clock, segment(clip_item(f"{tmp_path.name}@1", loud)), events)
    finally:
        await watcher.drain()
        db.close()


def test_alsa_horn_check_passes_healthy_horns_and_reports_dead_ones(tmp_path: Path) -> None:
    async def scenario() -> None:
        for name, baseline in (("ok", BASELINE_GAIN_DB), ("okfloor", None)):
            async with mic_rig(tmp_path / name, healthy, baseline=baseline) as rig:
                await rig.play(180)
                assert rig.events == [] and list(rig.watcher.windows) == [0.0]  # the next in 10 min
        for name, baseline in (("dead", BASELINE_GAIN_DB), ("deadfloor", None)):
            async with mic_rig(tmp_path / name, dead, baseline=baseline) as rig:
                await rig.play(180)
                assert [(e["code"], e["detail"]) for e in rig.events] == [
                    ("horns_silent", HORNS_VN)
                ]
                assert rig.events[0]["item_id"] == f"{name}@1"
                assert rig.events[0]["silent_s"] == 5 * MIC_WINDOW_S
                starts = list(rig.watcher.windows)
                assert len(starts) == 5  # reported: no more windows for this item
                gaps = np.diff(starts)
                assert all(MIC_RETRY_S <= g < MIC_RETRY_S + MIC_WINDOW_S + 1 for g in gaps)

    run(scenario(), timeout=120)


def test_between_alsa_windows_nothing_of_the_output_is_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with mic_rig(tmp_path, healthy) as rig:
            await rig.play(MIC_WINDOW_S + 1)  # a window, judged against the frames in it
            assert list(rig.watcher.windows) == [0.0] and rig.watcher.checks["horns"] == 1
            assert len(rig.watcher._ring) == 0  # not even the frames' levels, once judged
            await rig.play(120)  # 10 min to the next window: the frames go by unkept
            assert len(rig.watcher._ring) == 0 and rig.events == []

    run(scenario(), timeout=60)


def test_alsa_windows_are_rate_limited_and_wait_for_the_self_test(tmp_path: Path) -> None:
    async def scenario() -> None:
        testing = [True]
        async with mic_rig(tmp_path / "rate", healthy, busy=lambda: testing[0]) as rig:
            await rig.play(60)  # the self-test holds the microphone
            assert list(rig.watcher.windows) == []
            testing[0] = False
            await rig.play(30, dbfs=-60)  # quiet output says nothing about the horns
            assert list(rig.watcher.windows) == []
            await rig.play(21 * 60)
            starts = list(rig.watcher.windows)
            assert starts[0] == pytest.approx(90.0)
            assert len(starts) == 3 and all(g >= MIC_EVERY_S for g in np.diff(starts))
            assert rig.events == []

    run(scenario(), timeout=120)


def test_a_missing_alsa_microphone_is_one_log_line_and_the_watcher_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = AlsaCapture(device="hw:CARD=NoSuchMic", sample_rate=48000)

    async def direct() -> str:
        with pytest.raises(CaptureError) as caught:
            await nowhere.record(1.0)
        return str(caught.value)

    assert "hw:CARD=NoSuchMic" in asyncio.run(direct())

    async def scenario() -> None:
        async with mic_rig(tmp_path, lambda _: nowhere) as rig:
            with caplog.at_level(logging.WARNING, logger="edge_agent.silence"):
                await rig.play(0.02)  # one loud frame: a window is asked for, and fails
                await rig.play(120)  # the player carries on; no new attempt for 10 min
            assert rig.events == [] and rig.watcher.checks["horns"] == 1
            assert list(rig.watcher.windows) == [0.0]

    run(scenario(), timeout=60)
    lines = [r for r in caplog.records if r.name == "edge_agent.silence"]
    assert len(lines) == 1 and "hw:CARD=NoSuchMic" in lines[0].getMessage()
    assert lines[0].levelno == logging.WARNING


# -- a live session on a real agent and broker ------------------------------------------------


def _loud_frames(seconds: float, capture0: float) -> list[bytes]:
    enc = OpusEncoder()
    pcm: Pcm = tone(seconds)
    count = len(pcm) // FRAME_SAMPLES
    return [
        encode_frame(
            LiveFrame(
                seq=n,
                capture_us=round((capture0 + n * FRAME_S) * 1e6),
                payload=enc.encode(pcm[n * FRAME_SAMPLES : (n + 1) * FRAME_SAMPLES]),
                last=n == count - 1,
            )
        )
        for n in range(count)
    ]


def test_dead_horns_during_a_live_session_raise_horns_silent(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    agent = make_agent(broker, uid, tmp_path / "agent", password=password, **FAST)
    topic = live_topic(7, "s-dead")

    async def scenario() -> None:
        async with (
            serving(broker, uid) as server,
            observing(broker, uid) as obs,
            running(agent),
        ):
            (agent.settings.state_dir / SIM_ACOUSTIC_FILE).write_text(json.dumps(DEAD_HORNS))
            state = DesiredState(version=1, volume=50, zone_ids=[7])
            await obs.send(TopicKind.STATE, encode(state))
            await eventually(lambda: agent.held.zone_ids == (7,), what="zone 7")
            join = LiveJoin(
                id="j-dead", session_id="s-dead", topic=topic, playout_delay_ms=300,
                expires_at=time.time() + 30,
            )  # fmt: skip
            await obs.send(TopicKind.COMMAND, encode(join))
            assert (await obs.wait_for(TopicKind.ACK, lambda m: m.id == "j-dead")).ok
            await asyncio.sleep(0.2)  # the SUBSCRIBE for the live topic is on its way
            t0 = time.time()
            for n, data in enumerate(_loud_frames(9.0, t0)):
                await asyncio.sleep(max(0.0, t0 + n * FRAME_S - time.time()))
                obs.link.publish(Outgoing(topic, data, qos=0))

            def silences() -> list[DeviceEvent]:
                return [e for e in server.device_events(uid) if e.kind == "silence"]

            await eventually(lambda: bool(silences()), 15, "the alarm")
            [event] = silences()
            assert event.code == "horns_silent" and event.item_id == "live:s-dead"
            assert event.detail == HORNS_VN

    run(scenario(), timeout=60)
