"""`loa-server demo` shows issue 16's public channels: the commune's page and feed with a
bulletin, the feedback form, and the e-board's page; its seeding adds them to older data once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from sqlalchemy import func, select

from loa_testkit.demolines import DemoLines
from loa_testkit.stack import database, stack_settings
from server.broker.process import free_port
from server.bulletins.models import APPROVED, Bulletin, BulletinDelivery
from server.db import make_engine, make_session_factory, session_scope
from server.devices.models import Device
from server.feedback.models import FeedbackCategory
from server.migrate import upgrade
from server.orgs.models import OrgUnit, Zone, zone_devices
from server.seed import (
    BULLETIN_TITLE,
    EBOARD_UID,
    FEEDBACK_CATEGORIES,
    public_codes,
    seed_demo,
    seed_demo_public,
)
from tests.stack import requires_mosquitto


def _fetch(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _until_up(url: str, timeout: float) -> tuple[int, bytes]:
    """GET url until something answers (the agent starts after the server)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _, body = _fetch(url)
            return status, body
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@requires_mosquitto
def test_demo_prints_and_serves_the_public_page_feed_form_and_eboard(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LOA_DATA_DIR": str(tmp_path / "var"),
        "LOA_HTTP_PORT": str(free_port()),
        "LOA_MQTT_PORT": str(free_port()),
    }
    for name in ("LOA_ADMIN_PASSWORD", "LOA_MQTT_PASSWORD", "LOA_AGENT_DISPLAY_PORT"):
        env.pop(name, None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "server", "demo", "--agents", "1"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        lines = DemoLines(demo)
        seeded = lines.until(r"seeded demo data: (.*)", 90).group(1)
        assert "1 e-board" in seeded and "1 public bulletin" in seeded, seeded
        assert "10 feedback categories" in seeded, seeded
        # One cluster with horns and the e-board were started: both are online before the
        # sign-ins are printed.
        lines.until(r"2/13 devices online", 90)
        lines.until(r"sign in as: admin / ", 30)
        page_url = lines.until(r"trang công khai của xã: (\S+)", 10).group(1)
        form_url = lines.until(r"gửi phản ánh, kiến nghị: (\S+)", 10).group(1)
        board_url = lines.until(r"bảng tin điện tử \(" + EBOARD_UID + r"\): (\S+)", 10).group(1)
        assert page_url.endswith("/p/bao-ninh") and form_url == page_url + "/phan-anh"

        status, kind, body = _fetch(page_url)
        assert status == 200 and kind.startswith("text/html"), (status, kind)
        html = body.decode()
        assert "Bản tin Xã Bảo Ninh" in html and BULLETIN_TITLE in html

        status, kind, body = _fetch(page_url + "/feed.xml")
        assert status == 200 and "rss" in kind, (status, kind)
        rss = ET.fromstring(body)
        assert rss.tag == "rss" and rss.get("version") == "2.0"
        items = rss.findall("./channel/item")
        assert [i.findtext("title") for i in items] == [BULLETIN_TITLE]
        enclosure = items[0].find("enclosure")
        assert enclosure is not None and enclosure.get("type") == "audio/ogg"
        status, kind, _ = _fetch(str(enclosure.get("url")))
        assert status == 200 and kind == "audio/ogg"  # the bulletin's text, read by TTS

        status, _, body = _fetch(form_url)
        form = body.decode()
        assert status == 200 and "Môi trường" in form and "An ninh trật tự" in form

        # The e-board agent serves its page on the port the demo printed.
        status, _ = _until_up(board_url + "healthz", 60)
        assert status == 200
        # It names the commune once its first schedule (with the display part) has arrived.
        deadline = time.monotonic() + 60
        while True:
            state = json.loads(_until_up(board_url + "state.json", 10)[1])
            if state["unit_name"] == "Xã Bảo Ninh" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert state["unit_name"] == "Xã Bảo Ninh", state
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
    assert demo.returncode == 0


def _counts(db: Any) -> tuple[int, ...]:
    return (
        int(db.scalar(select(func.count(FeedbackCategory.id))) or 0),
        int(db.scalar(select(func.count(Device.id))) or 0),
        int(db.scalar(select(func.count(Bulletin.id))) or 0),
        int(db.scalar(select(func.count(BulletinDelivery.id))) or 0),
    )


def test_seeding_adds_the_public_rows_to_older_demo_data_once(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as url:
        settings = stack_settings(tmp_path / "data", url)
        engine = make_engine(url)
        upgrade(engine)
        factory = make_session_factory(engine)
        now = datetime.now(UTC)
        with session_scope(factory) as db:  # demo data from before issue 16
            assert seed_demo(db)
        with session_scope(factory) as db:
            assert public_codes(db) == []
            added = seed_demo_public(db, settings=settings, now=now)
        assert added == [
            "2 commune codes",
            "10 feedback categories",
            "1 e-board",
            "1 public bulletin",
        ]
        with session_scope(factory) as db:
            assert public_codes(db) == ["bao-ninh", "quang-phu"]
            before = _counts(db)
            assert before == (10, 13, 1, 2)
            board = db.scalar(select(Device).where(Device.uid == EBOARD_UID))
            assert board is not None and board.firmware_profile == "eboard-sim"
            zones = db.scalars(
                select(Zone.name)
                .join(zone_devices, zone_devices.c.zone_id == Zone.id)
                .where(zone_devices.c.device_id == board.id)
            ).all()
            assert zones == ["Toàn xã"]  # with the commune's horns
            unit = db.get(OrgUnit, board.org_unit_id)
            assert unit is not None and unit.kind == "commune"
            bulletin = db.scalar(select(Bulletin))
            assert bulletin is not None and bulletin.status == APPROVED and bulletin.public
            assert bulletin.tts_clip_id is not None
            per_commune = {
                unit_id: sorted(
                    db.scalars(
                        select(FeedbackCategory.name).where(FeedbackCategory.org_unit_id == unit_id)
                    )
                )
                for unit_id in {d.org_unit_id for d in db.scalars(select(BulletinDelivery))}
            }
            assert all(
                names == sorted(n for n, _ in FEEDBACK_CATEGORIES) for names in per_commune.values()
            ), per_commune
        # A second `make demo` on the same data seeds nothing twice.
        with session_scope(factory) as db:
            assert not seed_demo(db)
            assert seed_demo_public(db, settings=settings, now=now) == []
            assert _counts(db) == before
        engine.dispose()
