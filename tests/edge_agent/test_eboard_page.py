"""The e-board page served by a real agent (eboard-sim profile) next to a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_agent.agent import Agent
from edge_agent.hardware import SimHardware
from edge_agent.localdb import LocalDb
from edge_agent.settings import load_settings
from edge_agent.telemetry import SimulatedSensors
from firmware_profiles import load_profile
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, run, running
from loa_testkit.playfix import FAST, at, document, heard, item, join_zone, make_clip, serving
from schedules import DisplayInfo, DisplayText, ScheduleDocument

EVIL = "<script>alert('x')</script>"


def with_display(doc: ScheduleDocument, *texts: DisplayText) -> ScheduleDocument:
    """The document as the planner sends it to a device with a screen."""
    return doc.model_copy(update={"display": DisplayInfo(unit_name="Xã An Bình", texts=texts)})


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with http.get(url) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def next_event(stream: aiohttp.StreamReader) -> dict[str, Any]:
    """The next `board` event's data (comments and retry lines skipped)."""
    event = ""
    while True:
        line = (await asyncio.wait_for(stream.readline(), 10)).decode()
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: ") and event == "board":
            data: dict[str, Any] = json.loads(line[6:])
            return data


def test_the_page_serves_the_schedule_escaped_and_pushes_changes(
    broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent.agent")
    uid = new_device_id("eb")
    clip = make_clip(tmp_path / "clips", seconds=1)
    agent = make_agent(
        broker, uid, tmp_path / "agent", profile=load_profile("eboard-sim"), display_port=0, **FAST
    )

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent), aiohttp.ClientSession() as http:
            assert agent.board_url is not None and agent.board_url.startswith("http://127.0.0.1:")
            base = agent.board_url
            start = at(600)
            doc = with_display(
                document(uid, 1, [item("5@a", start, [clip], programme_id=5)]),
                DisplayText(programme_id=5, title=EVIL, text="Họp dân lúc 19 giờ & <b>đông đủ</b>"),
            )
            async with http.get(base + "events") as events:
                assert events.status == 200
                assert events.headers["Content-Type"].startswith("text/event-stream")
                first = await next_event(events.content)
                assert first["schedule_version"] is None and first["next"] is None
                await server.publish_schedule(doc)
                pushed = await next_event(events.content)
                while pushed["schedule_version"] is None:  # e.g. the link came up meanwhile
                    pushed = await next_event(events.content)
                assert pushed["schedule_version"] == 1
                assert pushed["next"]["title"] == EVIL

            status, kind, page = await get(http, base)
            assert status == 200 and kind.startswith("text/html")
            assert '<html lang="vi">' in page and "Xã An Bình" in page and "Tiếp theo" in page
            assert "/static/board.js" in page and "landscape" in page
            assert EVIL not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
            assert "<b>đông đủ</b>" not in page and "&amp; &lt;b&gt;đông đủ&lt;/b&gt;" in page
            local = start.astimezone(timezone(timedelta(hours=7))).strftime("%H:%M")
            assert local in page

            status, kind, fragment = await get(http, base + "board")
            assert status == 200 and kind.startswith("text/html") and "<html" not in fragment
            assert "&lt;script&gt;" in fragment and EVIL not in fragment

            status, kind, body = await get(http, base + "state.json")
            state = json.loads(body)
            assert status == 200 and kind.startswith("application/json")
            assert set(state) == {
                "unit_name",
                "now",
                "next",
                "today",
                "emergency",
                "link_up",
                "schedule_version",
                "server_time",
            }
            assert state["unit_name"] == "Xã An Bình" and state["link_up"] is True
            assert state["next"]["start"] == local and state["emergency"] is None
            assert state["now"] is None and state["schedule_version"] == 1

            assert (await get(http, base + "healthz"))[0] == 200
            status, kind, script = await get(http, base + "static/board.js")
            assert status == 200 and "EventSource" in script
            assert (await get(http, base + "static/board.css"))[0] == 200
            for bad in (
                "nope",
                "static/",
                "static/../state.py",
                "board/x",
                "static/%2e%2e/board.py",
            ):
                status, _, text = await get(http, base + bad)
                assert status in (403, 404), (bad, status)
                assert "Traceback" not in text
            for method in ("POST", "PUT", "DELETE"):
                async with http.request(method, base + "state.json", data=b"{") as r:
                    assert r.status == 405 and "Traceback" not in await r.text()

    run(scenario(), timeout=40)
    assert f"{uid}: e-board page at http://127.0.0.1:" in caplog.text
    assert agent.rejected == {}


def test_a_taken_port_is_one_clear_error_and_the_horns_still_play(
    broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uid = new_device_id("eb")
    password = broker.add_device(uid, zone_ids=(7,))
    clip = make_clip(tmp_path / "clips", seconds=1)
    data_dir = tmp_path / "agent"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = make_agent(
            broker,
            uid,
            data_dir,
            password=password,
            profile=load_profile("eboard-sim"),
            display_port=port,
            **FAST,
        )

        async def scenario() -> None:
            async with serving(broker, uid) as server, running(agent):
                assert agent.board_url is None
                await join_zone(server, agent, 7)
                doc = with_display(document(uid, 1, [item("p@a", at(3), [clip])]))
                await server.publish_schedule(doc)
                await server.publish_zone_clip(7, clip)
                await eventually(lambda: len(heard(data_dir, "p@a")) == 1, timeout=15, what="audio")

        run(scenario(), timeout=40)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert f"127.0.0.1:{port}" in errors[0].getMessage()
    assert "LOA_AGENT_DISPLAY_PORT" in errors[0].getMessage()


def test_without_a_broker_the_page_shows_the_held_schedule(tmp_path: Path) -> None:
    uid = new_device_id("eb")
    clip = make_clip(tmp_path / "clips", seconds=1)
    data_dir = tmp_path / "agent"
    start = at(900)
    held = with_display(
        document(uid, 4, [item("3@a", start, [clip], programme_id=3)]),
        DisplayText(programme_id=3, title="Lịch tiêm chủng tháng 12", text="Trạm y tế xã"),
    )
    db = LocalDb(data_dir=data_dir)
    db.open()
    db.save_schedule(version=4, document=held.model_dump_json(), applied_at=0)
    db.close()
    with socket.socket() as probe:  # a port nothing listens on: no broker reachable
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings = load_settings(
        sim=True,
        device_id=uid,
        mqtt_host="127.0.0.1",
        mqtt_port=dead_port,
        mqtt_password="x",
        data_dir=data_dir,
        display_port=0,
        min_backoff_s=0.1,
        max_backoff_s=0.5,
        connect_timeout_s=1,
    )
    agent = Agent(
        settings=settings,
        profile=load_profile("eboard-sim"),
        hardware=SimHardware(),
        sensors=SimulatedSensors(device_id=uid),
    )

    async def scenario() -> None:
        async with running(agent, wait_connected=False), aiohttp.ClientSession() as http:
            await eventually(lambda: agent.board_url is not None, what="the page")
            assert agent.board_url is not None
            status, _, body = await get(http, agent.board_url + "state.json")
            state = json.loads(body)
            assert status == 200 and state["link_up"] is False and state["schedule_version"] == 4
            assert state["next"]["title"] == "Lịch tiêm chủng tháng 12"
            status, _, page = await get(http, agent.board_url)
            assert status == 200 and "Lịch tiêm chủng tháng 12" in page and "Trạm y tế xã" in page
            assert "Mất kết nối" in page
            assert not agent.link.is_connected
            # A page still listening does not hold the agent up when it stops.
            events = await http.get(agent.board_url + "events")
            assert (await next_event(events.content))["schedule_version"] == 4
            loop = asyncio.get_running_loop()
            stopping = loop.time()
        assert loop.time() - stopping < 5
        # Closed by the agent: the end of the stream, or aiohttp's "Connection closed".
        with contextlib.suppress(RuntimeError, aiohttp.ClientPayloadError):
            assert await asyncio.wait_for(events.content.read(), 5) == b""
        events.close()

    run(scenario(), timeout=30)
