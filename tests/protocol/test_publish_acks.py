"""Waiting for a publish's acknowledgement: never answered by an old message with the same id."""

from __future__ import annotations

import asyncio

import pytest

from loa_testkit.brokerfix import TestBroker
from protocol import SERVER_USERNAME
from protocol.mqtt_client import EARLY_ACKS_KEPT, MqttLink, Outgoing, PublishError

TOPIC = "loa/v1/zone/9/live/acks"


def test_qos0_streams_leave_nothing_behind_and_never_answer_a_later_wait(
    broker: TestBroker,
) -> None:
    async def body() -> None:
        link = MqttLink(
            client_id="acks-test", host=broker.host, port=broker.server_port,
            username=SERVER_USERNAME, password=broker.server_password,
            on_message=lambda _t, _p: None,
        )  # fmt: skip
        task = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            mids = [link.publish(Outgoing(TOPIC, b"x" * 20, 0, False)) for _ in range(3000)]
            await asyncio.sleep(0.5)  # every QoS 0 "ack" has come by now
            assert link._pending == {}  # nobody waits for a live frame: nothing is kept
            assert len(link._early_acks) <= EARLY_ACKS_KEPT
            await link.publish_wait(Outgoing(TOPIC, b"acked", 1, False), timeout=5)
            # The broker goes away; the next message id is one a QoS 0 frame used before.
            broker.stop()
            await asyncio.wait_for(link._lost.wait(), 10)
            link._client._last_mid = mids[100] - 1  # paho hands out _last_mid + 1 next
            with pytest.raises(PublishError):
                await link.publish_wait(Outgoing(TOPIC, b"never acked", 1, False), timeout=1)
        finally:
            broker.start()
            await link.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())
