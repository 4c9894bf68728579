"""An agent against a real Mosquitto and a stand-in server: schedules, clips, playout, proof."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, run, running
from loa_testkit.playfix import (
    FAST,
    at,
    document,
    heard,
    item,
    join_zone,
    make_clip,
    serving,
    wav_hz,
)
from protocol import ScheduleMessage, TopicKind, encode, zone_clip_topic
from protocol.clipchunk import Chunk, encode_chunk, split
from protocol.mqtt_client import Outgoing


def test_a_schedule_with_a_zone_clip_plays_on_time_and_is_proven(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    clip = make_clip(tmp_path / "clips", seconds=1.5)
    data_dir = tmp_path / "agent"
    agent = make_agent(broker, uid, data_dir, password=password, **FAST)

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            await join_zone(server, agent, 7)
            start = at(4.0)
            doc = document(uid, 1, [item("p1@a", start, [clip], volume=55)])
            await server.publish_schedule(doc)
            await eventually(lambda: agent.runtime.schedule_version == 1, what="the schedule")
            await server.publish_zone_clip(7, clip)
            await eventually(lambda: agent.runtime.cache.ready(clip.sha256), what="the clip")
            await eventually(lambda: len(server.events(uid)) == 1, timeout=15, what="proof")
            event = server.events(uid)[0]
            assert event.outcome == "played" and event.item_id == "p1@a"
            assert event.planned_start == start.timestamp()
            assert event.actual_start is not None and event.ended_at is not None
            assert abs(event.actual_start - start.timestamp()) < 0.1
            assert abs(event.ended_at - event.actual_start - 1.5) < 0.1
            assert event.clock_offset_ms is not None and abs(event.clock_offset_ms) < 50
            assert event.clock_error_ms is not None and 0 <= event.clock_error_ms < 50
            lines = heard(data_dir, "p1@a")
            assert len(lines) == 1 and abs(lines[0]["start_wall"] - start.timestamp()) < 0.1
            await eventually(lambda: agent.runtime.outbox.acknowledged == 1, what="the ack")
            assert await agent.runtime.outbox.pending() == 0
            # Fetched from the zone publication alone: nothing was requested.
            assert server.clip_requests == []
            assert agent.hardware.actions("volume")[-1] == 55  # type: ignore[attr-defined]

    run(scenario(), timeout=40)
    assert agent.rejected == {}


def test_bad_schedules_are_refused_and_the_last_good_one_keeps_playing(
    broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    clip, stranger = make_clip(tmp_path, seconds=1), make_clip(tmp_path, seconds=1, freq=880)
    data_dir = tmp_path / "agent"
    agent = make_agent(broker, uid, data_dir, password=password, **FAST)

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            await join_zone(server, agent, 7)
            start = at(6.0)
            good = document(uid, 2, [item("p1@good", start, [clip])])
            await server.publish_schedule(good)
            await server.publish_zone_clip(7, clip)
            await eventually(lambda: agent.runtime.cache.ready(clip.sha256), what="the clip")

            bad_field = json.loads(encode(ScheduleMessage(document=document(uid, 3, []))))
            bad_field["document"]["items"] = [{"item_id": "x", "priority": "urgent"}]
            unknown_clip = json.loads(
                encode(ScheduleMessage(document=good.model_copy(update={"version": 4})))
            )
            unknown_clip["document"]["items"][0]["clips"] = [stranger.ref.model_dump()]
            for payload in (bad_field, unknown_clip):
                await server.publish_raw(uid, TopicKind.SCHEDULE, json.dumps(payload).encode())
            await server.publish_schedule(document(uid, 1, [item("p1@old", at(5), [clip])]))
            elsewhere = ScheduleMessage(document=document("someone-else", 9, []))
            await server.publish_raw(uid, TopicKind.SCHEDULE, encode(elsewhere))
            await eventually(
                lambda: sum(agent.rejected.values()) == 4, what=f"four refusals {agent.rejected}"
            )
            assert agent.rejected == {"invalid": 2, "stale_version": 1, "wrong_device": 1}
            assert agent.runtime.schedule_version == 2

            await eventually(lambda: len(server.events(uid)) == 1, timeout=15, what="proof")
            assert server.events(uid)[0].item_id == "p1@good"
            assert server.events(uid)[0].outcome == "played"
            assert len(heard(data_dir, "p1@good")) == 1 and heard(data_dir, "p1@old") == []

    run(scenario(), timeout=40)
    assert "items.0.clips" in caplog.text or "clips is missing" in caplog.text
    assert "schedule version 1 is older than the held 2" in caplog.text
    assert "keeping the schedule held" in caplog.text


def test_a_corrupt_chunk_and_a_wrong_file_are_fetched_again_and_never_played(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    good_a = make_clip(tmp_path, seconds=2, freq=440, codec="wav")  # 192 kB: three chunks
    good_b = make_clip(tmp_path, seconds=1, freq=440)
    impostor = make_clip(tmp_path, seconds=1, freq=880)
    data_dir = tmp_path / "agent"
    # A hold-off long enough for the zone publications below to begin within it.
    agent = make_agent(broker, uid, data_dir, password=password, **(FAST | {"clip_holdoff_s": 2}))

    def corrupt_chunk_1(chunk: Chunk) -> bytes:
        payload = bytearray(encode_chunk(chunk))
        if chunk.index == 1:
            payload[-1] ^= 0xFF
        return bytes(payload)

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            await join_zone(server, agent, 7)
            doc = document(uid, 1, [item("p@a", at(7), [good_a]), item("p@b", at(10), [good_b])])
            await server.publish_schedule(doc)
            assert len(list(split(good_a.data))) >= 3
            await server.publish_zone_clip(7, good_a, only=corrupt_chunk_1)
            # The impostor's bytes under good_b's name, every chunk's CRC intact.
            server.clips[good_b.sha256] = good_b.data
            topic = zone_clip_topic(7, good_b.sha256)
            for chunk in split(impostor.data, good_b.sha256):
                await server.link.publish_wait(Outgoing(topic, encode_chunk(chunk), qos=1))
            await eventually(
                lambda: (
                    agent.runtime.cache.ready(good_a.sha256)
                    and agent.runtime.cache.ready(good_b.sha256)
                ),
                timeout=15,
                what="both clips",
            )
            stats = agent.runtime.fetcher.stats
            assert stats.chunks_corrupt == 1 and stats.sha_mismatches == 1
            asked = sorted((r.sha256, r.chunks or []) for _u, r in server.clip_requests)
            assert asked == sorted([(good_a.sha256, [1]), (good_b.sha256, [])])
            await eventually(lambda: len(server.events(uid)) == 2, timeout=25, what="proof")
            assert {e.outcome for e in server.events(uid)} == {"played"}

    run(scenario(), timeout=50)
    heard_hz = wav_hz(data_dir)
    assert len(heard_hz) >= 10 and all(abs(hz - 440) < 15 for hz in heard_hz), heard_hz
    for clip in (good_a, good_b):
        assert (data_dir / "clips" / f"{clip.sha256}.opus").read_bytes() == clip.data


def test_an_offline_device_catches_up_with_the_latest_schedule_and_its_clips(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    first, second, third = (make_clip(tmp_path, seconds=1, freq=f) for f in (440, 550, 660))
    data_dir = tmp_path / "agent"

    async def scenario() -> None:
        async with serving(broker, uid) as server:
            agent = make_agent(broker, uid, data_dir, password=password, **FAST)
            async with running(agent):
                await join_zone(server, agent, 7)
                await server.publish_schedule(document(uid, 1, [item("p@1", at(3600), [first])]))
                await server.publish_zone_clip(7, first)
                await eventually(lambda: agent.runtime.cache.ready(first.sha256), what="clip 1")
            # Offline: three versions and two clips go by.
            await server.publish_schedule(document(uid, 2, [item("p@2", at(3600), [second])]))
            await server.publish_zone_clip(7, second)
            await server.publish_schedule(
                document(uid, 3, [item("p@3", at(3600), [second]), item("p@4", at(7200), [third])])
            )
            await server.publish_schedule(
                document(
                    uid, 4, [item("p@3", at(3600), [second, first]), item("p@4", at(7200), [third])]
                )
            )
            await server.publish_zone_clip(7, third)
            before = len(server.clip_requests)
            again = make_agent(broker, uid, data_dir, password=password, **FAST)
            async with running(again):
                await eventually(lambda: again.runtime.schedule_version == 4, what="version 4")
                cache = again.runtime.cache
                needed = {first.sha256, second.sha256, third.sha256}
                await eventually(lambda: needed <= cache.shas(), timeout=15, what="the clips")
                for clip in (first, second, third):
                    assert (data_dir / "clips" / f"{clip.sha256}.opus").read_bytes() == clip.data
                asked = {r.sha256: r.chunks for _u, r in server.clip_requests[before:]}
                assert asked == {second.sha256: None, third.sha256: None}
                assert again.rejected == {}  # never saw, so never refused, versions 2 and 3
                assert again.held.schedule_version == 4

    run(scenario(), timeout=50)


def test_zone_changes_move_the_clip_subscriptions(broker: TestBroker, tmp_path: Path) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7, 8))
    old_zone_clip, new_zone_clip = (make_clip(tmp_path, seconds=1, freq=f) for f in (440, 660))
    agent = make_agent(broker, uid, tmp_path / "agent", password=password, **FAST)

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            await join_zone(server, agent, 7)
            await join_zone(server, agent, 8, version=2)
            assert agent.held.zone_ids == (8,)
            await server.publish_zone_clip(7, old_zone_clip)
            await server.publish_zone_clip(8, new_zone_clip)
            cache = agent.runtime.cache
            await eventually(lambda: cache.ready(new_zone_clip.sha256), what="zone 8's clip")
            await asyncio.sleep(0.3)
            assert not cache.ready(old_zone_clip.sha256)  # a zone it left

    run(scenario(), timeout=30)


def test_an_unusable_local_database_stops_the_agent_with_a_clear_message(
    broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    (data_dir / "agent.db").write_bytes(b"not a database at all " * 100)
    agent = make_agent(broker, new_device_id(), data_dir)
    assert run(agent.run()) == 1
    assert "cannot open the local database" in caplog.text
    assert "move the damaged file away" in caplog.text
