"""Agents behind the link-impairment proxy: clips through stalls and cuts, schedules cut mid-way,
catch-up after an outage with proof of play exactly once (issue 13, section 3)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench._linkproxy import LinkProfile, LinkProxy  # noqa: E402
from edge_agent.agent import Agent  # noqa: E402
from edge_agent.clips import sha256_of  # noqa: E402
from edge_agent.clocksync import LIVE_BURST  # noqa: E402
from loa_testkit.brokerfix import TestBroker  # noqa: E402
from loa_testkit.harness import eventually, make_agent, new_device_id, run, running  # noqa: E402
from loa_testkit.playfix import (  # noqa: E402
    FAST,
    Clip,
    at,
    document,
    item,
    join_zone,
    make_clip,
    serving,
)

# A bad cell, scaled down so the test stays short: delay and jitter as measured on 4G,
# a tighter stall cycle, a cap that still lets a few hundred kB through in seconds.
PROFILE = LinkProfile(
    delay_s=0.05, jitter_s=0.02, rate_bps=1_000_000, stall_every_s=4.0, stall_s=0.5
)


@asynccontextmanager
async def behind_proxy(
    broker: TestBroker, uid: str, data_dir: Path, zones: tuple[int, ...], **settings: Any
) -> AsyncIterator[tuple[Agent, LinkProxy]]:
    """An agent whose only way to the broker is its own impaired proxy."""
    proxy = await LinkProxy(broker.port, PROFILE, seed=hash(uid) & 0xFFFF).start()
    password = broker.add_device(uid, zone_ids=zones)
    via = dataclasses.replace(broker, port=proxy.port)  # same broker, reached through the proxy
    agent = make_agent(via, uid, data_dir, password=password, **(FAST | settings))
    try:
        yield agent, proxy
    finally:
        await proxy.close()


class Watch:
    """Fails if a clip's final path ever holds anything but the verified bytes."""

    def __init__(self, agent: Agent, clip: Clip) -> None:
        self.path = agent.runtime.cache.path(clip.sha256)
        self.sha = clip.sha256
        self.bad: list[str] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            if self.path.exists():
                got = await asyncio.to_thread(sha256_of, self.path)
                if got != self.sha:
                    self.bad.append(got)
            await asyncio.sleep(0.01)

    async def stop(self) -> list[str]:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return self.bad


def record_applied(agent: Agent) -> list[int]:
    """The schedule versions the agent stores, in order (each is stored before it is used)."""
    applied: list[int] = []
    save = agent.runtime.db.save_schedule

    def recording(*, version: int, document: str, applied_at: float) -> None:
        applied.append(version)
        save(version=version, document=document, applied_at=applied_at)

    agent.runtime.db.save_schedule = recording  # type: ignore[method-assign]
    return applied


def test_clip_through_stalls_and_a_cut_mid_chunk(broker: TestBroker, tmp_path: Path) -> None:
    zone = 31
    uids = [new_device_id("fl") for _ in range(2)]
    clip = make_clip(tmp_path / "clip", seconds=3, codec="wav")  # ~288 kB: 5 chunks of 64 kB

    async def scenario() -> None:
        async with (
            # A holdoff longer than the schedule-to-broadcast gap: the zone copy is the source.
            behind_proxy(broker, uids[0], tmp_path / "a0", (zone,), clip_holdoff_s=2) as (a0, p0),
            behind_proxy(broker, uids[1], tmp_path / "a1", (zone,), clip_holdoff_s=2) as (a1, _),
            serving(broker, *uids) as server,
            running(a0),
            running(a1),
        ):
            for agent in (a0, a1):
                await join_zone(server, agent, zone)
                await server.publish_schedule(
                    document(agent.device_id, 1, [item("c@1", at(3600), [clip])])
                )
            both = lambda: a0.runtime.schedule_version == 1 == a1.runtime.schedule_version  # noqa: E731
            await eventually(both, timeout=15, what="the schedules")
            watches = [Watch(a, clip) for a in (a0, a1)]
            # Cut device 0's link once ~1.6 chunks have crossed it: inside chunk 1.
            base = p0.bytes_down
            p0.cut_when(lambda: p0.bytes_down > base + 100_000)
            await server.publish_zone_clip(zone, clip)
            await eventually(lambda: p0.cuts == 1, timeout=20, what="the cut")
            assert not a0.runtime.cache.ready(clip.sha256)
            assert not a0.runtime.cache.path(clip.sha256).exists()
            for agent in (a0, a1):
                await eventually(lambda a=agent: a.runtime.cache.ready(clip.sha256),  # type: ignore[misc]
                                 timeout=40, what="the clip after the cut")  # fmt: skip
                assert sha256_of(agent.runtime.cache.path(clip.sha256)) == clip.sha256
            assert p0.connections >= 2  # it came back through the proxy
            # Only the missing chunks were asked for, not the whole clip again; the device
            # that kept its link needed nothing but the zone copy.
            asked = [r for uid, r in server.clip_requests if uid == uids[0]]
            assert asked and all(r.chunks and 0 not in r.chunks for r in asked), asked
            assert [r for uid, r in server.clip_requests if uid == uids[1]] == []
            for w in watches:
                assert await w.stop() == []

    run(scenario(), timeout=80)


def test_schedule_document_cut_mid_way(broker: TestBroker, tmp_path: Path) -> None:
    zone = 32
    uid = new_device_id("fl")
    clip = make_clip(tmp_path / "clip", seconds=1)

    async def scenario() -> None:
        async with (
            behind_proxy(broker, uid, tmp_path / "a", (zone,)) as (agent, proxy),
            serving(broker, uid) as server,
            running(agent),
        ):
            applied = record_applied(agent)
            await join_zone(server, agent, zone)
            await server.publish_schedule(document(uid, 1, [item("s@0", at(3600), [clip])]))
            await eventually(lambda: agent.runtime.schedule_version == 1, timeout=15)
            # A big document (hundreds of items, ~100 kB): the cut lands inside it.
            items = [item(f"s@{n}", at(3600 + 10 * n), [clip]) for n in range(400)]
            big = document(uid, 2, items)
            size = len(big.model_dump_json())
            assert size > 60_000
            base = proxy.bytes_down
            proxy.cut_when(lambda: proxy.bytes_down > base + size // 2)
            await server.publish_schedule(big)
            await eventually(lambda: proxy.cuts == 1, timeout=20, what="the cut")
            assert agent.runtime.schedule_version == 1  # half a document is no document
            # The retained document comes again on reconnect and is applied whole.
            await eventually(lambda: agent.runtime.schedule_version == 2, timeout=30)
            assert agent.runtime.document is not None
            assert len(agent.runtime.document.items) == 400
            assert applied == [1, 2]

    run(scenario(), timeout=60)


def test_catch_up_after_outage_latest_only_and_proof_once(
    broker: TestBroker, tmp_path: Path
) -> None:
    zone = 33
    uid = new_device_id("fl")
    clips = [make_clip(tmp_path / "clip", seconds=1, freq=300 + 100 * n) for n in range(3)]

    async def scenario() -> None:
        async with (
            behind_proxy(broker, uid, tmp_path / "a", (zone,), event_resend_s=2) as (agent, proxy),
            serving(broker, uid) as server,
            running(agent),
        ):
            applied = record_applied(agent)
            await join_zone(server, agent, zone)
            offline = [item(f"o@{n}", at(4 + 2 * n), [clips[0]]) for n in range(2)]
            await server.publish_schedule(document(uid, 1, offline))
            await server.publish_zone_clip(zone, clips[0])
            await eventually(lambda: agent.runtime.cache.ready(clips[0].sha256), timeout=15)
            proxy.blocked = True  # a long outage: the link is down and stays down
            proxy.cut()
            await eventually(lambda: not agent.link.is_connected, what="the disconnect")
            for version in range(2, 6):  # what the server publishes meanwhile
                extra = clips[1:] if version == 5 else ()
                await server.publish_schedule(document(uid, version, offline, extra_clips=extra))
            for clip in clips[1:]:
                await server.publish_zone_clip(zone, clip)  # missed: nobody there to read it
            await asyncio.sleep(max(0.0, offline[-1].end.timestamp() + 1.0 - time.time()))
            assert await agent.runtime.outbox.pending() == 2  # played offline, not yet sent
            assert server.events(uid) == []
            proxy.blocked = False
            back = time.monotonic()
            await eventually(lambda: agent.runtime.schedule_version == 5, timeout=30)
            caught_up = time.monotonic() - back
            assert caught_up < 30
            for clip in clips:
                await eventually(lambda c=clip: agent.runtime.cache.ready(c.sha256),  # type: ignore[misc]
                                 timeout=30, what="the missed clips")  # fmt: skip
                assert sha256_of(agent.runtime.cache.path(clip.sha256)) == clip.sha256
            await eventually(lambda: agent.runtime.outbox.acknowledged == 2, timeout=20)
            assert applied == [1, 5]  # never an older one, never the ones in between
            stored = server.unique_events(uid)
            assert sorted(e.item_id for e in stored.values()) == ["o@0", "o@1"]
            assert len(server.events(uid)) == 2  # sent once each, not only stored once
            assert all(e.outcome == "played" for e in stored.values())

    run(scenario(), timeout=70)


def _bench_line(*args: str, timeout: float) -> dict[str, Any]:
    """Run bench/field_link.py with `args` and return the one JSON line it prints."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "field_link.py"), *args],
        capture_output=True, text=True, check=True, timeout=timeout,
    )  # fmt: skip
    [line] = out.stdout.splitlines()
    result: dict[str, Any] = json.loads(line)
    return result


def test_default_clock_probing_keeps_the_skew_under_a_millisecond() -> None:
    """bench/field_link.py's clock scenario: the agent's real probe loop, default settings,
    bench/live.py's jitter profile, on virtual time."""
    result = _bench_line("--quick", "--only", "clock", timeout=120)
    for seed in ("seed1", "seed2", "seed7"):
        assert result[seed]["skew_p95_ms_from_60s"] <= 1.0, result
        assert result[seed]["probes_per_hour"] <= 800  # about one every 5 s on such a link


def test_probing_while_live_keeps_the_skew_under_a_millisecond_over_bad_4g() -> None:
    """bench/field_link.py's clock-live scenario: uniform 100 +- 40 ms, live's timeline."""
    result = _bench_line("--only", "clock-live", timeout=300)
    for seed in ("seed1", "seed2", "seed7"):
        assert result[seed]["skew_p95_ms"] <= 1.0, result
        # One live burst, then ~2 a second over the 665 s live: not more.
        assert result[seed]["probes_per_device"] <= LIVE_BURST + 2 * 665, result
