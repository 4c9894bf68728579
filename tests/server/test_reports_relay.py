"""Reports upward: relay minutes come from what clusters reported hearing (proof of play).

Province P › communes A (devices a1, a2) and B (b1), March 2031. A's programme opens with a
relay of 20 minutes, then 5 minutes of its own clips (25 minutes an item).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schedules import playback_item_id
from server.plays.models import PlayRecord
from tests.server.test_permissions_fixtures import PermWorld
from tests.server.test_reports_summary import Clock, Seeder, _local

ITEM_S = 25 * 60.0


def _relay_play(
    w: PermWorld, s: Seeder, device: int, pid: int, day: int, mode: str | None, **seconds: float
) -> None:
    s.seq += 1
    start = _local(day, 5)
    with w.stack.session() as db:
        db.add(
            PlayRecord(
                device_id=device, seq=s.seq, item_id=playback_item_id(pid, start),
                programme_id=pid, priority="normal", planned_start=start,
                actual_start=start, ended_at=start + timedelta(seconds=ITEM_S),
                outcome="played", relay_mode=mode, received_at=start, **seconds,
            )
        )  # fmt: skip


def _seed(w: PermWorld) -> None:
    assert w.a is not None and w.b is not None
    s = Seeder(w)
    a1, b1 = w.a.device, w.b.device
    a2 = w.device(w.a.village)
    w.admin("PUT", f"/zones/{w.a.zone}/devices", {"device_ids": [a1, a2]}, expect=200)
    daily = "FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0"
    p = s.programme(w.a.commune, w.a.zone, w.a.clip, rrule=daily,
                    dtstart=datetime(2031, 3, 1, 5, 0), valid_until=_local(3, 0))  # fmt: skip
    # 1 March: a1 heard the station for the whole 20 minutes; a2 had no frames: fallback.
    _relay_play(w, s, a1, p, 1, "relayed", relayed_s=1200.0, fallback_s=0.0, silent_s=0.0)
    _relay_play(w, s, a2, p, 1, "fallback", relayed_s=0.0, fallback_s=1194.0, silent_s=6.0)
    # 2 March: the station went silent after 12 minutes on both clusters.
    _relay_play(w, s, a1, p, 2, "mixed", relayed_s=720.0, fallback_s=474.0, silent_s=6.0)
    _relay_play(w, s, a2, p, 2, "mixed", relayed_s=720.0, fallback_s=477.0, silent_s=3.0)
    # B: an ordinary programme, 10 minutes, no relay at all.
    q = s.programme(w.b.commune, w.b.zone, w.b.clip, start=_local(4, 9))
    s.play(b1, q, _local(4, 9), seconds=600)


# Minutes: relayed 1200 + 720 + 720 s = 44 min; the rest of 4 items × 25 min = 56 min own.
A_BROADCAST: dict[str, Any] = {
    "minutes": 100.0,
    "by_origin": {"own": 56.0, "bulletin": 0.0, "relay": 44.0, "live": 0.0, "emergency": 0.0},
    "by_topic": {"": 100.0},
    "relay_fallback": round((1194 + 474 + 477) / 60, 2),
    "relay_silent": 0.25,
    "relay_items": {"relayed": 1, "fallback": 1, "mixed": 2},
}
B_BROADCAST: dict[str, Any] = {
    "minutes": 10.0,
    "by_origin": {"own": 10.0, "bulletin": 0.0, "relay": 0.0, "live": 0.0, "emergency": 0.0},
    "by_topic": {"": 10.0},
    "relay_fallback": 0.0,
    "relay_silent": 0.0,
    "relay_items": {"relayed": 0, "fallback": 0, "mixed": 0},
}


@pytest.fixture
def relay_month(perm_world: PermWorld) -> PermWorld:
    """The seeded relays, the clock in April (the whole of March is past)."""
    perm_world.stack.app.state.clock = Clock(datetime(2031, 4, 10, tzinfo=UTC))
    _seed(perm_world)
    return perm_world


def _summary(w: PermWorld, **params: Any) -> Any:
    assert w.province
    r = w.client.get(
        "/api/v1/reports/summary",
        params={"org_unit_id": w.province, **params},
        headers=w.stack.headers,
    )
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize(
    "period", [{"period": "2031-03"}, {"from": "2031-03-01", "to": "2031-03-20"}]
)
def test_relay_minutes_in_json_from_sums_and_raw_rows(
    relay_month: PermWorld, period: dict[str, str]
) -> None:
    w = relay_month
    assert w.a is not None and w.b is not None
    # A whole month reads the monthly sums (made by the first report), a from/to window the
    # raw rows: both give the same figures, twice in a row.
    for _ in range(2):
        body = _summary(w, **period).json()
        assert body["schema_version"] == "1.1"
        rows = {r["org_unit_id"]: r["broadcast"] for r in body["rows"]}
        assert rows[w.a.commune] == A_BROADCAST
        assert rows[w.b.commune] == B_BROADCAST
        total = body["total"]["broadcast"]
        assert total["by_origin"]["relay"] == 44.0 and total["by_origin"]["own"] == 66.0
        assert total["minutes"] == 110.0
        assert total["relay_items"] == {"relayed": 1, "fallback": 1, "mixed": 2}
        assert body["total"]["programmes"]["played"] == 5


def test_relay_minutes_in_csv_and_xlsx(relay_month: PermWorld) -> None:
    w = relay_month
    assert w.a is not None
    text = _summary(w, period="2031-03", format="csv").text
    lines = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    by_unit = {line["org_unit_id"]: line for line in lines}
    a = by_unit[str(w.a.commune)]
    assert a["schema_version"] == "1.1"
    assert (a["broadcast.by_origin.relay"], a["broadcast.by_origin.own"]) == ("44.0", "56.0")
    assert (a["broadcast.relay_fallback"], a["broadcast.relay_silent"]) == ("35.75", "0.25")
    assert (a["broadcast.relay_items.relayed"], a["broadcast.relay_items.fallback"],
            a["broadcast.relay_items.mixed"]) == ("1", "1", "2")  # fmt: skip
    total = by_unit[str(w.province)]
    assert total["row"] == "total" and total["broadcast.by_origin.relay"] == "44.0"
    assert total["broadcast.relay_items.relayed"] == "1"

    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(_summary(w, period="2031-03", format="xlsx").content))
    sheet = book["Thời lượng phát"]
    header = [c.value for c in sheet[1]]
    cells = {row[0]: row for row in sheet.iter_rows(min_row=2, values_only=True)}
    a_row = dict(zip(header, cells[w.a.commune], strict=True))
    assert a_row["Phút: tiếp âm"] == 44.0
    assert a_row["Phút: phát dự phòng thay tiếp âm"] == 35.75
    assert a_row["Lượt tiếp âm: cả hai"] == 2
