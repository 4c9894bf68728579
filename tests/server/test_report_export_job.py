"""The monthly report export: due time, atomic file, POST with retries, records, the planner.

A running server on real SQLite (and PostgreSQL when configured) with a province, a commune,
a device and one reported play in November 2026; the job's clock is injected, its backoff
waits are recorded instead of slept. The URL destination is a real HTTP server in a thread
(http.server) that answers 503 as often as told, then 200.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from loa_testkit.stack import Stack
from server.db import make_engine, make_session_factory
from server.migrate import upgrade
from server.orgs.models import OrgUnit
from server.planner import Planner
from server.plays.models import PlayRecord
from server.reports.export_job import (
    ExportConfig,
    MonthlyExport,
    due_period,
    write_atomically,
)
from server.reports.models import DevicePresence, ReportExport
from server.settings import ServerSettings, SettingsError

ICT = timedelta(hours=7)  # Asia/Ho_Chi_Minh, no daylight saving


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A local wall time in Vietnam as a UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC) - ICT


@dataclass
class Receiver:
    """A real HTTP endpoint: fails `failures` times with 503, then answers 200."""

    failures: int = 0
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.posts.append((dict(self.headers.items()), body))
            failing = state.failures > 0
            state.failures -= int(failing)
            self.send_response(503 if failing else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no" if failing else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ingest/loa?key=secret"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@dataclass
class World:
    """The server, the province's id and what the job's clock says."""

    stack: Stack
    province: int
    now: datetime
    waits: list[float] = field(default_factory=list)

    def job(self, **config: Any) -> MonthlyExport:
        """A job on the server's database with this config, the test's clock and waits."""
        return MonthlyExport(
            config=ExportConfig(org_unit_id=config.pop("org_unit_id", self.province), **config),
            session_factory=self.stack.app.state.session_factory,
            clock=lambda: self.now,
            sleep=self.waits.append,
        )

    def records(self) -> list[ReportExport]:
        """Every export record, oldest first."""
        with self.stack.session() as db:  # type: ignore[no-untyped-call]
            rows = list(db.scalars(select(ReportExport).order_by(ReportExport.id)))
            db.expunge_all()
            return rows

    def api_summary(self, period: str) -> dict[str, Any]:
        """What GET /reports/summary answers for the province (generated_at left out)."""
        r = self.stack.client.get(
            "/api/v1/reports/summary",
            params={"org_unit_id": self.province, "period": period},
            headers=self.stack.headers,
        )
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        data.pop("generated_at")
        return data


@pytest.fixture
def world(api: Stack) -> World:
    def post(path: str, body: dict[str, Any]) -> Any:
        r = api.client.post(f"/api/v1{path}", json=body, headers=api.headers)
        assert r.status_code == 201, r.text
        return r.json()

    province = post("/org-units", {"name": "Tỉnh Quảng Trị", "kind": "province"})["id"]
    commune = post("/org-units", {"name": "Xã Bảo Ninh", "kind": "commune", "parent_id": province})
    device = post(
        "/devices",
        {"uid": "cum-1", "name": "Cụm 1", "org_unit_id": commune["id"], "firmware_profile": "sim"},
    )["device"]["id"]
    start = local(2026, 11, 10, 5, 0)
    with api.session() as db:  # type: ignore[no-untyped-call]
        db.add(DevicePresence(device_id=device, online=True, at=local(2026, 10, 20)))
        db.add(
            PlayRecord(device_id=device, seq=1, item_id="p1@2026-11-09T22:00:00Z",
                       programme_id=None, priority="normal", planned_start=start,
                       actual_start=start, ended_at=start + timedelta(minutes=10),
                       outcome="played", received_at=start)
        )  # fmt: skip
    now = local(2026, 12, 1, 2, 30)
    api.app.state.clock = lambda: now  # the API's summary sees the same "now" as the job
    return World(api, province, now)


def test_the_due_month_turns_at_the_hour_on_the_first() -> None:
    assert due_period(local(2026, 12, 1, 1, 59), 2) == "2026-10"
    assert due_period(local(2026, 12, 1, 2, 0), 2) == "2026-11"
    assert due_period(local(2026, 12, 31, 23, 59), 2) == "2026-11"
    assert due_period(local(2027, 1, 1, 0, 0), 0) == "2026-12"
    assert due_period(local(2027, 1, 1, 0, 30), 1) == "2026-11"


def test_the_folder_receives_each_month_once_written_atomically(
    world: World, tmp_path: Path
) -> None:
    folder = tmp_path / "exports"
    job = world.job(folder=folder, hour=2)
    (sent,) = job.run_due()
    path = folder / f"loa-report-{world.province}-2026-11.json"
    body = path.read_bytes()
    assert (sent.period, sent.target, sent.status, sent.attempts) == ("2026-11", "folder",
                                                                      "sent", 1)  # fmt: skip
    assert (sent.sha256, sent.size_bytes) == (hashlib.sha256(body).hexdigest(), len(body))
    assert sent.destination == str(folder.resolve())
    data = json.loads(body)
    assert data["schema_version"] == "1.1" and data["period"]["label"] == "2026-11"
    assert data["total"]["broadcast"]["minutes"] == 10.0
    assert data.pop("generated_at") == "2026-11-30T19:30:00Z"
    assert data == world.api_summary("2026-11")  # the documented JSON, figure for figure
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no temp file left
    # Later the same month: nothing again. Before the hour on the 1st, the month before.
    world.now = local(2026, 12, 20, 9, 0)
    assert job.run_due() == []
    world.now = local(2027, 1, 1, 1, 0)
    assert job.run_due() == []  # 2026-11, sent already
    world.now = local(2027, 1, 1, 2, 7)
    (december,) = job.run_due()
    assert december.period == "2026-12"
    assert (folder / f"loa-report-{world.province}-2026-12.json").exists()
    assert [r.period for r in world.records()] == ["2026-11", "2026-12"]
    assert world.waits == []


def test_the_url_fails_twice_then_takes_it(
    world: World, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.failures = 2
    job = world.job(url=receiver.url, token="tok-123", attempts=5, backoff_s=1.5,
                    folder=tmp_path / "out")  # fmt: skip
    records = job.run_due()
    assert [(r.target, r.status, r.attempts) for r in records] == [
        ("folder", "sent", 1),
        ("url", "sent", 3),
    ]
    assert world.waits == [1.5, 3.0]  # doubling backoff between the three attempts
    assert len(receiver.posts) == 3
    headers, body = receiver.posts[-1]
    assert {b for _, b in receiver.posts} == {body}  # every attempt sent the same bytes
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Idempotency-Key"].startswith(f"loa-report-{world.province}-2026-11-")
    assert body == (tmp_path / "out" / f"loa-report-{world.province}-2026-11.json").read_bytes()
    assert records[1].sha256 == hashlib.sha256(body).hexdigest()
    # The record keeps the URL without its query (a key may sit there).
    assert records[1].destination == receiver.url.split("?")[0]
    # Sent: the next hourly check posts nothing.
    world.now += timedelta(hours=1)
    assert job.run_due() == [] and len(receiver.posts) == 3


def test_a_url_that_keeps_failing_is_recorded_and_tried_next_hour(
    world: World, receiver: Receiver
) -> None:
    receiver.failures = 4
    job = world.job(url=receiver.url, attempts=3, backoff_s=400.0)
    (first,) = job.run_due()
    assert (first.status, first.attempts, first.error) == ("failed", 3, "HTTP 503: no")
    assert world.waits == [400.0, 600.0]  # doubled, then capped at 600 s
    world.now += timedelta(hours=1)
    (second,) = job.run_due()  # one more 503, then 200
    assert (second.status, second.attempts) == ("sent", 2)
    assert [r.status for r in world.records()] == ["failed", "sent"]
    assert len(receiver.posts) == 5
    # Another run, another generated_at: the same figures keep the same idempotency key.
    assert len({json.loads(b)["generated_at"] for _, b in receiver.posts}) == 2
    assert len({h["Idempotency-Key"] for h, _ in receiver.posts}) == 1


def test_a_folder_that_cannot_be_written_and_a_missing_unit_are_recorded(
    world: World, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    (failed,) = world.job(folder=blocker, attempts=2, backoff_s=0.0).run_due()
    assert (failed.status, failed.attempts) == ("failed", 2) and failed.error
    assert blocker.read_text() == "x"
    (gone,) = world.job(folder=tmp_path / "x", org_unit_id=2_000_000_000).run_due()
    assert (gone.status, gone.attempts) == ("failed", 0)
    assert gone.error == "Org unit 2000000000 does not exist."
    assert not (tmp_path / "x").exists()


def test_an_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    target = write_atomically(tmp_path, "r.json", b'{"old": true}')
    assert write_atomically(tmp_path, "r.json", b'{"new": true}') == target
    assert target.read_bytes() == b'{"new": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_settings_turn_the_job_on_and_refuse_half_a_configuration(tmp_path: Path) -> None:
    def settings(**values: Any) -> ServerSettings:
        return ServerSettings(data_dir=tmp_path, **values)

    assert ExportConfig.from_settings(settings()) is None
    with pytest.raises(SettingsError, match="LOA_REPORT_EXPORT_ORG_UNIT_ID"):
        ExportConfig.from_settings(settings(report_export_dir=tmp_path))
    with pytest.raises(SettingsError, match="http:// or https://"):
        ExportConfig.from_settings(
            settings(report_export_url="ftp://x/y", report_export_org_unit_id=3)
        )
    config = ExportConfig.from_settings(
        settings(
            report_export_url="https://tinh.example.vn/api/bao-cao",
            report_export_org_unit_id=3,
            report_export_token="t",
            report_export_attempts=2,
        )
    )
    assert config is not None and (config.org_unit_id, config.token, config.attempts) == (3, "t", 2)
    with pytest.raises(ValueError, match="report_export_attempts"):
        settings(report_export_attempts=11)


class NoPublisher:
    """The planner's MQTT side, unused here: the export publishes nothing."""

    def publish_schedule(self, document: Any) -> None:
        raise AssertionError("nothing to publish")

    def publish_zone_clip(self, zone_id: int, sha256: str) -> None:
        raise AssertionError("nothing to publish")


def test_the_planner_runs_the_job_when_it_leads(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as db, db.begin():
        unit = OrgUnit(name="Tỉnh Thử", kind="province")
        db.add(unit)
        db.flush()
        unit_id = unit.id
    now = local(2026, 12, 1, 3, 0)
    settings = ServerSettings(data_dir=tmp_path, report_export_dir=tmp_path / "out",
                              report_export_org_unit_id=unit_id)  # fmt: skip
    planner = Planner(engine=engine, session_factory=factory, publisher=NoPublisher(),
                      clock=lambda: now, settings=settings)  # fmt: skip
    try:
        planner.export_reports()  # not the leader yet: nothing
        assert not (tmp_path / "out").exists()
        assert planner.lock.acquire()
        planner.export_reports()
        written = json.loads((tmp_path / "out" / f"loa-report-{unit_id}-2026-11.json").read_text())
        assert written["org_unit"] == {"id": unit_id, "name": "Tỉnh Thử", "kind": "province"}
        assert written["rows"] == [] and written["total"]["availability"]["clusters"] == 0
    finally:
        planner.lock.release()
        engine.dispose()
