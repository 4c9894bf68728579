"""The agent in-process against a real Mosquitto: birth, desired state, commands, telemetry."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from edge_agent.agent import RESTART_EXIT_CODE
from edge_agent.hardware import SimHardware
from edge_agent.store import STATE_FILE
from firmware_profiles import FirmwareProfile, load_profile
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import (
    eventually,
    make_agent,
    new_device_id,
    observing,
    run,
    running,
    with_timeout,
)
from protocol import Command, DesiredState, TopicKind, encode


def _state(version: int, volume: int, **extra: Any) -> bytes:
    return encode(DesiredState(version=version, volume=volume, **extra))


def _command(name: str, *, id: str, expires_in: float = 60, **args: Any) -> bytes:
    return encode(Command(id=id, name=name, args=args, expires_at=time.time() + expires_in))


def _saved(data_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The saved state file's content and the data directory's file names."""
    return json.loads((data_dir / STATE_FILE).read_text()), [p.name for p in data_dir.iterdir()]


def test_birth_is_retained_and_telemetry_flows(broker: TestBroker, tmp_path: Path) -> None:
    uid = new_device_id()
    agent = make_agent(broker, uid, tmp_path, telemetry_interval_s=1)

    async def scenario() -> None:
        async with running(agent):
            await eventually(lambda: agent.births == 1, what="the birth")
            # Subscribing only now: the birth reaches us because it is retained.
            async with observing(broker, uid, clear=False) as obs:
                birth = await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "birth")
                assert birth.conn_id == agent.link.conn_id
                assert birth.firmware_profile == "sim"
                assert birth.agent_version == agent.version
                assert birth.state_version is None
                assert abs(birth.boot_time - time.time()) < 60
                sample = await obs.wait_for(TopicKind.TELEMETRY, lambda m: True, timeout=5)
                assert 30 <= sample.cpu_temp_c <= 60
                assert -95 <= sample.signal_dbm <= -45
                assert sample.signal_source == "wifi"
                assert sample.firmware_profile == "sim"

        async with observing(broker, uid) as obs:  # clears what the test left retained
            await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "offline")

    run(scenario())
    assert agent.exit_code == 0
    assert agent.rejected == {}


def test_desired_state_only_moves_forward_across_restarts(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid)
    first_hw, second_hw = SimHardware(), SimHardware()

    async def scenario() -> None:
        async with observing(broker, uid) as obs:
            first = make_agent(broker, uid, tmp_path, password=password, hardware=first_hw)
            async with running(first):
                await obs.send(TopicKind.STATE, _state(5, 40), retain=True)
                await eventually(lambda: first.held.state_version == 5, what="version 5")
                assert first_hw.volume == 40
                # The birth is republished so the retained status shows what is held.
                await obs.wait_for(
                    TopicKind.STATUS, lambda m: m.type == "birth" and m.state_version == 5
                )
                await obs.send(TopicKind.STATE, _state(3, 10), retain=True)
                await eventually(lambda: first.rejected.get("stale_version") == 1)
                await obs.send(TopicKind.STATE, _state(5, 99))  # same version: not re-applied
                await obs.send(TopicKind.STATE, _state(4, 99))
                await eventually(lambda: first.rejected.get("stale_version") == 2)
                assert first.held.state_version == 5
                assert first_hw.actions("volume") == [70, 40]  # profile default, then v5

            saved, names = await asyncio.to_thread(_saved, tmp_path)
            assert saved["state_version"] == 5 and saved["volume"] == 40
            assert STATE_FILE in names
            assert not [n for n in names if n.endswith(".tmp")]  # no temp files left

            # After a restart the broker's retained state is the older version 3: ignored.
            second = make_agent(broker, uid, tmp_path, password=password, hardware=second_hw)
            async with running(second):
                await eventually(lambda: second.rejected.get("stale_version") == 1)
                assert second.held.state_version == 5
                assert second_hw.volume == 40
                await obs.send(TopicKind.STATE, _state(6, 55, muted=True, telemetry_interval_s=5))
                await eventually(lambda: second.held.state_version == 6)
                assert second_hw.volume == 55
                assert second.held.muted is True
                assert second.telemetry_interval() == 5
            assert 10 not in second_hw.actions("volume")
            saved, _ = await asyncio.to_thread(_saved, tmp_path)
            assert saved["state_version"] == 6

    run(scenario())


def test_commands_are_carried_out_and_acknowledged(broker: TestBroker, tmp_path: Path) -> None:
    uid = new_device_id()
    hw = SimHardware()
    agent = make_agent(broker, uid, tmp_path, hardware=hw)

    async def scenario() -> None:
        async with observing(broker, uid) as obs, running(agent):

            async def ack_for(cmd_id: str) -> Any:
                return await obs.wait_for(TopicKind.ACK, lambda m: m.id == cmd_id)

            await obs.send(TopicKind.COMMAND, _command("set_volume", id="vol-1", volume=35))
            ack = await ack_for("vol-1")
            assert ack.ok and "35%" in ack.detail
            assert hw.volume == 35

            await obs.send(TopicKind.COMMAND, _command("set_volume", id="vol-2", volume=150))
            ack = await ack_for("vol-2")
            assert not ack.ok and "args.volume" in ack.detail
            await obs.send(TopicKind.COMMAND, _command("set_volume", id="vol-3", volume="loud"))
            assert not (await ack_for("vol-3")).ok
            assert hw.volume == 35

            await obs.send(TopicKind.COMMAND, _command("test_tone", id="tone-1", seconds=2))
            assert (await ack_for("tone-1")).ok
            assert hw.actions("test_tone") == [2.0]

            births = agent.births
            await obs.send(TopicKind.COMMAND, _command("resync", id="sync-1"))
            assert (await ack_for("sync-1")).ok
            assert agent.births == births + 1

            # A command that expired before it arrived is not carried out.
            await obs.send(
                TopicKind.COMMAND, _command("test_tone", id="late-1", expires_in=-5, seconds=1)
            )
            ack = await ack_for("late-1")
            assert not ack.ok and "expired" in ack.detail
            assert hw.actions("test_tone") == [2.0]

            # A redelivered command id is dropped, not carried out twice.
            await obs.send(TopicKind.COMMAND, _command("test_tone", id="tone-1", seconds=2))
            await eventually(lambda: agent.rejected.get("duplicate_command") == 1)
            assert hw.actions("test_tone") == [2.0]
            assert len(obs.of(TopicKind.ACK)) == 6

    run(scenario())


def test_test_tone_powers_the_amplifier_around_the_tone(broker: TestBroker, tmp_path: Path) -> None:
    data = load_profile("sim").model_dump()
    data["amplifier"] = {"kind": "relay", "gpio_pin": 17, "warmup_ms": 300, "cooldown_ms": 0}
    profile = FirmwareProfile.model_validate(data)
    uid = new_device_id()
    hw = SimHardware()
    agent = make_agent(broker, uid, tmp_path, hardware=hw, profile=profile)

    async def scenario() -> None:
        async with observing(broker, uid) as obs, running(agent):
            await obs.send(TopicKind.COMMAND, _command("test_tone", id="tone-amp", seconds=1))
            ack = await obs.wait_for(TopicKind.ACK, lambda m: m.id == "tone-amp")
            assert ack.ok

    run(scenario())
    sequence = [(c.action, c.value) for c in hw.calls if c.action != "volume"]
    assert sequence == [("amplifier", 1.0), ("test_tone", 1.0), ("amplifier", 0.0), ("close", 0)]
    switched_on, tone = hw.calls[1], hw.calls[2]
    assert tone.at - switched_on.at >= 0.3  # the amplifier's warm-up is respected


def test_restart_command_acks_then_exits_with_the_restart_code(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    agent = make_agent(broker, uid, tmp_path)

    async def scenario() -> int:
        async with observing(broker, uid) as obs:
            task = asyncio.create_task(agent.run())
            await with_timeout(agent.link.connected.wait(), 10)
            conn_id = agent.link.conn_id
            await obs.send(TopicKind.COMMAND, _command("restart_agent", id="rs-1"))
            code = await with_timeout(task, 10)
            ack = await obs.wait_for(TopicKind.ACK, lambda m: m.id == "rs-1")
            assert ack.ok
            await obs.wait_for(
                TopicKind.STATUS,
                lambda m: m.type == "offline" and m.reason == "shutdown" and m.conn_id == conn_id,
            )
            return code

    assert run(scenario()) == RESTART_EXIT_CODE


def test_garbage_is_counted_and_survived(broker: TestBroker, tmp_path: Path) -> None:
    uid = new_device_id()
    hw = SimHardware()
    agent = make_agent(broker, uid, tmp_path, hardware=hw)
    huge = b'{"v": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    garbage = [
        b"not json at all",
        b"\xff\xfe\x00 binary",
        b"",
        huge,
        b"[1, 2, 3]",
        b'"a string"',
        json.dumps({"v": 2, "type": "state", "version": 9, "volume": 10}).encode(),
        json.dumps({"type": "state", "version": 9, "volume": 10}).encode(),
        json.dumps({"v": 1, "type": "state", "version": "nine", "volume": 10}).encode(),
        json.dumps({"v": 1, "type": "state", "version": 9, "volume": 101}).encode(),
        json.dumps({"v": 1, "type": "state", "version": 0, "volume": 10}).encode(),
    ]
    bad_commands = [
        b"{{{",
        huge,
        json.dumps({"v": 1, "id": "x", "name": "self_destruct", "expires_at": 9e9}).encode(),
        json.dumps({"v": 1, "id": "x", "name": "test_tone"}).encode(),  # no expiry
        json.dumps({"v": 1, "id": 7, "name": "resync", "expires_at": "soon"}).encode(),
        json.dumps({"v": 1, "id": "y", "name": "resync", "expires_at": 9e9, "args": [1]}).encode(),
    ]

    async def scenario() -> None:
        async with observing(broker, uid) as obs, running(agent):
            for payload in garbage:
                await obs.send(TopicKind.STATE, payload)
            for payload in bad_commands:
                await obs.send(TopicKind.COMMAND, payload)
            await eventually(
                lambda: sum(agent.rejected.values()) == len(garbage) + len(bad_commands),
                what="every bad message to be rejected",
            )
            # Still alive and still listening: a valid state and command work.
            await obs.send(TopicKind.STATE, _state(2, 20))
            await eventually(lambda: agent.held.state_version == 2)
            await obs.send(TopicKind.COMMAND, _command("set_volume", id="after", volume=25))
            assert (await obs.wait_for(TopicKind.ACK, lambda m: m.id == "after")).ok
            assert agent.link.connects == 1  # garbage never cost the connection

    run(scenario())
    assert agent.rejected == {
        "not_json": 4,
        "oversized": 2,
        "not_object": 2,
        "bad_version": 2,
        "invalid": 7,
    }
    assert hw.volume == 25
