"""Proof-of-play reports: planned occurrences × devices against what the devices reported."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from schedules import playback_item_id
from server.plays.models import PlayRecord
from tests.server.test_console import sign_in
from tests.server.test_permissions_fixtures import PermWorld

NOW = datetime(2031, 3, 3, 0, 0, tzinfo=UTC)  # Monday 07:00 in Vietnam


class Clock:
    """A settable clock for app.state.clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _play(w: PermWorld, device: int, seq: int, pid: int, start: datetime, outcome: str) -> None:
    with w.stack.session() as db:
        db.add(
            PlayRecord(
                device_id=device,
                seq=seq,
                item_id=playback_item_id(pid, start),
                programme_id=pid,
                priority="normal",
                planned_start=start,
                actual_start=start + timedelta(seconds=1),
                outcome=outcome,
                reason="emergency" if outcome == "preempted" else "",
            )
        )


def test_planned_against_played_with_csv(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None
    clock = Clock(NOW)
    w.stack.app.state.clock = clock
    second = w.device(w.a.village)
    w.admin("PUT", f"/zones/{w.a.zone}/devices", {"device_ids": [w.a.device, second]}, expect=200)
    body = {
        "title": "Bản tin sáng",
        "clip_ids": [w.a.clip],
        "zone_ids": [w.a.zone],
        "rrule": "FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0",
        "dtstart": "2031-03-04T00:00:00",
        "org_unit_id": w.a.commune,
    }
    pid = w.admin("POST", "/programmes", body, expect=201)["id"]
    w.admin("POST", f"/programmes/{pid}/submit", expect=200)
    w.admin("POST", f"/programmes/{pid}/approve", expect=200)
    # A draft on the same zone is not planned, so it is not in the report.
    w.admin(
        "POST",
        "/programmes",
        {**body, "title": "Nháp", "rrule": "FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0"},
        expect=201,
    )
    days = [datetime(2031, 3, d, 22, 0, tzinfo=UTC) for d in (3, 4, 5, 6)]  # 05:00 local, 4th-7th
    _play(w, w.a.device, 1, pid, days[0], "played")
    _play(w, w.a.device, 2, pid, days[1], "preempted")
    _play(w, w.a.device, 3, pid, days[2], "missed")
    _play(w, second, 1, pid, days[0], "played")
    _play(w, second, 2, 9999, days[1] + timedelta(hours=3), "played")  # not planned here
    _play(w, w.b.device if w.b else 0, 1, pid, days[0], "played")  # another zone's device
    clock.now = datetime(2031, 3, 7, 0, 0, tzinfo=UTC)  # the 7th, 07:00 local
    params = {
        "zone_id": w.a.zone,
        "since": "2031-03-03T17:00:00Z",
        "until": "2031-03-08T17:00:00Z",
    }  # the 4th to the 8th, local
    viewer = w.headers("viewer")
    report = w.client.get("/api/v1/reports/plays", params=params, headers=viewer).json()
    assert report["counts"] == {
        "played": 2,
        "preempted": 1,
        "missed": 1,
        "no_report": 4,
        "upcoming": 2,
        "unplanned": 1,
        "planned": 10,
    }
    first = report["rows"][0]
    assert (first["programme_title"], first["outcome"]) == ("Bản tin sáng", "played")
    preempted = next(r for r in report["rows"] if r["outcome"] == "preempted")
    assert preempted["reason"] == "emergency"
    r = w.client.get("/api/v1/reports/plays.csv", params=params, headers=viewer)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert rows[0][:2] == ["zone", "device"] and len(rows) == 1 + 11
    assert rows[1][5:8] == ["2031-03-04 05:00:00", "2031-03-04 05:00:01", "played"]
    bad = {**params, "since": "2031-03-03T17:00:00"}
    r = w.client.get("/api/v1/reports/plays", params=bad, headers=viewer)
    assert r.status_code == 422 and "time zone" in r.json()["detail"]
    r = w.client.get(
        "/api/v1/reports/plays", headers=viewer, params={**params, "until": "2031-09-01T00:00:00Z"}
    )
    assert r.status_code == 422
    # The console page shows the same numbers and links the CSV.
    page = sign_in(w, "viewer-a").get(
        f"/reports?zone_id={w.a.zone}&start=2031-03-04&end=2031-03-08"
    )
    assert page.status_code == 200
    assert "/api/v1/reports/plays.csv?zone_id=" in page.text
    assert "Chưa có báo cáo" in page.text and "Bị ngắt (ưu tiên)" in page.text
