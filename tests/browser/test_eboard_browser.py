"""The e-board page in Chromium, served by a real agent (eboard-sim) on a real Mosquitto.

The agent runs on its own event loop in a thread (Playwright's sync API owns this one); the
emergency banner is timed from outside: the file sink's line for the item's first sample
against the instant a MutationObserver in the page saw the banner appear.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from firmware_profiles import load_profile
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, running
from loa_testkit.playfix import FAST, Clip, at, document, heard, item, join_zone, make_clip, serving
from schedules import DisplayInfo, DisplayText, Priority, ScheduleDocument
from tests.browser.conftest import shot

TEXTS = (
    DisplayText(
        programme_id=5, title="Bản tin chiều", text="Lịch cắt điện thôn Đông ngày mai, 7 giờ."
    ),
    DisplayText(
        programme_id=9, title="Cảnh báo lũ khẩn cấp", text="Nước sông dâng cao, sơ tán ngay."
    ),
)
BANNER_WATCH = """() => {
  window.bannerAt = null;
  new MutationObserver(() => {
    const banner = document.getElementById("emergency");
    if (window.bannerAt === null && banner && banner.offsetWidth > 0) {
      window.bannerAt = Date.now();
    }
  }).observe(document.body, { childList: true, subtree: true });
}"""


def board_doc(uid: str, version: int, items: list[Any], clips: list[Clip]) -> ScheduleDocument:
    doc = document(uid, version, items, extra_clips=clips)
    return doc.model_copy(update={"display": DisplayInfo(unit_name="Xã An Bình", texts=TEXTS)})


@dataclass
class Stage:
    """The agent's thread and what the browser side asks of it."""

    agent: Agent
    data_dir: Path
    go_emergency: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    emergency_item: str = "9@emergency"
    failure: list[BaseException] = field(default_factory=list)


@pytest.fixture
def stage(broker: TestBroker, tmp_path: Path) -> Iterator[Stage]:
    uid = new_device_id("ebb")
    password = broker.add_device(uid, zone_ids=(7,))
    bulletin = make_clip(tmp_path / "clips", seconds=1)
    siren = make_clip(tmp_path / "clips", seconds=4, freq=880)
    data_dir = tmp_path / "agent"
    agent = make_agent(
        broker,
        uid,
        data_dir,
        password=password,
        profile=load_profile("eboard-sim"),
        display_port=0,
        **FAST,
    )
    st = Stage(agent=agent, data_dir=data_dir)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with serving(broker, uid) as server, running(agent):
            await join_zone(server, agent, 7)
            later = item("5@evening", at(600), [bulletin], programme_id=5)
            await server.publish_schedule(board_doc(uid, 1, [later], []))
            await eventually(lambda: agent.runtime.schedule_version == 1, what="the schedule")
            st.ready.set()
            await loop.run_in_executor(None, st.go_emergency.wait, 60)
            flood = item(
                st.emergency_item, at(8), [siren], programme_id=9, priority=Priority.EMERGENCY
            )
            await server.publish_schedule(board_doc(uid, 2, [flood, later], []))
            await server.publish_zone_clip(7, siren)
            await eventually(lambda: agent.runtime.cache.ready(siren.sha256), what="the siren")
            await loop.run_in_executor(None, st.done.wait, 60)

    def thread_main() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as exc:  # reported by the test
            st.failure.append(exc)
            st.ready.set()

    thread = threading.Thread(target=thread_main, name="eboard-agent", daemon=True)
    thread.start()
    try:
        yield st
    finally:
        st.go_emergency.set()
        st.done.set()
        thread.join(30)
    assert not thread.is_alive(), "the agent did not stop"
    assert not st.failure, st.failure


def test_the_board_shows_the_next_bulletin_and_the_banner_with_the_horns(
    chromium: Any, stage: Stage
) -> None:
    assert stage.ready.wait(30) and not stage.failure, stage.failure
    url = stage.agent.board_url
    assert url is not None
    context = chromium.new_context(
        viewport={"width": 1920, "height": 1080}, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh"
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        page.goto(url)
        page.get_by_text("Lịch cắt điện thôn Đông ngày mai, 7 giờ.").wait_for()
        assert "Xã An Bình" in page.inner_text("h1")
        assert page.locator("#next .title").inner_text() == "Bản tin chiều"
        clock = page.inner_text("#clock")
        assert len(clock) == 8 and clock.count(":") == 2, clock
        shot(page, "eboard-next")

        page.evaluate(BANNER_WATCH)
        stage.go_emergency.set()
        page.wait_for_function("window.bannerAt !== null", timeout=30_000)
        banner_at = page.evaluate("window.bannerAt") / 1000
        banner = page.locator("#emergency")
        assert "Cảnh báo lũ khẩn cấp" in banner.inner_text()
        box = banner.bounding_box()
        assert box is not None and box["width"] >= 1900 and box["height"] >= 1060  # full screen
        color = banner.evaluate("e => getComputedStyle(e).backgroundColor")
        assert color == "rgb(196, 0, 0)"
        shot(page, "eboard-emergency")

        lines = heard(stage.data_dir, stage.emergency_item)
        assert lines, "the emergency item was not played"
        horns_at = lines[0]["start_wall"]
        assert abs(banner_at - horns_at) <= 2.0, (banner_at, horns_at)
        # It came with the horns, not ahead of them because of the schedule.
        page.wait_for_selector("#emergency", state="detached", timeout=20_000)
    finally:
        context.close()
