"""The real server and real agents: a programme is approved, planned, fetched and played on
time through a broker outage, and its proof of play reaches GET /api/v1/plays exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from edge_agent.agent import Agent
from loa_testkit.harness import eventually, running
from loa_testkit.playfix import FAST, Clip, heard, make_clip
from loa_testkit.stack import (
    ServerBroker,
    Stack,
    admin_headers,
    prepared,
    stack_agent,
    stack_settings,
)
from server.app import create_app
from server.clips.models import Clip as ClipRow
from server.clips.storage import ClipStorage
from server.settings import ServerSettings
from tests.server.test_programmes_fixtures import FakeClock, World, one_off
from tests.stack import requires_mosquitto


@dataclass
class Live:
    """A server on the real clock whose broker the test may stop and start."""

    settings: ServerSettings
    broker: ServerBroker
    world: World | None = None

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    def stop_broker(self) -> None:
        assert self.broker.proc is not None
        self.broker.stop()

    def start_broker(self) -> None:
        self.broker.start()

    def store_clip(self, clip: Clip) -> int:
        """A real, decodable clip in the server's store (as the upload pipeline leaves it)."""
        path = ClipStorage(self.settings.data_dir / "clips").dist_path(clip.sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(clip.data)
        with self.w.stack.session() as db:  # type: ignore[no-untyped-call]
            row = ClipRow(
                sha256=clip.sha256, original_sha256=clip.sha256, title="Bản tin thử",
                original_duration_s=clip.duration_s, original_sample_rate=48000,
                original_channels=1, original_size_bytes=len(clip.data),
                duration_s=clip.duration_s, size_bytes=len(clip.data), peaks=[],
            )  # fmt: skip
            db.add(row)
            db.flush()
            return int(row.id)


@contextmanager
def live_server(tmp_path: Path) -> Iterator[Live]:
    """Migrate a SQLite database, start the broker and the app on the real clock, sign in."""
    settings = stack_settings(tmp_path / "server", f"sqlite:///{tmp_path / 'loa.db'}")
    with prepared(settings) as broker:
        assert broker is not None
        live = Live(settings, broker)
        with TestClient(create_app(settings, with_mqtt=True)) as client:
            stack = Stack(client, settings, admin_headers(client))
            # The World's helpers, but the app keeps its real clock: agents play in real time.
            live.world = World(stack=stack, clock=FakeClock())
            yield live


def in_zone(agent: Agent, zone: int) -> bool:
    return zone in agent.runtime.zone_ids


def acknowledged(agent: Agent) -> bool:
    return agent.runtime.outbox.acknowledged >= 1


def plays(live: Live, device_id: int) -> list[dict[str, Any]]:
    return list(live.w.get("/plays", device_id=device_id)["items"])


@requires_mosquitto
def test_a_broker_outage_around_the_start_loses_neither_the_playout_nor_its_proof(
    tmp_path: Path,
) -> None:
    clip = make_clip(tmp_path / "clips", seconds=2)
    with live_server(tmp_path) as live:
        w = live.w
        org = w.org()
        devices = [w.device(org) for _ in range(2)]
        agents = [
            stack_agent(live.settings, uid, tmp_path / uid, password=pw, event_resend_s=2, **FAST)
            for _id, uid, pw in devices
        ]
        clip_id = live.store_clip(clip)

        def item_id(agent: Agent) -> str:
            assert agent.runtime.document is not None
            return agent.runtime.document.items[0].item_id

        async def scenario() -> list[float]:
            async with running(agents[0]), running(agents[1]):
                zone = await asyncio.to_thread(w.zone, org, None, [d[0] for d in devices])
                for agent in agents:
                    await eventually(partial(in_zone, agent, zone), what="the zone")
                await asyncio.sleep(0.3)
                start = datetime.fromtimestamp(round(time.time()) + 12, UTC)
                await asyncio.to_thread(w.approved, **one_off([clip_id], [zone], at=start))
                for agent in agents:
                    await eventually(partial(agent.runtime.cache.ready, clip.sha256), timeout=10)
                    assert agent.runtime.document is not None
                    assert [i.start for i in agent.runtime.document.items] == [start]
                assert time.time() < start.timestamp() - 2, "too slow to test an outage"

                await asyncio.to_thread(live.stop_broker)
                await asyncio.sleep(start.timestamp() + clip.duration_s + 1 - time.time())
                errors = []
                for agent in agents:
                    [line] = heard(agent.settings.state_dir, item_id(agent))
                    errors.append(line["start_wall"] - start.timestamp())
                    assert await agent.runtime.outbox.pending() == 1
                await asyncio.to_thread(live.start_broker)
                for agent in agents:
                    await eventually(partial(acknowledged, agent), timeout=30, what="the ack")
                    assert await agent.runtime.outbox.pending() == 0
                return errors

        errors = asyncio.run(asyncio.wait_for(scenario(), 90))
        assert all(abs(e) < 0.1 for e in errors), errors
        for device_id, _uid, _pw in devices:
            [record] = plays(live, device_id)  # exactly once, though sent at least once
            assert record["outcome"] == "played" and record["seq"] == 1
            planned = datetime.fromisoformat(record["planned_start"])
            actual = datetime.fromisoformat(record["actual_start"])
            assert abs(actual - planned) < timedelta(milliseconds=100)
            assert record["clock_error_ms"] is not None and record["clock_error_ms"] < 50
