"""Feedback figures per unit and period: counts, on time, overdue, median hours to answer; the
period's bounds, reach, and the same figures in the summary report, its CSV, XLSX and page."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook

from server.feedback.models import ANSWERED, CLOSED, NEW, FeedbackCase
from tests.server.test_console import sign_in
from tests.server.test_permissions_fixtures import PermWorld
from tests.server.test_reports_summary import Clock

SINCE = datetime(2031, 2, 28, 17, 0, tzinfo=UTC)  # 1 March 2031 00:00 in Vietnam
UNTIL = datetime(2031, 3, 31, 17, 0, tzinfo=UTC)  # 1 April 2031 00:00 in Vietnam
FIELDS = ("received", "handled", "handled_on_time", "overdue_open", "median_hours_to_answer")


def _local(month: int, day: int, hour: int = 0) -> datetime:
    """A local wall time of 2031 as UTC."""
    return datetime(2031, month, day, hour, tzinfo=UTC) - timedelta(hours=7)


def _case(w: PermWorld, unit: int, created: datetime, due: datetime, **marks: Any) -> None:
    status = CLOSED if marks.get("closed_at") else ANSWERED if marks.get("answered_at") else NEW
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        db.add(
            FeedbackCase(
                tracking_code=f"RPT{w.next():05d}", org_unit_id=unit, received_by_unit_id=unit,
                content="Đèn đường hỏng", name="Trần Văn C", phone="0912345678", status=status,
                created_at=created, updated_at=created, due_at=due, **marks,
            )
        )  # fmt: skip


@pytest.fixture
def seeded(perm_world: PermWorld) -> PermWorld:
    """March 2031: cases in commune A, its village and commune B; the clock in April."""
    w = perm_world
    assert w.a is not None and w.b is not None
    w.stack.app.state.clock = Clock(datetime(2031, 4, 10, tzinfo=UTC))
    a, village, b = w.a.commune, w.a.village, w.b.commune
    # A: answered in 12 h on time; closed late without an answer; never handled (overdue).
    _case(w, a, _local(3, 2), _local(3, 12), answered_at=_local(3, 2, 12))
    _case(w, a, _local(3, 5), _local(3, 15), closed_at=_local(3, 20))
    _case(w, a, _local(3, 10), _local(3, 20))
    # The village: received in February, answered late in March (288 h); one still in time.
    _case(w, village, _local(2, 20), _local(3, 2), answered_at=_local(3, 4))
    _case(w, village, _local(3, 25), _local(4, 5))
    # B: answered in 2 h.
    _case(w, b, _local(3, 1, 8), _local(3, 11), answered_at=_local(3, 1, 10))
    # Outside March altogether.
    _case(w, a, _local(4, 2), _local(4, 12))
    _case(w, a, _local(1, 2), _local(1, 12), answered_at=_local(1, 5), closed_at=_local(1, 6))
    return w


def _figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row["feedback"][f] for f in FIELDS)


def _report(w: PermWorld, unit: int, headers: Any = None, **params: Any) -> Any:
    query = {"org_unit_id": unit, "since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    return w.client.get(
        "/api/v1/reports/feedback", params=query | params, headers=headers or w.stack.headers
    )


def test_figures_per_unit_and_total(seeded: PermWorld) -> None:
    w = seeded
    assert w.a is not None and w.b is not None
    r = _report(w, w.province)
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {row["org_unit_id"]: _figures(row) for row in body["rows"]}
    assert rows == {
        w.a.commune: (3, 2, 1, 1, 12.0),
        w.a.village: (1, 1, 0, 0, 288.0),
        w.b.commune: (1, 1, 1, 0, 2.0),
    }
    assert body["total"]["org_unit_id"] == w.province
    assert _figures(body["total"]) == (5, 4, 2, 1, 12.0)
    assert "Trần" not in r.text and "0912" not in r.text
    # A commune's own report: itself first, then its village; B is not part of it.
    body = _report(w, w.a.commune).json()
    assert [row["org_unit_id"] for row in body["rows"]] == [w.a.commune, w.a.village]
    assert _figures(body["total"]) == (4, 3, 1, 1, 150.0)


def test_overdue_is_a_snapshot_at_now_within_the_period(seeded: PermWorld) -> None:
    w = seeded
    assert w.a is not None
    w.stack.app.state.clock = Clock(_local(3, 16))
    body = _report(w, w.a.commune).json()
    own = next(r for r in body["rows"] if r["org_unit_id"] == w.a.commune)
    # Due on the 15th and closed only on the 20th: overdue on the 16th; the 20th's not yet.
    assert own["feedback"]["overdue_open"] == 1


def test_an_empty_period_has_zeros_and_no_median(seeded: PermWorld) -> None:
    w = seeded
    since = datetime(2030, 6, 1, tzinfo=UTC)
    body = _report(w, w.province, since=since.isoformat(), until=(since + timedelta(days=30))
                   .isoformat()).json()  # fmt: skip
    assert body["rows"] == [] and _figures(body["total"]) == (0, 0, 0, 0, None)


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2031-03-01T00:00:00"},  # no time zone
        {"since": "yesterday"},
        {"until": SINCE.isoformat()},  # empty
        {"until": (SINCE + timedelta(days=367)).isoformat()},  # too long
        {"since": "99999-01-01T00:00:00Z"},
        {"org_unit_id": "x"},
        {"org_unit_id": 0},
    ],
)
def test_bad_periods_are_422(seeded: PermWorld, params: dict[str, Any]) -> None:
    r = _report(seeded, seeded.province, **params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_units_outside_reach_are_404(seeded: PermWorld) -> None:
    w = seeded
    assert w.a is not None and w.b is not None
    op = w.headers("operator")
    assert _report(w, w.a.commune, headers=op).status_code == 200
    foreign, province = _report(w, w.b.commune, headers=op), _report(w, w.province, headers=op)
    missing = _report(w, 2000000000, headers=op)
    assert foreign.status_code == province.status_code == missing.status_code == 404
    assert w.client.get("/api/v1/reports/feedback").status_code == 401


def test_summary_report_csv_xlsx_and_page_carry_feedback(seeded: PermWorld) -> None:
    w = seeded
    assert w.a is not None and w.b is not None
    params = {"org_unit_id": w.province, "period": "2031-03"}
    body = w.client.get("/api/v1/reports/summary", params=params, headers=w.stack.headers).json()
    rows = {row["org_unit_id"]: _figures(row) for row in body["rows"]}
    assert rows == {w.a.commune: (4, 3, 1, 1, 150.0), w.b.commune: (1, 1, 1, 0, 2.0)}
    assert _figures(body["total"]) == (5, 4, 2, 1, 12.0)
    assert body["total"]["programmes"]["planned"] == 0  # the other sections are still there

    r = w.client.get(
        "/api/v1/reports/summary", params=params | {"format": "csv"}, headers=w.stack.headers
    )
    lines = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    total = lines[-1]
    assert total["row"] == "total" and total["feedback.received"] == "5"
    assert total["feedback.handled_on_time"] == "2"
    assert total["feedback.median_hours_to_answer"] == "12.0"
    assert "programmes.planned" in total

    r = w.client.get(
        "/api/v1/reports/summary", params=params | {"format": "xlsx"}, headers=w.stack.headers
    )
    sheet = load_workbook(io.BytesIO(r.content))["Phản ánh, kiến nghị"]
    assert [c.value for c in sheet[1]][3:] == [
        "Phản ánh nhận được", "Đã xử lý (trả lời hoặc kết thúc)", "Xử lý đúng hạn",
        "Quá hạn chưa xử lý", "Thời gian trả lời, trung vị (giờ)",
    ]  # fmt: skip
    cells = {row[0]: row for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert cells[w.province][3:] == (5, 4, 2, 1, 12.0)
    assert cells[w.a.commune][3:] == (4, 3, 1, 1, 150.0)

    browser = sign_in(w, "viewer-a")
    page = browser.get(f"/reports/summary?org_unit_id={w.a.commune}&period=2031-03")
    assert page.status_code == 200
    assert "Phản ánh nhận được" in page.text and 'id="chart-feedback"' in page.text
    assert "Thời gian trả lời (trung vị)" in page.text and "150.0" in page.text


def test_the_default_window_is_the_30_days_up_to_now(seeded: PermWorld) -> None:
    w = seeded
    r = w.client.get(
        "/api/v1/reports/feedback", params={"org_unit_id": w.province}, headers=w.stack.headers
    )
    body = r.json()
    assert r.status_code == 200 and body["until"].startswith("2031-04-10T00:00:00")
    assert body["since"].startswith("2031-03-11T00:00:00")
    assert body["total"]["feedback"]["received"] == 2  # the 25 March and 2 April cases
