"""Commands the agent must refuse, saying why in the ack (issue 10, defect 8)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge_agent.hardware import SimHardware
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, observing, run, running
from protocol import DesiredState, LiveJoin, LiveLeave, TopicKind, encode, live_topic


def _raw_command(**fields: Any) -> bytes:
    # json.dumps writes NaN and Infinity as bare literals, which json.loads reads back.
    return json.dumps({"v": 1, "type": "command", "name": "test_tone"} | fields).encode()


def test_a_command_that_never_expires_is_refused_in_its_ack(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    hw = SimHardware()
    agent = make_agent(broker, uid, tmp_path, hardware=hw)

    async def scenario() -> None:
        async with observing(broker, uid) as obs, running(agent):
            never = {"nan-1": float("nan"), "inf-1": float("inf"), "y9999": 253402300799.0}
            for cmd_id, expires_at in never.items():
                await obs.send(TopicKind.COMMAND, _raw_command(id=cmd_id, expires_at=expires_at))
            await eventually(lambda: len(obs.of(TopicKind.ACK)) == len(never))
            for ack in obs.of(TopicKind.ACK):
                assert ack.id in never and not ack.ok
                assert ack.detail.startswith("refused: invalid: expires_at")
            # A live join and a bad command without a usable id are refused without an ack.
            join = json.loads(
                encode(LiveJoin(id="j-nan", session_id="s1", topic=live_topic(1, "s1"),
                                expires_at=time.time() + 30))
            ) | {"expires_at": float("nan"), "type": "live_join"}  # fmt: skip
            await obs.send(TopicKind.COMMAND, json.dumps(join).encode())
            await obs.wait_for(TopicKind.ACK, lambda m: m.id == "j-nan" and not m.ok)
            await obs.send(TopicKind.COMMAND, _raw_command(id="", expires_at=float("nan")))
            await eventually(lambda: agent.rejected.get("invalid") == 5)
            assert hw.actions("test_tone") == []
            assert agent.runtime.live.current is None
            assert len(obs.of(TopicKind.ACK)) == 4
            # The count goes out with the next telemetry (a new interval sends one at once).
            state = DesiredState(version=1, volume=50, telemetry_interval_s=60)
            await obs.send(TopicKind.STATE, encode(state))
            sample = await obs.wait_for(TopicKind.TELEMETRY, lambda m: m.rejected_messages)
            assert sample.rejected_messages == 5

    run(scenario())


def test_a_live_join_for_a_zone_the_device_is_not_in_is_refused(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    agent = make_agent(broker, uid, tmp_path)

    def join(cmd_id: str, zone: int, session: str, topic_session: str | None = None) -> bytes:
        topic = live_topic(zone, topic_session or session)
        return encode(
            LiveJoin(id=cmd_id, session_id=session, topic=topic, expires_at=time.time() + 30)
        )

    async def scenario() -> None:
        async with observing(broker, uid) as obs, running(agent):
            await obs.send(
                TopicKind.STATE, encode(DesiredState(version=1, volume=50, zone_ids=[7]))
            )
            await eventually(lambda: agent.held.zone_ids == (7,))

            await obs.send(TopicKind.COMMAND, join("j-8", 8, "s8"))
            ack = await obs.wait_for(TopicKind.ACK, lambda m: m.id == "j-8")
            assert not ack.ok
            assert ack.detail == "refused: this device is not in zone 8 (its zones: 7)"
            assert agent.runtime.live.current is None
            # A topic of another session than the one named is refused too.
            await obs.send(TopicKind.COMMAND, join("j-x", 7, "s7", topic_session="other"))
            ack = await obs.wait_for(TopicKind.ACK, lambda m: m.id == "j-x")
            assert not ack.ok and "is not live session s7's" in ack.detail
            assert agent.runtime.live.rejected == {"misdirected_join": 2}

            # Its own zone is joined (and left).
            await obs.send(TopicKind.COMMAND, join("j-7", 7, "s7"))
            assert (await obs.wait_for(TopicKind.ACK, lambda m: m.id == "j-7")).ok
            leave = LiveLeave(id="l-7", session_id="s7", expires_at=time.time() + 30)
            await obs.send(TopicKind.COMMAND, encode(leave))
            assert (await obs.wait_for(TopicKind.ACK, lambda m: m.id == "l-7")).ok

    run(scenario())
