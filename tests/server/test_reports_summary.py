"""Reports upward: a seeded month gives exactly the expected figures in JSON, CSV and XLSX.

Province P › communes A (devices a1, a2 in one zone) and B (device b1). March 2031, local
dates; the clock stands in April so the whole month is past.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from schedules import playback_item_id
from server.bulletins.models import Bulletin, BulletinDelivery
from server.plays.models import PlayRecord
from server.programmes.models import Programme, ProgrammeClip, programme_zones
from server.reports.models import DevicePresence, PlayRollupState
from tests.server.test_console import sign_in
from tests.server.test_permissions_fixtures import PermWorld

SINCE = datetime(2031, 2, 28, 17, 0, tzinfo=UTC)  # 1 March 2031 00:00 in Vietnam
DAY = timedelta(days=1)
MONTH_S = 31 * 86400
STORM = "Phòng chống bão"


class Clock:
    """A settable clock for app.state.clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    """A local wall time of March 2031 as UTC."""
    return datetime(2031, 3, day, hour, minute, tzinfo=UTC) - timedelta(hours=7)


class Seeder:
    """Rows written straight into the database, as the bridge and the bulletin flow would."""

    def __init__(self, w: PermWorld) -> None:
        self.w = w
        self.seq = 0

    def programme(self, org: int, zone: int, clip: int, **fields: Any) -> int:
        with self.w.stack.session() as db:
            row = Programme(
                title=f"Chương trình {self.w.next()}",
                org_unit_id=org,
                status=fields.pop("status", "approved"),
                priority=fields.pop("priority", "normal"),
                **fields,
            )
            db.add(row)
            db.flush()
            db.add(ProgrammeClip(programme_id=row.id, position=0, clip_id=clip))
            db.execute(programme_zones.insert().values(programme_id=row.id, zone_id=zone))
            return int(row.id)

    def play(
        self,
        device: int,
        pid: int,
        start: datetime,
        outcome: str = "played",
        *,
        late_s: float = 0.5,
        seconds: float = 600.0,
        reason: str = "",
        priority: str = "normal",
        received_at: datetime | None = None,
    ) -> None:
        self.seq += 1
        actual = None if outcome == "missed" else start + timedelta(seconds=late_s)
        with self.w.stack.session() as db:
            db.add(
                PlayRecord(
                    device_id=device,
                    seq=self.seq,
                    item_id=playback_item_id(pid, start),
                    programme_id=pid,
                    priority=priority,
                    planned_start=start,
                    actual_start=actual,
                    ended_at=actual + timedelta(seconds=seconds) if actual else None,
                    outcome=outcome,
                    reason=reason,
                    received_at=received_at or start,
                )
            )

    def presence(self, device: int, *changes: tuple[bool, datetime]) -> None:
        with self.w.stack.session() as db:
            for online, at in changes:
                db.add(DevicePresence(device_id=device, online=online, at=at))

    def bulletin(self, **fields: Any) -> int:
        with self.w.stack.session() as db:
            row = Bulletin(
                title=f"Bản tin {self.w.next()}",
                org_unit_id=self.w.province,
                status="approved",
                valid_from=fields.pop("valid_from", SINCE),
                valid_until=fields.pop("valid_until", SINCE + 60 * DAY),
                **fields,
            )
            db.add(row)
            db.flush()
            return int(row.id)

    def delivery(self, bulletin: int, org: int, status: str, **fields: Any) -> None:
        with self.w.stack.session() as db:
            db.add(
                BulletinDelivery(
                    bulletin_id=bulletin,
                    org_unit_id=org,
                    status=status,
                    created_at=fields.pop("created_at", _local(14, 9)),
                    **fields,
                )
            )


def _seed(w: PermWorld) -> dict[str, int]:
    """The month described in the expectations below."""
    assert w.a is not None and w.b is not None
    s = Seeder(w)
    a1, b1 = w.a.device, w.b.device
    a2 = w.device(w.a.village)
    w.admin("PUT", f"/zones/{w.a.zone}/devices", {"device_ids": [a1, a2]}, expect=200)
    b_clip = w.b.clip
    daily = "FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0"
    # P1: 05:00 daily, 1-10 March, on a1 and a2 (20 planned).
    p1 = s.programme(
        w.a.commune, w.a.zone, w.a.clip, rrule=daily, dtstart=datetime(2031, 3, 1, 5, 0),
        valid_until=_local(11, 0),
    )  # fmt: skip
    for day in range(1, 9):
        s.play(a1, p1, _local(day, 5))
    s.play(a1, p1, _local(9, 5), late_s=3.0)  # played, 3 s late: not on time
    s.play(
        a1, p1, _local(10, 5), "missed", reason="its start passed while the agent was not running"
    )
    for day in range(1, 5):
        s.play(a2, p1, _local(day, 5))
    s.play(a2, p1, _local(5, 5), "preempted", seconds=120, reason="preempted by emergency")
    # a2 reported nothing for 6-10 March: 5 planned_not_reported.
    # P2: the storm bulletin placed as a programme, once, 15 March 10:00.
    storm = s.bulletin(level="normal", topic=STORM, essential=True)
    p2 = s.programme(w.a.commune, w.a.zone, w.a.clip, start=_local(15, 10), bulletin_id=storm)
    s.play(a1, p2, _local(15, 10), seconds=300)
    s.play(a2, p2, _local(15, 10), seconds=300)
    # P3: an emergency, 20 March 10:00; audible after 2 s and 4 s.
    p3 = s.programme(
        w.a.commune, w.a.zone, w.a.clip, start=_local(20, 10), priority="emergency", status="ended"
    )
    s.play(a1, p3, _local(20, 10), late_s=2.0, seconds=60, priority="emergency")
    s.play(a2, p3, _local(20, 10), late_s=4.0, seconds=60, priority="emergency")
    # A play nobody planned here (programme 999999), on time, 30 s.
    s.play(a1, 999_999, _local(21, 12), late_s=0.0, seconds=30)
    # A cancelled programme plans nothing.
    s.programme(w.a.commune, w.a.zone, w.a.clip, rrule=daily, dtstart=datetime(2031, 3, 1, 6, 0),
                status="cancelled")  # fmt: skip
    # P4 in commune B: 05:00 every day of March, 31 plays of 60 s on time.
    b_zone = w.b.zone
    p4 = s.programme(w.b.commune, b_zone, b_clip, rrule=daily, dtstart=datetime(2031, 3, 1, 5, 0))
    for day in range(1, 32):
        s.play(b1, p4, _local(day, 5), seconds=60)
    # Presence: a1 online since February, out for 2 days from the 11th;
    # a2 first online on the 2nd, out for 5 days from the 21st; b1 never online.
    s.presence(a1, (True, SINCE - 8 * DAY), (False, SINCE + 10 * DAY), (True, SINCE + 12 * DAY))
    s.presence(a2, (True, SINCE + DAY), (False, SINCE + 20 * DAY), (True, SINCE + 25 * DAY))
    s.presence(a2, (True, SINCE + 27 * DAY))  # a repeated birth changes nothing
    # Deliveries to A: storm (played on 2/2 clusters), a priority one played inside its
    # validity on 1 of 2 clusters, a declined one, an expired essential priority one.
    s.delivery(storm, w.a.commune, "played", programme_id=p2, clusters_targeted=2,
               clusters_played=2, first_played_at=_local(15, 10))  # fmt: skip
    prio = s.bulletin(level="priority", essential=True, valid_from=_local(5, 0),
                      valid_until=_local(7, 0))  # fmt: skip
    s.delivery(prio, w.a.commune, "played", clusters_targeted=2, clusters_played=1,
               first_played_at=_local(6, 5))  # fmt: skip
    s.delivery(s.bulletin(level="normal"), w.a.commune, "declined")
    late = s.bulletin(level="priority", essential=True)
    s.delivery(late, w.a.commune, "expired", clusters_targeted=2)
    # February: outside the period.
    s.delivery(s.bulletin(level="normal"), w.a.commune, "played", created_at=SINCE - DAY)
    s.delivery(storm, w.b.commune, "delivered")
    return {"a1": a1, "a2": a2, "b1": b1, "p1": p1}


NO_RELAY: dict[str, Any] = {
    "relay_fallback": 0.0,
    "relay_silent": 0.0,
    "relay_items": {"relayed": 0, "fallback": 0, "mixed": 0},
}
A_ROW: dict[str, Any] = {
    "broadcast": {
        "minutes": 144.5,
        "by_origin": {"own": 132.5, "bulletin": 10.0, "relay": 0.0, "live": 0.0, "emergency": 2.0},
        "by_topic": {"": 134.5, STORM: 10.0},
        **NO_RELAY,
    },
    "programmes": {
        "planned": 24,
        "reported": 20,
        "played": 18,
        "on_time": 15,
        "not_played": 2,
        "missed": 1,
        "preempted": 1,
        "failed": 0,
        "planned_not_reported": 5,
        "reported_not_planned": 1,
        "not_played_reasons": {
            "preempted": 1,
            "clip_missing": 0,
            "device_off": 1,
            "live": 0,
            "no_slot": 0,
            "muted": 0,
            "other": 0,
            "no_report": 5,
        },
    },
    "bulletins": {
        "delivered": 4,
        "accepted": 2,
        "declined": 1,
        "played": 2,
        "expired": 1,
        "withdrawn": 0,
        "played_without_report": 0,
        "priority": 2,
        "priority_played_in_validity": 1,
        "essential": 3,
        "essential_reached": 1,
        "essential_reached_share": 0.3333,
    },
    "emergencies": {
        "programmes": 1,
        "clusters_targeted": 2,
        "clusters_reached": 2,
        "p95_time_to_audible_s": 4.0,
    },
    "availability": {
        "clusters": 2,
        "online_share": round(54 / 62, 4),
        "faulty_clusters": 1,
        "longest_outage_s": 5 * 86400.0,
    },
}
B_ROW: dict[str, Any] = {
    "broadcast": {
        "minutes": 31.0,
        "by_origin": {"own": 31.0, "bulletin": 0.0, "relay": 0.0, "live": 0.0, "emergency": 0.0},
        "by_topic": {"": 31.0},
        **NO_RELAY,
    },
    "programmes": {
        "planned": 31,
        "reported": 31,
        "played": 31,
        "on_time": 31,
        "not_played": 0,
        "missed": 0,
        "preempted": 0,
        "failed": 0,
        "planned_not_reported": 0,
        "reported_not_planned": 0,
        "not_played_reasons": {
            "preempted": 0,
            "clip_missing": 0,
            "device_off": 0,
            "live": 0,
            "no_slot": 0,
            "muted": 0,
            "other": 0,
            "no_report": 0,
        },
    },
    "bulletins": {
        "delivered": 1,
        "accepted": 0,
        "declined": 0,
        "played": 0,
        "expired": 0,
        "withdrawn": 0,
        "played_without_report": 0,
        "priority": 0,
        "priority_played_in_validity": 0,
        "essential": 1,
        "essential_reached": 0,
        "essential_reached_share": 0.0,
    },
    "emergencies": {
        "programmes": 0,
        "clusters_targeted": 0,
        "clusters_reached": 0,
        "p95_time_to_audible_s": None,
    },
    "availability": {
        "clusters": 1,
        "online_share": 0.0,
        "faulty_clusters": 1,
        "longest_outage_s": float(MONTH_S),
    },
}
TOTAL: dict[str, Any] = {
    "broadcast": {
        "minutes": 175.5,
        "by_origin": {"own": 163.5, "bulletin": 10.0, "relay": 0.0, "live": 0.0, "emergency": 2.0},
        "by_topic": {"": 165.5, STORM: 10.0},
        **NO_RELAY,
    },
    "programmes": {
        key: A_ROW["programmes"][key] + B_ROW["programmes"][key]
        for key in A_ROW["programmes"]
        if key != "not_played_reasons"
    }
    | {"not_played_reasons": A_ROW["programmes"]["not_played_reasons"]},
    "bulletins": {
        "delivered": 5,
        "accepted": 2,
        "declined": 1,
        "played": 2,
        "expired": 1,
        "withdrawn": 0,
        "played_without_report": 0,
        "priority": 2,
        "priority_played_in_validity": 1,
        "essential": 4,
        "essential_reached": 1,
        "essential_reached_share": 0.25,
    },
    "emergencies": A_ROW["emergencies"],
    "availability": {
        "clusters": 3,
        "online_share": round(54 / 93, 4),
        "faulty_clusters": 2,
        "longest_outage_s": float(MONTH_S),
    },
}
SECTIONS = ("broadcast", "programmes", "bulletins", "emergencies", "availability")


def _get(w: PermWorld, params: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return w.client.get(
        "/api/v1/reports/summary", params=params, headers=headers or w.stack.headers
    )


@pytest.fixture
def month(perm_world: PermWorld) -> PermWorld:
    """The world with the seeded month, the clock in April."""
    perm_world.stack.app.state.clock = Clock(datetime(2031, 4, 10, tzinfo=UTC))
    perm_world.seeded = _seed(perm_world)  # type: ignore[attr-defined]
    return perm_world


def test_month_figures_in_json_csv_and_xlsx(month: PermWorld) -> None:
    w = month
    assert w.a is not None and w.b is not None
    r = _get(w, {"org_unit_id": w.province, "period": "2031-03"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["schema_version"] == "1.1"
    assert body["period"]["first_day"] == "2031-03-01"
    assert body["period"]["last_day"] == "2031-03-31"
    rows = {row["org_unit_id"]: row for row in body["rows"]}
    assert set(rows) == {w.a.commune, w.b.commune}
    for unit, expected in ((w.a.commune, A_ROW), (w.b.commune, B_ROW)):
        assert {s: rows[unit][s] for s in SECTIONS} == expected, unit
    assert {s: body["total"][s] for s in SECTIONS} == TOTAL
    assert body["total"]["org_unit_id"] == w.province
    # Availability per local day: a1 and a2 both online on the 3rd, a1 alone on the 12th
    # (a2 online, b1 never), nobody online on the 1st but a1.
    series = {p["start"]: p["online_share"] for p in body["availability_series"]}
    assert len(series) == 31
    assert series["2031-03-01"] == round(1 / 3, 4)
    assert series["2031-03-03"] == round(2 / 3, 4)
    assert series["2031-03-12"] == round(1 / 3, 4)

    r = _get(w, {"org_unit_id": w.province, "period": "2031-03", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [line["row"] for line in lines] == ["child", "child", "total"]
    total = lines[-1]
    assert total["programmes.planned"] == "55"
    assert total["programmes.planned_not_reported"] == "5"
    assert total["broadcast.by_origin.bulletin"] == "10.0"
    assert total["broadcast.by_topic.(none)"] == "165.5"
    assert total["bulletins.essential_reached_share"] == "0.25"
    assert total["emergencies.p95_time_to_audible_s"] == "4.0"
    by_unit = {line["org_unit_id"]: line for line in lines[:2]}
    assert by_unit[str(w.b.commune)]["emergencies.p95_time_to_audible_s"] == ""
    assert by_unit[str(w.a.commune)]["availability.faulty_clusters"] == "1"

    r = _get(w, {"org_unit_id": w.province, "period": "2031-03", "format": "xlsx"})
    assert r.status_code == 200
    book = load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == [
        "Thông tin", "Thời lượng phát", "Chương trình", "Bản tin cấp trên", "Khẩn cấp",
        "Thiết bị", "Phản ánh, kiến nghị", "Theo chủ đề",
    ]  # fmt: skip
    sheet = book["Chương trình"]
    header = [c.value for c in sheet[1]]
    assert header[:5] == [
        "Mã đơn vị",
        "Đơn vị",
        "Cấp",
        "Kế hoạch (lượt × cụm loa)",
        "Thiết bị báo cáo",
    ]
    cells = {row[0]: row for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert cells[w.a.commune][3:6] == (24, 20, 18)
    assert cells[w.province][1] == "Tổng cộng"
    assert cells[w.province][3] == 55 and isinstance(cells[w.province][3], int)
    avail = {row[0]: row for row in book["Thiết bị"].iter_rows(min_row=2, values_only=True)}
    assert avail[w.province][3:] == (3, round(54 / 93, 4), 2, float(MONTH_S), 0)
    emergency = {row[0]: row for row in book["Khẩn cấp"].iter_rows(min_row=2, values_only=True)}
    assert emergency[w.a.commune][3:] == (1, 2, 2, 4.0)
    assert emergency[w.b.commune][6] is None


def test_commune_level_rows_are_villages_and_from_to_dates(month: PermWorld) -> None:
    w = month
    ids = w.seeded  # type: ignore[attr-defined]
    assert w.a is not None
    r = _get(w, {"org_unit_id": w.a.commune, "from": "2031-03-01", "to": "2031-03-31"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [row["org_unit_id"] for row in body["rows"]] == [w.a.village]
    a2, p1 = ids["a2"], ids["p1"]
    village = body["rows"][0]
    # Devices hang off the village; bulletins are delivered to the commune itself.
    assert village["programmes"] == A_ROW["programmes"]
    assert village["bulletins"]["delivered"] == 0
    assert {s: body["total"][s] for s in SECTIONS} == A_ROW
    # One day: the 5th only (a1 played, a2 preempted).
    r = _get(w, {"org_unit_id": w.a.commune, "from": "2031-03-05", "to": "2031-03-05"})
    programmes = r.json()["total"]["programmes"]
    assert (programmes["planned"], programmes["played"], programmes["preempted"]) == (2, 1, 1)
    # A late report (a2, the 6th) arrives: read raw at once, summed into the monthly rollup
    # once settled, never counted twice.
    clock = w.stack.app.state.clock
    late = Seeder(w)
    late.seq = 10_000  # clear of the seeded sequence numbers
    late.play(a2, p1, _local(6, 5), received_at=clock.now)
    march = {"org_unit_id": w.a.commune, "period": "2031-03"}
    for minutes in (0, 11):
        clock.now += timedelta(minutes=minutes)
        programmes = _get(w, march).json()["total"]["programmes"]
        assert (programmes["played"], programmes["planned_not_reported"]) == (19, 4), minutes
        with w.stack.session() as db:
            summed = db.scalar(select(PlayRollupState.last_id))
            newest = db.scalar(select(func.max(PlayRecord.id)))
        assert (summed == newest) is (minutes == 11)
    # The console page: bars drawn on the server, in Vietnamese, with the downloads.
    browser = sign_in(w, "viewer-a")
    page = browser.get("/reports/summary", params={"org_unit_id": w.a.commune, "period": "2031-03"})
    assert page.status_code == 200, page.text[:300]
    html = page.text
    assert "Báo cáo tổng hợp" in html and "Tỷ lệ thời gian trực tuyến" in html
    online = re.search(r'id="chart-online".*?</figure>', html, re.S)
    assert online is not None
    bar_widths = re.findall(r'class="bar" x="180" y="\d+" width="(\d+)"', online.group(0))
    assert bar_widths == [str(round(320 * 54 / 62))]  # the village: 87.1 %
    series = re.search(r'id="chart-availability".*?</figure>', html, re.S)
    assert series is not None and series.group(0).count('class="bar"') == 31
    assert "format=xlsx" in html and '<script src="http' not in html
    foreign = browser.get("/reports/summary", params={"org_unit_id": w.province})
    assert foreign.status_code == 404


BAD_PERIODS = [
    ({"period": "2031-13"}, "month must be 01 to 12"),
    ({"period": "2031-Q5"}, "is not understood"),
    ({"period": "March"}, "is not understood"),
    ({"period": "1999"}, "between 2000 and 2100"),
    ({}, "Choose a period"),
    ({"from": "2031-03-01"}, "Choose a period"),
    ({"from": "2031-03-31", "to": "2031-03-01"}, "must not be after"),
    ({"from": "2031-02-30", "to": "2031-03-01"}, "must be a date"),
    ({"from": "2030-01-01", "to": "2035-12-31"}, "at most five years"),
    ({"period": "2031", "from": "2031-01-01", "to": "2031-02-01"}, "not both"),
    ({"period": "2031-03", "format": "pdf"}, "json"),
]


def test_bad_periods_are_422_with_a_plain_reason(perm_world: PermWorld) -> None:
    for params, words in BAD_PERIODS:
        r = _get(perm_world, {"org_unit_id": perm_world.province, **params})
        assert r.status_code == 422, (params, r.text)
        assert words in str(r.json()["detail"]), (params, r.text)
    # Five years to the day are allowed.
    r = _get(
        perm_world, {"org_unit_id": perm_world.province, "from": "2030-01-01", "to": "2034-12-31"}
    )
    assert r.status_code == 200, r.text


def test_units_outside_reach_answer_404(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None and w.b is not None
    viewer = w.headers("viewer")
    own = _get(w, {"org_unit_id": w.a.commune, "period": "2031-03"}, viewer)
    assert own.status_code == 200, own.text
    for unit in (w.b.commune, w.province, 2_000_000_000):
        r = _get(w, {"org_unit_id": unit, "period": "2031-03"}, viewer)
        assert r.status_code == 404, r.text
        assert r.json()["detail"] == f"Org unit {unit} does not exist."
    # 404 before any complaint about the period: the foreign unit's existence does not leak.
    r = _get(w, {"org_unit_id": w.b.commune, "period": "nonsense"}, viewer)
    assert r.status_code == 404
