"""CAP feeds polled by the planner (LOA_CAP_FEEDS), against a real local HTTP server.

The feeds' alerts go through the same intake as POST /api/v1/cap, as the configured source;
a repeat poll is harmless; a failing feed is logged in one readable line and counted, and
the others still run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from server.bulletins.models import APPROVED, CANCELLED, Bulletin
from server.cap.feedlist import FeedConf, parse_feeds
from server.cap.models import CapMessage
from server.cap.parse import parse_alert
from server.cap.poll import FeedPoller, alert_documents
from server.planner import Planner
from server.programmes.models import Programme
from server.settings import ServerSettings
from server.sources.models import Source
from tests.server.cap.world import Served, World, cap, db_of, file_server

ATOM = "http://www.w3.org/2005/Atom"


def _feed(*entries: str) -> bytes:
    updated = datetime.now(UTC).replace(microsecond=0).isoformat()
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="{ATOM}"><id>urn:test:feed</id>'
        f"<title>Cảnh báo</title><updated>{updated}</updated>{''.join(entries)}</feed>"
    ).encode()


def _entry(n: int, body: str) -> str:
    return f"<entry><id>urn:test:{n}</id><title>Tin {n}</title>{body}</entry>"


def _linked(n: int, href: str) -> str:
    return _entry(n, f'<link rel="alternate" type="application/cap+xml" href="{href}"/>')


def _inline(n: int, alert: str) -> str:
    return _entry(n, f'<content type="application/cap+xml">{alert.split("?>", 1)[1]}</content>')


def _source_id(world: World, name: str) -> int:
    with db_of(world.stack) as db:
        return int(db.scalar(select(Source.id).where(Source.name == name)) or 0)


def _bulletins(world: World) -> dict[str, str]:
    """Each received alert's identifier and the status of the bulletin it made."""
    with db_of(world.stack) as db:
        rows = db.execute(
            select(CapMessage.identifier, Bulletin.status).join(
                Bulletin, Bulletin.id == CapMessage.bulletin_id
            )
        )
        return {identifier: status for identifier, status in rows}


def _poller(world: World, settings: ServerSettings) -> FeedPoller:
    app: Any = world.stack.app
    return FeedPoller(
        session_factory=app.state.session_factory, settings=settings, clock=app.state.clock
    )


def test_feeds_are_taken_in_as_their_source_and_failures_only_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    office = _source_id(world, "Nguồn emergency")
    department = _source_id(world, "Nguồn normal")
    # Newest first, as feeds list them: the Update (inline) replaces the Alert (linked).
    update = cap("FD-2", msg_type="Update", references=("FD-1",), geocodes=("00002",))
    files = {
        "/feed.atom": Served(_feed(_inline(2, update), _linked(1, "alerts/FD-1.xml"))),
        "/alerts/FD-1.xml": Served(cap("FD-1").encode(), "application/cap+xml"),
        "/dept.atom": Served(_feed(_inline(3, cap("FD-3")))),  # above the department's level
        "/page.html": Served(b"<html><body>not a feed</body></html>", "text/html"),
    }
    with file_server(files) as (base, hits):
        port = base.rsplit(":", 1)[1]
        feeds = [
            f"{office}={base}/feed.atom",
            f"{department}={base}/dept.atom",
            f"{office}={base}/missing.atom",
            f"{office}={base}/page.html",
            f"999={base}/feed.atom",
            f"{office}=http://127.0.0.2:{port}/feed.atom",  # not on the allow-list
        ]
        settings = world.stack.settings.model_copy(
            update={"cap_feeds": " ".join(feeds), "cap_resource_allowed_hosts": "127.0.0.1"}
        )
        poller = _poller(world, settings)
        with caplog.at_level(logging.INFO, logger="server.cap.poll"):
            poller.poll_all()
        assert _bulletins(world) == {"FD-1": CANCELLED, "FD-2": APPROVED}
        with db_of(world.stack) as db:
            sources = set(db.scalars(select(CapMessage.source_id)))
            assert sources == {office}  # the department's alert was refused, nothing recorded
            programmes = len(list(db.scalars(select(Programme.id))))
        assert world.receivers(_bulletin_of(world, "FD-2")) == [world.b]
        failed = {(f.source_id, f.url.rsplit("/", 1)[1]) for f, n in poller.failures.items() if n}
        assert failed == {
            (office, "missing.atom"), (office, "page.html"), (999, "feed.atom"),
            (office, "feed.atom"),  # on 127.0.0.2
        }  # fmt: skip
        assert set(poller.failures.values()) == {1}
        lines = [r.getMessage() for r in caplog.records]
        expected = [
            "missing.atom (source {office}) failed (1 of 1 polls): ",
            "failed (1 of 1 polls): the fetch failed: {base}/missing.atom answered HTTP 404",
            "page.html (source {office}) failed (1 of 1 polls): the document is not an Atom feed",
            "source 999 is not registered (check LOA_CAP_FEEDS)",
            "127.0.0.2 is not on LOA_CAP_RESOURCE_ALLOWED_HOSTS; nothing was fetched",
            "dept.atom: an alert was refused: HTTP 403: This alert is emergency",
            "feed.atom: 2 new alert(s), 0 repeat(s), 0 refused",
        ]
        for text in expected:
            text = text.format(office=office, base=base)
            assert any(text in line for line in lines), (text, lines)
        # Polled again: every alert is a repeat, nothing new is made or played.
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="server.cap.poll"):
            poller.poll_all()
        assert world.count(CapMessage) == 2 and world.count(Bulletin) == 2
        with db_of(world.stack) as db:
            assert len(list(db.scalars(select(Programme.id)))) == programmes
        assert hits["/alerts/FD-1.xml"] == 2
        assert poller.polls[FeedConf(office, f"{base}/feed.atom")] == 2
        assert not any(f"{base}/feed.atom: " in r.getMessage() for r in caplog.records)


def _bulletin_of(world: World, identifier: str) -> int:
    with db_of(world.stack) as db:
        found = db.scalar(select(CapMessage.bulletin_id).where(CapMessage.identifier == identifier))
        assert found is not None
        return found


def test_the_planner_polls_the_feeds_only_while_it_leads(world: World) -> None:
    app: Any = world.stack.app
    leader = app.state.planner
    if leader is None:
        pytest.skip("the stack runs no planner without mosquitto")
    office = _source_id(world, "Nguồn emergency")
    files = {"/feed.atom": Served(_feed(_inline(1, cap("PL-1"))))}
    with file_server(files) as (base, hits):
        settings = world.stack.settings.model_copy(
            update={
                "cap_feeds": f"{office}={base}/feed.atom",
                "cap_resource_allowed_hosts": "127.0.0.1",
                "cap_feed_interval_s": 45.0,
            }
        )
        planner = Planner(
            engine=app.state.engine, session_factory=app.state.session_factory,
            publisher=app.state.bridge, clock=app.state.clock, settings=settings,
        )  # fmt: skip
        planner.start()  # the app's planner leads: this one only registers its timers
        try:
            assert planner._scheduler is not None
            job = planner._scheduler.get_job("cap-feeds")
            assert job is not None and job.trigger.interval.total_seconds() == 45.0
            planner.poll_cap_feeds()
            assert hits["/feed.atom"] == 0  # not the leader: nothing fetched
            leader.lock.release()
            assert planner.lock.acquire()
            planner.poll_cap_feeds()
        finally:
            planner.stop()
            assert leader.lock.acquire()
    assert hits["/feed.atom"] == 1
    assert _bulletins(world) == {"PL-1": APPROVED}


def test_the_feed_settings_are_checked_at_start() -> None:
    assert parse_feeds("12=https://a.example/cap.atom, 3=http://b.example/x") == [
        FeedConf(12, "https://a.example/cap.atom"),
        FeedConf(3, "http://b.example/x"),
    ]
    assert parse_feeds("") == []
    for wrong, says in [
        ("https://a.example/cap.atom", "is not SOURCE_ID=URL"),
        ("x=https://a.example/", "is not SOURCE_ID=URL"),
        ("0=https://a.example/", "is not SOURCE_ID=URL"),
        ("4=ftp://a.example/f", "the URL must be http(s)"),
        ("4=https://a.example/f 4=https://a.example/f", "twice"),
    ]:
        with pytest.raises(ValidationError) as refused:
            ServerSettings(cap_feeds=wrong)
        assert says in str(refused.value)
    for seconds in (29.0, 3601.0):
        with pytest.raises(ValidationError):
            ServerSettings(cap_feed_interval_s=seconds)
    with pytest.raises(ValidationError):
        ServerSettings(cap_test_zone_id=0)


def test_loas_own_feed_reads_back_as_a_feed_of_alerts(world: World) -> None:
    posted = world.post(cap("OWN-1")).json()
    feed = world.stack.client.get("/api/v1/cap/feed.atom").content
    [item] = alert_documents(feed, base="http://loa.example/api/v1/cap/feed.atom")
    assert isinstance(item, bytes)  # inline: nothing more to fetch
    alert = parse_alert(item)
    assert alert.identifier == f"loa.bulletin.{posted['bulletin_id']}"
    assert alert.infos[0].headline == "Cảnh báo lũ quét"
