"""The broker goes away before a planned start: the device plays on time and loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, run, running
from loa_testkit.playfix import FAST, at, document, heard, item, join_zone, make_clip, serving


def test_playout_survives_a_broker_outage_and_proof_arrives_once_after(
    fresh_broker: TestBroker, tmp_path: Path
) -> None:
    broker = fresh_broker
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    clip = make_clip(tmp_path, seconds=1)
    data_dir = tmp_path / "agent"
    agent = make_agent(broker, uid, data_dir, password=password, event_resend_s=2, **FAST)

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            await join_zone(server, agent, 7)
            starts = [at(5), at(7)]
            items = [item(f"p@{n}", s, [clip]) for n, s in enumerate(starts)]
            await server.publish_schedule(document(uid, 1, items))
            await server.publish_zone_clip(7, clip)
            await eventually(lambda: agent.runtime.cache.ready(clip.sha256), what="the clip")
            assert time.time() < starts[0].timestamp() - 1.5, "too slow to test an outage"

            await asyncio.to_thread(broker.stop)
            await eventually(lambda: not agent.link.is_connected, what="the disconnect")
            await asyncio.sleep(starts[1].timestamp() + 1.5 - time.time())
            for it in items:  # on time, with no broker
                [line] = heard(data_dir, it.item_id)
                assert abs(line["start_wall"] - it.start.timestamp()) < 0.1
            assert await agent.runtime.outbox.pending() == 2
            assert server.batches == []

            await asyncio.to_thread(broker.start)
            await eventually(lambda: agent.runtime.outbox.acknowledged == 2, timeout=20)
            assert await agent.runtime.outbox.pending() == 0
            stored = server.unique_events(uid)  # what an idempotent server keeps
            assert sorted(stored) == [1, 2]
            assert sorted(e.item_id for e in stored.values()) == ["p@0", "p@1"]
            for event in stored.values():
                assert event.outcome == "played"
                assert abs(event.actual_start - event.planned_start) < 0.1  # type: ignore[operator]

    run(scenario(), timeout=60)
