"""The device page's acoustic self-test, power and silence, and its run-now and schedule forms."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from protocol import DEVICE_EVENT_CODES, EventBatch
from server.console.catalogue import CATALOGUE
from server.console.selftest_view import trend
from server.db import utcnow
from server.devices.models import Device, DeviceCommand
from server.orgs.models import OrgUnit
from server.plays.service import store_events
from tests.server.test_console import csrf_of, sign_in
from tests.server.test_console_devices import world
from tests.server.test_permissions_fixtures import PermWorld
from tests.server.vietnamese_text import english_words, vietnamese_vocabulary, visible_text

__all__ = ["world"]  # the fixture: communes A and B with a broker

BANDS = ("125", "250", "500", "1000", "2000", "4000", "8000")


def figures(level: float, high: float | None = None) -> dict[str, Any]:
    """A self-test's figures: flat bands at level, the top three at high if given."""
    bands = {b: level for b in BANDS} | {b: high for b in BANDS[4:] if high is not None}
    return {
        "level_db": level, "bands_db": bands, "noise_floor_dbfs": -74.8,
        "distortion_pct": 0.4, "snr_db": 48.2, "latency_ms": 12.5,
    }  # fmt: skip


def store(w: PermWorld, device_id: int, events: list[dict[str, Any]], **telemetry: Any) -> None:
    """Store device events as a batch from the device's outbox, and set its telemetry."""
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        device = db.get(Device, device_id)
        assert device is not None
        batch = EventBatch.model_validate({"ts": utcnow().timestamp(), "events": events})
        assert store_events(db, device=device, batch=batch, now=utcnow()).unusable == 0
        if telemetry:
            device.telemetry = dict(telemetry)
            device.telemetry_at = utcnow()


def history(now: datetime) -> list[dict[str, Any]]:
    """Ten weeks of weekly runs: a baseline, normal runs, a busy one, then a high-band loss."""

    def at(days: float) -> float:
        return (now - timedelta(days=days)).timestamp()

    runs: list[dict[str, Any]] = [
        {"seq": 1, "kind": "selftest", "at": at(70), "code": "baseline", "baseline": True,
         "figures": figures(-30.0), "detail": "Lấy mốc"},
        {"seq": 99, "kind": "selftest", "at": at(120), "code": "ok", "figures": figures(-29.0)},
    ]  # fmt: skip
    for week in range(1, 9):  # days 63 … 14
        level = -30.0 + week / 10
        runs.append({"seq": 1 + week, "kind": "selftest", "at": at(70 - 7 * week), "code": "ok",
                     "figures": figures(level), "level_vs_baseline_db": week / 10})  # fmt: skip
    runs += [
        {"seq": 20, "kind": "selftest", "at": at(10), "code": "busy"},
        {"seq": 21, "kind": "selftest", "at": at(5), "code": "failed", "detail": "lỗi micro"},
        {"seq": 22, "kind": "selftest", "at": at(1), "code": "high_loss",
         "command_id": "5b1f0e7c2d9a4e31a6f0c3b2d8e7f145", "figures": figures(-31.2, -49.8),
         "level_vs_baseline_db": -1.2, "reasons": ["Dải cao (2–8 kHz) giảm 19 dB so với mốc"]},
        {"seq": 30, "kind": "power", "at": at(0.5), "code": "battery",
         "detail": "Mất điện lưới lúc 08:00"},
        {"seq": 31, "kind": "silence", "at": at(0.4), "code": "output_silent",
         "item_id": "p1-x", "silent_s": 12.0},
    ]  # fmt: skip
    return runs


def test_the_page_shows_verdict_bands_trend_runs_power_and_events(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    device_id = w.device(w.a.village)
    store(w, device_id, history(utcnow()), power="battery", battery_volume_cap=40)
    tech = sign_in(w, "technician-a")
    html = tech.get(f"/devices/{device_id}").text

    verdict = re.search(r'<p class="verdict tone-(\w+)" id="selftest-verdict">([^<]+)</p>', html)
    assert verdict is not None and verdict.groups() == ("fail", "Mất dải cao")
    assert "-1.2 dB" in html and "Dải cao (2–8 kHz) giảm 19 dB so với mốc" in html
    assert "lệnh từ trang này" in html  # the run came from a command
    # Band table: this run, the baseline and the difference, 7 bands each.
    table = html[
        html.index('id="selftest-bands"') : html.index("</table>", html.index("selftest-bands"))
    ]
    assert ">2k<" in table and ">125<" in table
    rows = re.findall(r"<tr class=\"band-(\w+)\">(.*?)</tr>", table, re.S)
    assert [name for name, _ in rows] == ["run", "baseline", "diff"]
    assert re.findall(r"<td>([^<]+)</td>", rows[2][1]) == ["-1.2"] * 4 + ["-19.8"] * 3

    # Trend: 11 runs within 12 weeks (the 120-day-old one is out), the busy one is not a
    # result; 10 measured on the line, plus the failed run without figures on the axis.
    svg = html[html.index('<svg class="trend"') : html.index("</svg>")]
    points = re.search(r'<polyline class="trend-line" points="([^"]+)"', svg)
    assert points is not None and len(points.group(1).split()) == 10
    assert 'data-measured="10"' in svg and 'data-runs="11"' in svg
    assert len(re.findall(r'<circle class="trend-mark mark-fail"', svg)) == 2
    assert len(re.findall(r'<circle class="trend-mark mark-ok"', svg)) == 8
    assert 'class="trend-baseline"' in svg
    assert "<script" not in svg and "http" not in svg.replace("http://www.w3.org", "")

    runs = html[html.index('id="selftest-runs"') : html.index("</ul>", html.index("selftest-runs"))]
    assert runs.count("<li>") == 10  # the ten newest runs
    assert "Loa đang bận, chưa chạy" in runs and "Đo không được" in runs

    shown = visible_text(html)
    # The fixture's own names (technician-a, perm-0001) and the device's words (kHz) aside.
    extra = ("technician", "perm", "kHz")
    assert english_words(shown, vocabulary=vietnamese_vocabulary(extra)) == []
    assert "Đang chạy bằng ắc quy" in html and "âm lượng tối đa khi chạy ắc quy: 40%" in html
    events = html[html.index('id="device-events"') :]
    assert "Mất điện lưới – chạy ắc quy" in events and "Phát ra im lặng" in events
    # Health flags from the stored events and telemetry, with a battery badge in the lists.
    assert "Tự kiểm tra: lỗi loa" in html
    for path in ("/devices", "/"):
        listing = tech.get(path).text
        assert 'class="badge power flag-on_battery"' in listing, path
        assert "Mất điện lưới – chạy ắc quy" in listing and "Phát ra im lặng" in listing


def test_run_now_is_for_technicians_and_sends_a_self_test_command(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    device_id = w.device(w.a.village)
    viewer = sign_in(w, "viewer-a")
    page = viewer.get(f"/devices/{device_id}").text
    assert 'id="selftest-none"' in page and 'id="selftest-form"' not in page
    assert "Chạy tự kiểm tra ngay" not in page and "Điện lưới" not in page  # no power input
    refused = viewer.post(f"/devices/{device_id}/self-test", data={"csrf": csrf_of(viewer)})
    assert refused.status_code == 403

    tech = sign_in(w, "technician-a")
    page = tech.get(f"/devices/{device_id}").text
    assert 'id="selftest-form"' in page and "Chạy tự kiểm tra ngay" in page
    assert "Đặt lại mốc (sau khi sửa chữa)" in page and "tiếng quét tần số" in page
    forged = tech.post(f"/devices/{device_id}/self-test", data={"csrf": "x"})
    assert forged.status_code == 403
    bad = tech.post(
        f"/devices/{device_id}/self-test", data={"csrf": csrf_of(tech), "volume": "900"}
    )
    assert bad.status_code == 422 and "từ 0 đến 100" in bad.text
    sent = tech.post(
        f"/devices/{device_id}/self-test",
        data={"csrf": csrf_of(tech), "rebaseline": "true", "volume": "35"},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text[:300]
    assert sent.headers["location"] == f"/devices/{device_id}?done=selftest#selftest"
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        rows = list(db.scalars(select(DeviceCommand).where(DeviceCommand.device_id == device_id)))
    assert [(r.name, r.args) for r in rows] == [("self_test", {"rebaseline": True, "volume": 35})]
    after = tech.get(sent.headers["location"]).text
    assert "Đã gửi lệnh tự kiểm tra" in after and "Tự kiểm tra âm thanh" in after
    outside = tech.post(
        f"/devices/{w.b.device if w.b else 0}/self-test", data={"csrf": csrf_of(tech)}
    )
    assert outside.status_code == 404


def test_no_microphone_and_the_english_page(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    device_id = w.device(w.a.village)
    at = utcnow().timestamp() - 60
    store(w, device_id, [{"seq": 5, "kind": "selftest", "at": at, "code": "no_capture"}],
          power="mains")  # fmt: skip
    tech = sign_in(w, "technician-a")
    html = tech.get(f"/devices/{device_id}").text
    assert 'class="verdict tone-neutral" id="selftest-verdict">Chưa có micro đo<' in html
    assert 'id="selftest-no-capture"' in html and "Điện lưới" in html
    assert 'id="selftest-trend-none"' in html  # nothing measured in 12 weeks
    tech.cookies.set("loa_lang", "en")
    english = tech.get(f"/devices/{device_id}").text
    assert "No measuring microphone" in english or "No microphone" in english
    assert "Acoustic self-test" in english and "Mains" in english


def test_the_daily_schedule_form_refuses_quiet_hours(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    device_id = w.device(w.a.village)
    viewer = sign_in(w, "viewer-a")
    assert 'id="selftest-schedule-form"' not in viewer.get(f"/devices/{device_id}").text
    tech = sign_in(w, "technician-a")
    page = tech.get(f"/devices/{device_id}").text
    assert 'id="selftest-schedule-form"' in page and "Chưa đặt lịch tự kiểm tra" in page
    form = {"csrf": csrf_of(tech), "org_unit_id": str(w.a.commune), "volume": "30"}
    quiet = tech.post(f"/devices/{device_id}/selftest-schedule", data=form | {"daily_at": "23:00"})
    assert quiet.status_code == 422
    assert 'id="selftest-schedule-error"' in quiet.text and "22:00–05:00" in quiet.text
    bad = tech.post(f"/devices/{device_id}/selftest-schedule", data=form | {"daily_at": "25:99"})
    assert bad.status_code == 422 and "giờ:phút" in bad.text
    foreign = form | {"daily_at": "11:30", "org_unit_id": str(w.b.commune if w.b else 0)}
    assert tech.post(f"/devices/{device_id}/selftest-schedule", data=foreign).status_code == 422
    saved = tech.post(
        f"/devices/{device_id}/selftest-schedule", data=form | {"daily_at": "11:30"},
        follow_redirects=False,
    )  # fmt: skip
    assert saved.status_code == 303
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        unit = db.get(OrgUnit, w.a.commune)
        assert unit is not None and (unit.selftest_daily_at, unit.selftest_volume) == ("11:30", 30)
    after = tech.get(saved.headers["location"]).text
    assert "Đang áp dụng: 11:30, âm lượng 30% (do Xã An Bình đặt)" in after
    off = tech.post(f"/devices/{device_id}/selftest-schedule", data=form | {"daily_at": ""})
    assert off.status_code == 200 and "Chưa đặt lịch tự kiểm tra" in off.text
    # Set above the technician's subtree: in force, but the province is not named.
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        province = db.get(OrgUnit, w.province)
        assert province is not None
        province.selftest_daily_at, province.selftest_volume = "06:15", 20
    above = tech.get(f"/devices/{device_id}").text
    assert "Đang áp dụng: 06:15, âm lượng 20% (do cấp trên đặt)" in above
    assert "Tỉnh Thử" not in above


def test_the_trend_places_runs_in_the_twelve_weeks() -> None:
    now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    entries = [
        {"at": now - timedelta(weeks=12), "code": "ok", "level_db": -30.0},
        {"at": now - timedelta(weeks=6), "code": "level_low", "level_db": -40.0},
        {"at": now, "code": "ok", "level_db": -30.0},
        {"at": now + timedelta(days=1), "code": "ok", "level_db": -30.0},  # from the future
        {"at": "not a time", "code": "ok", "level_db": float("nan")},
    ]
    drawn = trend(entries, now=now, baseline_db=-30.0, label=str)
    assert drawn is not None and drawn.measured == 3
    xs = [m.x for m in drawn.marks]
    assert xs[0] == drawn.left and xs[-1] == drawn.right_x and xs[0] < xs[1] < xs[2]
    ys = [m.y for m in drawn.marks]
    assert ys[1] > ys[0] == ys[2] == drawn.baseline_y  # quieter is lower
    assert [m.tone for m in drawn.marks] == ["ok", "fail", "ok"]
    assert trend([], now=now, baseline_db=None, label=str) is None


def test_every_code_the_page_shows_has_words_in_both_languages() -> None:
    keys = [f"selftest.code.{code}" for code in DEVICE_EVENT_CODES["selftest"]]
    keys += [
        f"events.{kind}.{c}" for kind in ("silence", "power") for c in DEVICE_EVENT_CODES[kind]
    ]
    keys += [f"power.{state}" for state in ("mains", "battery", "battery_low", "unknown")]
    keys += [
        f"health.{f}" for f in ("selftest_failed", "on_battery", "battery_low", "output_silent")
    ]
    assert [k for k in keys if k not in CATALOGUE] == []
    assert CATALOGUE["health.on_battery"][0] == "Mất điện lưới – chạy ắc quy"
