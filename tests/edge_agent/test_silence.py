"""Silence alarms: the watcher on arrays and real cached clips, then on a real agent and broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio.acoustic import AcousticPath, hear, heard_level_db
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from edge_agent.capture import SIM_ACOUSTIC_FILE
from edge_agent.clips import ClipCache
from edge_agent.localdb import LocalDb
from edge_agent.playback import Segment
from edge_agent.silence import CACHE_VN, DECODER_VN, HORNS_VN, SilenceWatcher, dbfs
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, run, running
from loa_testkit.playfix import FAST, Clip, at, document, item, join_zone, make_clip, serving
from protocol import DeviceEvent
from schedules import PlaybackItem, Priority, RelayPart

SERVER_NOW = 1_800_000_000.0  # the fake server clock the events are stamped with
DEAD_HORNS = {"dead_horns": [0, 1, 2, 3]}


def silent_opus(directory: Path, seconds: float) -> Clip:
    """A real Ogg/Opus file of digital silence (ffmpeg)."""
    assert shutil.which("ffmpeg") is not None, "ffmpeg is missing (make test installs it)"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"silence-{seconds:g}.opus"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
            "-i", "anullsrc=r=48000:cl=mono", "-t", str(seconds),
            "-c:a", "libopus", "-b:a", "48k", str(path),
        ],
        check=True,
    )  # fmt: skip
    return make_clip_from(path, seconds)


def make_clip_from(path: Path, seconds: float) -> Clip:
    data = path.read_bytes()
    return Clip(data, hashlib.sha256(data).hexdigest(), seconds)


@dataclass
class Rig:
    """A watcher over a real clip cache, with the events it recorded."""

    watcher: SilenceWatcher
    cache: ClipCache
    events: list[dict[str, Any]] = field(default_factory=list)


@asynccontextmanager
async def rigged(
    tmp_path: Path, *clips: Clip, mic: dict[str, Any] | None = None
) -> AsyncIterator[Rig]:
    await asyncio.to_thread(tmp_path.mkdir, parents=True, exist_ok=True)
    db = LocalDb(data_dir=tmp_path)
    await asyncio.to_thread(db.open)
    cache = ClipCache(clip_dir=tmp_path / "clips", db=db, quota_bytes=10**9)
    await asyncio.to_thread(cache.load, downloads=[])
    for clip in clips:  # as the fetcher does: a temp file, verified and renamed into place
        cache.part_path(clip.sha256).write_bytes(clip.data)
        assert await asyncio.to_thread(cache.adopt, clip.sha256)
    acoustic: Path | None = None
    if mic is not None:
        acoustic = tmp_path / SIM_ACOUSTIC_FILE
        if mic:
            acoustic.write_text(json.dumps(mic))
    events: list[dict[str, Any]] = []

    async def record(event: dict[str, Any]) -> None:
        DeviceEvent.model_validate({**event, "seq": 1})  # what the outbox would send
        events.append(event)

    watcher = SilenceWatcher(
        record=record, server_time=lambda: SERVER_NOW, clips=cache, acoustic_file=acoustic
    )
    try:
        yield Rig(watcher, cache, events)
    finally:
        await watcher.drain()
        db.close()


def clip_item(item_id: str, *clips: Clip, relays: tuple[RelayPart, ...] = ()) -> PlaybackItem:
    start = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
    seconds = sum(c.duration_s for c in clips) + sum(r.duration_s for r in relays)
    return PlaybackItem(
        item_id=item_id,
        programme_id=1,
        start=start,
        end=start + timedelta(seconds=seconds),
        clips=tuple(c.ref for c in clips),
        priority=Priority.NORMAL,
        relays=relays,
    )


def segment(it: PlaybackItem, *, volume: int = 70) -> Segment:
    seconds = it.duration.total_seconds()
    return Segment(item=it, position_s=0.0, start_mono=0.0, stop_mono=seconds, volume=volume)


def tone(seconds: float, dbfs: float = -20.0) -> Pcm:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    amp = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    return np.asarray(np.rint(amp * np.sin(2 * np.pi * 440 * t)), dtype=np.int16)


async def feed(rig: Rig, seg: Segment, pcm: Pcm, *, written: int = 0) -> int:
    """Hand `pcm` to the watcher frame by frame from `written`, as write_segment does."""
    for lo in range(0, len(pcm), FRAME_SAMPLES):
        rig.watcher.frame(seg, written + lo, pcm[lo : lo + FRAME_SAMPLES])
        # A check takes milliseconds and frames come every 20 ms on air: done before the next.
        await rig.watcher.drain()
    return written + len(pcm)


def zeros(seconds: float) -> Pcm:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def test_five_seconds_of_silence_over_a_loud_clip_raise_one_event(tmp_path: Path) -> None:
    loud = make_clip(tmp_path / "src", seconds=20)

    async def scenario() -> None:
        async with rigged(tmp_path, loud) as rig:
            seg = segment(clip_item("loud@1", loud))
            n = await feed(rig, seg, zeros(4.9))
            n = await feed(rig, seg, tone(0.1, -60), written=n)  # low but not silent: a new run
            n = await feed(rig, seg, zeros(4.9), written=n)
            assert rig.events == [] and rig.watcher.checks["output"] == 0
            n = await feed(rig, seg, zeros(0.2), written=n)  # 5.1 s of silence
            assert rig.watcher.checks["output"] == 1
            assert [e["code"] for e in rig.events] == ["output_silent"]
            await feed(rig, seg, zeros(6), written=n)  # past another 5 s: no new check, event
            event = rig.events[0]
            assert event["kind"] == "silence" and event["item_id"] == "loud@1"
            assert event["at"] == SERVER_NOW and event["silent_s"] == 5.0
            assert event["detail"] == DECODER_VN.format(s=5.0)
            assert len(rig.events) == 1 and rig.watcher.checks["output"] == 1
            assert rig.cache.ready(loud.sha256)  # the file is sound: kept

    run(scenario())


def test_a_silent_stretch_of_the_clip_is_not_a_fault(tmp_path: Path) -> None:
    quiet = silent_opus(tmp_path / "src", 11)

    async def scenario() -> None:
        async with rigged(tmp_path, quiet) as rig:
            seg = segment(clip_item("quiet@1", quiet))
            await feed(rig, seg, zeros(11))
            assert rig.watcher.checks["output"] == 2  # checked at 5 s and at 10 s
            assert rig.events == []
            assert rig.cache.ready(quiet.sha256)

    run(scenario())


def test_silence_in_a_relay_part_is_left_to_the_relay(tmp_path: Path) -> None:
    loud = make_clip(tmp_path / "src", seconds=3)
    relay = RelayPart(
        before_clip=0,
        source_id=1,
        source_name="VOV1",
        duration_s=8,
        fallback=loud.ref,
        session_id="r1-20261207040000-0",
    )

    async def scenario() -> None:
        async with rigged(tmp_path, loud) as rig:
            seg = segment(clip_item("relay@1", loud, relays=(relay,)))
            n = await feed(rig, seg, zeros(8))  # the whole relay part is dead air
            assert rig.watcher.checks["output"] == 0 and rig.events == []
            await feed(rig, seg, zeros(3), written=n)  # the clip after it: 3 s, under the 5 s
            assert rig.watcher.checks["output"] == 0 and rig.events == []

    run(scenario())


def test_a_damaged_cached_clip_is_reported_and_removed(tmp_path: Path) -> None:
    loud = make_clip(tmp_path / "src", seconds=8)
    quiet = silent_opus(tmp_path / "src", 8)

    async def scenario() -> None:
        async with rigged(tmp_path, loud) as rig:
            path = rig.cache.path(loud.sha256)
            path.write_bytes(quiet.data)  # valid audio, wrong content: the hash tells
            await feed(rig, segment(clip_item("bad@1", loud)), zeros(6))
            assert [e["detail"] for e in rig.events] == [CACHE_VN.format(s=5.0)]
            assert not path.exists() and not rig.cache.ready(loud.sha256)
            assert loud.sha256 not in {row.sha256 for row in rig.cache.db.clips()}

    run(scenario())


def test_dead_horns_raise_horns_silent_and_healthy_ones_do_not(tmp_path: Path) -> None:
    loud = make_clip(tmp_path / "src", seconds=30)

    async def scenario() -> None:
        async with rigged(tmp_path / "dead", loud, mic=DEAD_HORNS) as rig:
            await feed(rig, segment(clip_item("dead@1", loud)), tone(30))
            assert [(e["code"], e["detail"]) for e in rig.events] == [("horns_silent", HORNS_VN)]
            assert rig.events[0]["silent_s"] == 5.0
            assert rig.watcher.checks["horns"] == 5  # from the first loud second, then each
        async with rigged(tmp_path / "ok", loud, mic={}) as rig:  # no file: a healthy path
            await feed(rig, segment(clip_item("ok@1", loud)), tone(30))
            assert rig.events == []
            assert rig.watcher.checks["horns"] == 3  # one loud second in ten
        async with rigged(tmp_path / "muted", loud, mic=DEAD_HORNS) as rig:
            await feed(rig, segment(clip_item("muted@1", loud), volume=0), tone(30))
            assert rig.events == [] and rig.watcher.checks["horns"] == 0
        async with rigged(tmp_path / "nomic", loud) as rig:  # a profile without a microphone
            await feed(rig, segment(clip_item("nomic@1", loud)), tone(30))
            assert rig.events == [] and rig.watcher.checks["horns"] == 0

    run(scenario())


# -- a real agent, broker and sink ------------------------------------------------------------


def _silences(events: list[DeviceEvent]) -> list[DeviceEvent]:
    """The silence events among a device's events."""
    return [e for e in events if e.kind == "silence"]


def test_a_clip_damaged_in_the_cache_is_reported_and_fetched_again(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    loud = make_clip(tmp_path / "clips", seconds=8)
    quiet = silent_opus(tmp_path / "clips", 8)
    agent = make_agent(broker, uid, tmp_path / "agent", password=password, **FAST)

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            await join_zone(server, agent, 7)
            await server.publish_zone_clip(7, loud)
            cache = agent.runtime.cache
            await eventually(lambda: cache.ready(loud.sha256), what="the clip")
            server.answer_clip_requests = False  # the removed file stays gone for the assertion
            cache.path(loud.sha256).write_bytes(quiet.data)  # damaged after it was verified
            await server.publish_schedule(document(uid, 1, [item("bad@1", at(1.5), [loud])]))
            await eventually(lambda: bool(_silences(server.device_events(uid))), 15, "the alarm")
            [event] = _silences(server.device_events(uid))
            assert event.code == "output_silent" and event.item_id == "bad@1"
            assert event.silent_s is not None and 5 <= event.silent_s < 6
            assert "bộ nhớ đệm bị hỏng" in event.detail
            assert not cache.path(loud.sha256).exists() and not cache.ready(loud.sha256)
            await eventually(
                lambda: any(r.sha256 == loud.sha256 for _, r in server.clip_requests),
                5,
                "a request for the clip again",
            )

    run(scenario(), timeout=60)


def test_dead_horns_on_a_real_agent_raise_horns_silent(broker: TestBroker, tmp_path: Path) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    loud = make_clip(tmp_path / "clips", seconds=8)
    agent = make_agent(broker, uid, tmp_path / "agent", password=password, **FAST)

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            (agent.settings.state_dir / SIM_ACOUSTIC_FILE).write_text(json.dumps(DEAD_HORNS))
            await join_zone(server, agent, 7)
            await server.publish_zone_clip(7, loud)
            await eventually(lambda: agent.runtime.cache.ready(loud.sha256), what="the clip")
            await server.publish_schedule(document(uid, 1, [item("mute@1", at(1.5), [loud])]))
            await eventually(lambda: bool(_silences(server.device_events(uid))), 15, "the alarm")
            [event] = _silences(server.device_events(uid))
            assert event.code == "horns_silent" and event.item_id == "mute@1"
            assert event.detail == HORNS_VN

    run(scenario(), timeout=60)


@pytest.mark.parametrize(
    "path",
    [
        AcousticPath(),
        AcousticPath(dead_horns=(0, 1)),
        AcousticPath(dead_horns=(0, 1, 2, 3)),  # the noise alone
        AcousticPath(band_loss_above_hz=1000.0, band_loss_db=30.0),
        AcousticPath(clip_at=0.05, mic_gain_db=-12.0, distance_delay_ms=200.0),
        AcousticPath(noise_dbfs=None, dead_horns=(0, 1, 2, 3)),
    ],
)
def test_the_horn_checks_level_is_the_level_the_sim_microphone_records(path: AcousticPath) -> None:
    # The horn check takes the noise at its mean power instead of drawing it: the same level.
    low, high = tone(1.0, -20.0), tone(1.0, -26.0)
    high = np.asarray(np.rint(high * np.sin(np.arange(len(high)) * 0.7)), dtype=np.int16)
    played = (low + high).astype(np.float32) / 32768.0  # 440 Hz and ~5.3 kHz
    recorded = dbfs(hear(path, played, SAMPLE_RATE), 1.0)
    assert heard_level_db(path, played, SAMPLE_RATE) == pytest.approx(recorded, abs=0.05)
