"""The proof-of-play outbox: batches, at-least-once delivery, removal only on acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from audio.clock import SystemClock
from edge_agent.localdb import LocalDb
from edge_agent.outbox import BATCH_EVENTS, Outbox, _batches
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, new_device_id, run
from loa_testkit.playfix import ServerDouble
from protocol import SPECS, EventBatch, PlayEvent, TopicKind, decode, device_topic, encode
from protocol.mqtt_client import MqttLink


def play_event(seq: int, reason: str = "") -> PlayEvent:
    return PlayEvent(
        seq=seq, item_id=f"7@{seq}", planned_start=1.9e9 + seq, outcome="played", reason=reason
    )


def test_batches_respect_the_count_and_the_topic_size_limit() -> None:
    small = [play_event(n) for n in range(1, 251)]
    assert [len(b) for b in _batches(small)] == [BATCH_EVENTS, BATCH_EVENTS, 50]
    wordy = [play_event(n, reason="x" * 300) for n in range(1, 200)]
    batches = _batches(wordy)
    assert sum(len(b) for b in batches) == 199
    limit = SPECS[TopicKind.EVENTS].max_payload
    assert all(len(encode(EventBatch(events=b))) <= limit for b in batches)
    assert [e.seq for b in batches for e in b] == list(range(1, 200))  # oldest first


@asynccontextmanager
async def outbox_for(
    broker: TestBroker, uid: str, password: str, data_dir: Path
) -> AsyncIterator[Outbox]:
    """An outbox on a device's own MQTT link and database."""

    def on_message(_topic: str, payload: bytes) -> None:
        outbox.on_ack(decode(TopicKind.EVENTS_ACK, payload))

    link = MqttLink(
        client_id=uid, host=broker.host, port=broker.port, username=uid, password=password,
        on_message=on_message, min_backoff=0.1, max_backoff=0.5,
    )  # fmt: skip
    link.subscribe(device_topic(uid, TopicKind.EVENTS_ACK))
    db = LocalDb(data_dir=data_dir)
    db.open()
    outbox = Outbox(
        db=db,
        link=link,
        topic=device_topic(uid, TopicKind.EVENTS),
        clock=SystemClock(),
        resend_after_s=0.5,
    )
    tasks = [asyncio.ensure_future(link.run()), asyncio.ensure_future(outbox.run())]
    await asyncio.wait_for(link.connected.wait(), 10)
    try:
        yield outbox
    finally:
        tasks[1].cancel()
        await link.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        db.close()


def test_events_are_resent_until_acknowledged_and_survive_a_restart(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid)

    async def record(outbox: Outbox, n: int) -> int:
        event = {"kind": "play", "item_id": f"7@{n}", "planned_start": 1.9e9, "outcome": "played"}
        return await outbox.record(item_id=f"7@{n}", planned_start=1.9e9, event=event)

    async def scenario() -> None:
        server = ServerDouble(broker, [uid], auto_ack=False)
        await server.start()
        try:
            async with outbox_for(broker, uid, password, tmp_path) as outbox:
                assert [await record(outbox, n) for n in range(3)] == [1, 2, 3]
                # Unacknowledged: published again and again (every 0.5 s here).
                await eventually(lambda: len(server.batches) >= 3, what="re-sends")
                assert {e.seq for e in server.events(uid)} == {1, 2, 3}
                server.ack(uid, [2])
                await eventually(lambda: outbox.acknowledged == 1, what="the ack")
                assert await outbox.pending() == 2
            # A restart: the two unacknowledged events go out again; numbering continues.
            seen = len(server.batches)
            async with outbox_for(broker, uid, password, tmp_path) as outbox:
                await eventually(lambda: len(server.batches) > seen, what="a re-send")
                assert {e.seq for _u, b in server.batches[seen:] for e in b.events} == {1, 3}
                assert await record(outbox, 9) == 4
                server.auto_ack = True
                await eventually(lambda: outbox.acknowledged == 3, timeout=10, what="acks")
                assert await outbox.pending() == 0
        finally:
            await server.stop()

    run(scenario(), timeout=40)


def test_an_event_out_of_the_protocol_ranges_is_dropped_not_blocking_the_others(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid)

    async def scenario() -> None:
        server = ServerDouble(broker, [uid])
        await server.start()
        try:
            async with outbox_for(broker, uid, password, tmp_path) as outbox:
                for n, planned in enumerate((-5.0, 1.9e9), start=1):  # 1969: before the window
                    event = {"kind": "play", "item_id": f"7@{n}", "planned_start": planned,
                             "outcome": "played"}  # fmt: skip
                    await outbox.record(item_id=f"7@{n}", planned_start=planned, event=event)
                await eventually(lambda: outbox.acknowledged == 2, what="both gone")
                assert [e.seq for e in server.events(uid)] == [2]
                assert await outbox.pending() == 0
        finally:
            await server.stop()

    run(scenario(), timeout=40)
