"""Publishing from the loop thread writes at once; a full socket keeps every packet in order."""

from __future__ import annotations

import asyncio
import os
import signal

from loa_testkit.brokerfix import TestBroker
from protocol import SERVER_USERNAME
from protocol.mqtt_client import MqttLink, Outgoing

TOPIC = "loa/v1/zone/9/live/direct"


def _link(broker: TestBroker, name: str, got: list[tuple[str, bytes]]) -> MqttLink:
    return MqttLink(
        client_id=name, host=broker.host, port=broker.server_port,
        username=SERVER_USERNAME, password=broker.server_password,
        on_message=lambda t, p: got.append((t, p)),
    )  # fmt: skip


def test_frames_leave_at_once_and_in_order_even_when_the_socket_fills(broker: TestBroker) -> None:
    async def body() -> None:
        got: list[tuple[str, bytes]] = []
        sub, pub = _link(broker, "direct-sub", got), _link(broker, "direct-pub", [])
        tasks = [asyncio.create_task(link.run()) for link in (sub, pub)]
        try:
            for link in (sub, pub):
                await asyncio.wait_for(link.connected.wait(), 10)
            sub.subscribe(TOPIC, 1)
            await asyncio.sleep(0.3)
            # A live frame is on the wire when publish returns: no writer, nothing queued.
            pub.publish(Outgoing(TOPIC, b"first", 0, False))
            assert not pub._client.want_write() and not pub._client._registered_write
            # Flat out, without yielding: the socket fills, the rest waits for the writer. The
            # broker is paused meanwhile, as a congested uplink would be: a kernel whose
            # receive buffers autotune to 32 MB takes 12 MB at once from a broker that reads.
            big = [bytes([i % 251]) * 60_000 for i in range(200)]
            assert broker.proc is not None
            os.kill(broker.proc.pid, signal.SIGSTOP)
            try:
                for payload in big:
                    pub.publish(Outgoing(TOPIC, payload, 0, False))
                assert pub._client.want_write()  # 12 MB cannot all fit in the socket at once
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)
            await pub.publish_wait(Outgoing(TOPIC, b"acked", 1, False), timeout=20)
            pub.publish(Outgoing(TOPIC, b"last", 0, False))
            want = [b"first", *big, b"acked", b"last"]
            for _ in range(200):
                if len(got) >= len(want):
                    break
                await asyncio.sleep(0.1)
            assert [p for _, p in got] == want
        finally:
            for link in (pub, sub):
                await link.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(body())
