"""The acoustic self-test on a real agent, broker and sink; the sim microphone's path is set
per run in the agent's sim_acoustic.json, so each verdict comes from real arithmetic."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.capture import SIM_ACOUSTIC_FILE, AlsaCapture, CaptureError
from edge_agent.hardware import SimHardware
from edge_agent.selftest import BASELINE_KEY
from firmware_profiles import load_profile
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import Observer, eventually, make_agent, new_device_id, observing, run
from loa_testkit.harness import running as agent_running
from loa_testkit.playfix import (
    FAST,
    ServerDouble,
    at,
    document,
    item,
    join_zone,
    make_clip,
    serving,
)
from protocol import (
    Ack,
    Command,
    DesiredState,
    DeviceEvent,
    LiveJoin,
    TopicKind,
    encode,
    live_topic,
)
from schedules import Priority
from schedules.tz import local_tz

FAULTS: dict[str, dict[str, Any]] = {
    "healthy again": {"seed": 7},
    "one dead horn of two": {"horns": [0, 0], "dead_horns": [1]},
    "two dead horns of four": {"dead_horns": [0, 2]},
    "blown driver": {"band_loss_above_hz": 1500, "band_loss_db": 25},
    "clipping amplifier": {"clip_at": 0.05},
    "hum at the pole": {"noise_dbfs": -45},
    "every horn dead": {"dead_horns": [0, 1, 2, 3]},
    "microphone of zeros": {"dead_horns": [0, 1, 2, 3], "noise_dbfs": None},
    "unreadable path file": {"horns": "loud"},
}
EXPECTED = {
    "healthy again": "ok",
    "one dead horn of two": "level_low",
    "two dead horns of four": "level_low",
    "blown driver": "high_loss",
    "clipping amplifier": "distorted",
    "hum at the pole": "noisy",
    "every horn dead": "silent",
    "microphone of zeros": "no_signal_input",
    "unreadable path file": "failed",
}


class FakeWall:
    """The agent's wall clock, moved by the test."""

    def __init__(self, local: str) -> None:
        self.now = 0.0
        self.set(local)

    def set(self, local: str) -> None:
        self.now = datetime.fromisoformat(local).replace(tzinfo=local_tz()).timestamp()

    def __call__(self) -> float:
        return self.now


def _path(agent: Agent, fault: dict[str, Any] | None) -> None:
    target = agent.settings.state_dir / SIM_ACOUSTIC_FILE
    if fault is None:
        target.unlink(missing_ok=True)
    else:
        target.write_text(json.dumps(fault))


def _selftests(server: ServerDouble, uid: str) -> list[DeviceEvent]:
    """The device's selftest events as the server stores them (by seq, in order)."""
    seen: dict[int, DeviceEvent] = {}
    for device, batch in server.batches:
        for e in batch.events:
            if device == uid and isinstance(e, DeviceEvent) and e.kind == "selftest":
                seen[e.seq] = e
    return [seen[seq] for seq in sorted(seen)]


async def _command(
    obs: Observer, cmd_id: str, *, now: float | None = None, timeout: float = 15, **args: Any
) -> Ack:
    """Send a self_test command (expiring a minute after `now`, default the real clock)."""
    expires = (time.time() if now is None else now) + 60
    cmd = Command(id=cmd_id, name="self_test", args=args, expires_at=expires)
    await obs.send(TopicKind.COMMAND, encode(cmd))
    ack: Ack = await obs.wait_for(TopicKind.ACK, lambda m: m.id == cmd_id, timeout=timeout)
    return ack


async def _event(server: ServerDouble, uid: str, count: int) -> DeviceEvent:
    await eventually(lambda: len(_selftests(server, uid)) >= count, 15, "a selftest event")
    return _selftests(server, uid)[count - 1]


def test_first_run_is_the_baseline_then_each_fault_gives_its_verdict(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    hardware = SimHardware()
    agent = make_agent(broker, uid, tmp_path, hardware=hardware)
    codes: dict[str, str] = {}
    walls: list[float] = []

    async def scenario() -> None:
        async with (
            serving(broker, uid) as server,
            observing(broker, uid) as obs,
            agent_running(agent),
        ):
            ack = await _command(obs, "st-0", volume=25)
            first = await _event(server, uid, 1)
            assert ack.ok and ack.detail.startswith("Kết quả: lần đo đầu tiên")
            assert first.code == "baseline" and first.baseline and first.command_id == "st-0"
            assert first.figures is not None and first.figures.snr_db > 40
            assert first.level_vs_baseline_db is None
            stored = await asyncio.to_thread(agent.runtime.db.meta, BASELINE_KEY)
            assert stored is not None and json.loads(stored)["snr_db"] == first.figures.snr_db
            # Played at the asked volume, then the desired one again.
            assert hardware.actions("volume")[-2:] == [25, 70]
            for n, (name, fault) in enumerate(FAULTS.items(), start=1):
                _path(agent, fault)
                await _command(obs, f"st-{n}")
                event = await _event(server, uid, n + 1)
                assert event.command_id == f"st-{n}" and not event.baseline
                codes[name] = event.code
                walls.append(agent.selftest.last_run_s or 0.0)
                if event.code == "failed":
                    assert "sim_acoustic.json" in event.detail and event.figures is None
                if event.code == "level_low":
                    assert event.level_vs_baseline_db is not None
                    assert -7 < event.level_vs_baseline_db < -5
                    assert event.detail.startswith("Kết quả: yếu tiếng (Mức âm thấp hơn")
            _path(agent, None)
            again = await _command(obs, "st-rb", rebaseline=True)
            assert again.ok and (await _event(server, uid, len(FAULTS) + 2)).baseline

    run(scenario(), timeout=150)
    assert codes == EXPECTED
    assert max(walls) < 20  # generous: ~3.5 s of sweep and ~0.1 s of analysis
    assert agent.rejected == {}


def test_a_busy_output_refuses_the_command_and_the_daily_run_retries(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    clip = make_clip(tmp_path / "clips", seconds=4)
    wall = FakeWall("2026-12-07T11:29:00")
    agent = make_agent(broker, uid, tmp_path / "agent", password=password, clock=wall, **FAST)

    async def scenario() -> None:
        async with (
            serving(broker, uid) as server,
            observing(broker, uid) as obs,
            agent_running(agent),
        ):
            await join_zone(server, agent, 7)
            await server.publish_zone_clip(7, clip)
            await eventually(lambda: agent.runtime.cache.ready(clip.sha256), what="the clip")
            state = DesiredState(version=2, volume=60, zone_ids=[7], selftest_daily_at="11:30")
            await server.publish_raw(uid, TopicKind.STATE, encode(state))
            await eventually(lambda: agent.daily_selftest.at is not None, what="daily time")
            await server.publish_schedule(document(uid, 1, [item("p@1", at(1), [clip])]))
            await eventually(lambda: agent.runtime.player.busy, what="the programme")
            ack = await _command(obs, "busy-1", now=wall())  # expiry: on the agent's clock
            assert not ack.ok and "đang phát" in ack.detail and "programme" in ack.detail
            wall.set("2026-12-07T11:30:00")
            agent.daily_selftest.nudge()
            busy = await _event(server, uid, 1)
            assert busy.code == "busy" and busy.command_id is None and busy.figures is None
            await eventually(lambda: not agent.runtime.player.busy, 10, "the programme end")
            await asyncio.sleep(0.3)
            assert agent.daily_selftest.attempts == 1  # not before the retry time
            wall.set("2026-12-07T11:40:01")
            agent.daily_selftest.nudge()
            done = await _event(server, uid, 2)
            assert done.code == "baseline" and done.command_id is None
            assert agent.daily_selftest.attempts == 2

    run(scenario(), timeout=60)


def test_an_emergency_takes_the_horns_from_the_test_at_once(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    clip = make_clip(tmp_path / "clips", seconds=1)
    agent = make_agent(broker, uid, tmp_path / "agent", password=password, **FAST)

    async def scenario() -> None:
        async with (
            serving(broker, uid) as server,
            observing(broker, uid) as obs,
            agent_running(agent),
        ):
            await join_zone(server, agent, 7)
            far = item("e@far", at(3600), [clip], priority=Priority.EMERGENCY)
            await server.publish_schedule(document(uid, 1, [far]))
            await server.publish_zone_clip(7, clip)
            await eventually(lambda: agent.runtime.cache.ready(clip.sha256), what="the clip")
            command = asyncio.create_task(_command(obs, "st-e"))
            tap = agent.selftest.tap
            await eventually(lambda: len(tap.played()) > 24_000, what="the sweep playing")
            start = at(1.2)
            now = item("e@now", start, [clip], priority=Priority.EMERGENCY)
            await server.publish_schedule(document(uid, 2, [now]))
            ack = await command
            assert not ack.ok and "bị ngắt" in ack.detail and "e@now" in ack.detail
            event = await _event(server, uid, 1)
            assert event.code == "interrupted" and event.command_id == "st-e"
            # Stopped well before its 3.5 s: the emergency had the output.
            assert len(tap.played()) < 3.0 * 48_000
            await eventually(
                lambda: any(getattr(e, "item_id", None) == "e@now" for e in server.events(uid)),
                10,
                "the emergency's proof",
            )
            proof = next(e for e in server.events(uid) if getattr(e, "item_id", "") == "e@now")
            assert proof.outcome == "played"
            assert proof.actual_start is not None
            assert abs(proof.actual_start - start.timestamp()) < 0.25
            assert not agent.selftest.running

    run(scenario(), timeout=60)


def test_the_daily_run_keeps_its_time_and_never_sounds_at_night(
    broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uid = new_device_id()
    wall = FakeWall("2026-12-07T11:29:50")
    hardware = SimHardware()
    agent = make_agent(broker, uid, tmp_path, clock=wall, hardware=hardware)
    caplog.set_level(logging.WARNING, logger="edge_agent.selftest")

    async def scenario() -> None:
        async with serving(broker, uid) as server, agent_running(agent):
            daily = agent.daily_selftest
            state = DesiredState(
                version=1, volume=60, selftest_daily_at="11:30", selftest_volume=20
            )
            await server.publish_raw(uid, TopicKind.STATE, encode(state))
            await eventually(lambda: daily.at is not None, what="the daily time")
            await asyncio.sleep(0.3)
            assert daily.attempts == 0  # 10 s early
            wall.set("2026-12-07T11:30:00")
            daily.nudge()
            first = await _event(server, uid, 1)
            assert first.code == "baseline" and first.command_id is None
            assert 20 in hardware.actions("volume") and hardware.volume == 60
            wall.set("2026-12-07T15:00:00")
            daily.nudge()
            await asyncio.sleep(0.3)
            assert daily.attempts == 1  # once a day
            wall.set("2026-12-08T11:30:05")
            daily.nudge()
            assert (await _event(server, uid, 2)).code == "ok"

            night = DesiredState(version=2, volume=60, selftest_daily_at="23:00")
            await server.publish_raw(uid, TopicKind.STATE, encode(night))
            await eventually(lambda: agent.held.state_version == 2, what="version 2")
            wall.set("2026-12-09T23:00:00")
            daily.nudge()
            await asyncio.sleep(0.3)
            assert daily.at is None and daily.attempts == 2
            refusals = [r for r in caplog.records if "23:00 refused" in r.getMessage()]
            assert len(refusals) == 1

    run(scenario(), timeout=60)


def test_no_microphone_refuses_the_command_and_reports_the_daily_run(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    profile = load_profile("sim").model_copy(update={"capture": None})
    wall = FakeWall("2026-12-07T09:00:00")
    agent = make_agent(broker, uid, tmp_path, profile=profile, clock=wall)

    async def scenario() -> None:
        async with (
            serving(broker, uid) as server,
            observing(broker, uid) as obs,
            agent_running(agent),
        ):
            refusals: list[tuple[dict[str, Any], str]] = [
                ({"volume": 101}, "outside 0-100"),
                ({"rebaseline": "yes"}, "true or false"),
                ({"level": 3}, "only volume and rebaseline"),
                ({}, "no microphone"),
            ]
            for n, (args, words) in enumerate(refusals):
                ack = await _command(obs, f"nc-{n}", now=wall(), **args)
                assert not ack.ok and words in ack.detail, ack.detail
            state = DesiredState(version=1, volume=60, selftest_daily_at="09:00")
            await server.publish_raw(uid, TopicKind.STATE, encode(state))
            event = await _event(server, uid, 1)
            assert event.code == "no_capture" and "micro" in event.detail

    run(scenario(), timeout=40)


def test_an_emergency_live_join_takes_the_horns_from_the_test(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    agent = make_agent(broker, uid, tmp_path, password=password)

    async def scenario() -> None:
        async with (
            serving(broker, uid) as server,
            observing(broker, uid) as obs,
            agent_running(agent),
        ):
            state = DesiredState(version=1, volume=50, zone_ids=[7])
            await obs.send(TopicKind.STATE, encode(state))
            await eventually(lambda: agent.held.zone_ids == (7,), what="zone 7")
            command = asyncio.create_task(_command(obs, "st-live"))
            tap = agent.selftest.tap
            await eventually(lambda: len(tap.played()) > 24_000, what="the sweep playing")
            join = LiveJoin(
                id="j-e",
                session_id="s-e",
                topic=live_topic(7, "s-e"),
                priority="emergency",
                expires_at=time.time() + 30,
            )
            await obs.send(TopicKind.COMMAND, encode(join))
            assert (await obs.wait_for(TopicKind.ACK, lambda m: m.id == "j-e")).ok
            ack = await command
            assert not ack.ok and "live session s-e" in ack.detail
            assert (await _event(server, uid, 1)).code == "interrupted"
            assert len(tap.played()) < 3.0 * 48_000
            assert agent.runtime.live.current is not None  # the emergency holds the output

    run(scenario(), timeout=40)


async def _alsa_error(capture: AlsaCapture) -> str:
    with pytest.raises(CaptureError) as caught:
        await capture.start(1.0)
    await capture.abort()
    return f"{caught.value} | {caught.value.vietnamese}"


def test_a_missing_microphone_or_arecord_is_a_plain_capture_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No such card on any test machine: arecord itself says so (it is in alsa-utils).
    nowhere = AlsaCapture(device="hw:CARD=NoSuchMic", sample_rate=48000)
    missing_card = asyncio.run(_alsa_error(nowhere))
    assert "hw:CARD=NoSuchMic" in missing_card and "arecord exited with" in missing_card
    assert "Không ghi âm được từ micro" in missing_card
    monkeypatch.setenv("PATH", "/nonexistent")
    no_tool = asyncio.run(_alsa_error(AlsaCapture(device="default", sample_rate=48000)))
    assert "arecord is not installed" in no_tool and "alsa-utils" in no_tool
