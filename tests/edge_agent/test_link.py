"""The agent's connection survives broker restarts and revoked credentials."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, observing, run, running
from protocol import TopicKind


def test_agent_comes_back_after_the_broker_restarts(
    fresh_broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    agent = make_agent(fresh_broker, uid, tmp_path)

    async def scenario() -> None:
        async with observing(fresh_broker, uid) as obs, running(agent):
            first = agent.link.conn_id
            await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "birth" and m.conn_id == first)
            await asyncio.to_thread(fresh_broker.stop)
            await eventually(lambda: not agent.link.is_connected, what="the agent to notice")
            await asyncio.sleep(0.5)  # a few failed attempts while the broker is away
            await asyncio.to_thread(fresh_broker.start)
            await eventually(lambda: agent.link.connects == 2, what="the reconnect")
            second = agent.link.conn_id
            assert second != first
            birth = await obs.wait_for(
                TopicKind.STATUS, lambda m: m.type == "birth" and m.conn_id == second
            )
            assert birth.firmware_profile == "sim"

    run(scenario())
    assert agent.exit_code == 0


def test_revoked_credentials_are_refused_and_the_agent_keeps_trying(
    fresh_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    uid = new_device_id()
    agent = make_agent(fresh_broker, uid, tmp_path)

    def refusals() -> int:
        return sum(
            1
            for r in caplog.records
            if r.name == "protocol.mqtt_client" and "refused the connection" in r.getMessage()
        )

    async def scenario() -> None:
        task = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.link.connected.wait(), 10)
        fresh_broker.revoke_device(uid)
        # Restarting the broker drops the session; the agent's next CONNECTs are refused.
        await asyncio.to_thread(fresh_broker.stop)
        await asyncio.to_thread(fresh_broker.start)
        await eventually(lambda: refusals() >= 3, timeout=10, what="repeated refusals")
        assert not task.done()  # still running, still backing off
        assert agent.link.refused_reason is not None
        assert not agent.link.is_connected
        agent.request_stop()
        assert await asyncio.wait_for(task, 10) == 0

    run(scenario())
    advice = [
        r.getMessage()
        for r in caplog.records
        if r.name == "edge_agent.agent" and "revoked or are wrong" in r.getMessage()
    ]
    assert len(advice) == 1  # said once per episode, not on every attempt
    assert "LOA_AGENT_MQTT_PASSWORD" in advice[0]
