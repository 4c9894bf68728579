"""The summary as flat CSV and as XLSX (one sheet per section, Vietnamese headers)."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook

from server.reports.figures import REASONS
from server.reports.schemas import SummaryOut, SummaryRow

ORIGINS = ("own", "bulletin", "relay", "live", "emergency")
# Section -> (sheet title, [(field path, Vietnamese header)]). Paths index the section's JSON;
# a path starting with "/" indexes the row's own (e.g. "/selftest_failed"), in CSV without
# the section prefix.
SECTIONS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "broadcast",
        "Thời lượng phát",
        [("minutes", "Tổng số phút phát (phút × cụm loa)")]
        + [
            (f"by_origin.{o}", f"Phút: {label}")
            for o, label in zip(
                ORIGINS,
                (
                    "chương trình tự sản xuất",
                    "bản tin cấp trên",
                    "tiếp âm",
                    "trực tiếp",
                    "khẩn cấp",
                ),
                strict=True,
            )
        ]
        + [
            ("relay_fallback", "Phút: phát dự phòng thay tiếp âm"),
            ("relay_silent", "Phút: tiếp âm không có tiếng"),
            ("relay_items.relayed", "Lượt tiếp âm: nghe đài"),
            ("relay_items.fallback", "Lượt tiếp âm: phát dự phòng"),
            ("relay_items.mixed", "Lượt tiếp âm: cả hai"),
        ],
    ),
    (
        "programmes",
        "Chương trình",
        [
            ("planned", "Kế hoạch (lượt × cụm loa)"),
            ("reported", "Thiết bị báo cáo"),
            ("played", "Đã phát"),
            ("on_time", "Phát đúng giờ (lệch ≤ 1 giây)"),
            ("not_played", "Không phát"),
            ("missed", "Bỏ lỡ"),
            ("preempted", "Bị ngắt bởi ưu tiên cao hơn"),
            ("failed", "Lỗi khi phát"),
            ("planned_not_reported", "Có kế hoạch, thiết bị chưa báo cáo"),
            ("reported_not_planned", "Thiết bị báo cáo, không có trong kế hoạch"),
        ]
        + [
            (f"not_played_reasons.{r}", f"Lý do: {label}")
            for r, label in zip(
                (*REASONS, "no_report"),
                (
                    "bị ngắt",
                    "thiếu tệp âm thanh",
                    "thiết bị không chạy",
                    "đang phát trực tiếp",
                    "hết khung giờ",
                    "đang tắt tiếng",
                    "khác",
                    "không có báo cáo",
                ),
                strict=True,
            )
        ],
    ),
    (
        "bulletins",
        "Bản tin cấp trên",
        [
            ("delivered", "Đã nhận"),
            ("accepted", "Đã chấp nhận"),
            ("declined", "Từ chối"),
            ("played", "Đã phát"),
            ("expired", "Hết hạn"),
            ("withdrawn", "Bị thu hồi"),
            ("played_without_report", "Ghi đã phát, thiết bị chưa báo cáo"),
            ("priority", "Bản tin ưu tiên"),
            ("priority_played_in_validity", "Ưu tiên phát trong thời hạn"),
            ("essential", "Thông tin thiết yếu"),
            ("essential_reached", "Thiết yếu đến mọi cụm loa"),
            ("essential_reached_share", "Tỷ lệ thiết yếu đến mọi cụm loa"),
        ],
    ),
    (
        "emergencies",
        "Khẩn cấp",
        [
            ("programmes", "Số phát khẩn cấp"),
            ("clusters_targeted", "Cụm loa nhắm tới"),
            ("clusters_reached", "Cụm loa đã phát"),
            ("p95_time_to_audible_s", "Thời gian đến khi nghe được, p95 (giây)"),
        ],
    ),
    (
        "availability",
        "Thiết bị",
        [
            ("clusters", "Số cụm loa"),
            ("online_share", "Tỷ lệ thời gian trực tuyến"),
            ("faulty_clusters", "Cụm loa lỗi (trực tuyến < 90 %)"),
            ("longest_outage_s", "Mất kết nối lâu nhất (giây)"),
            ("/selftest_failed", "Cụm loa tự kiểm tra lỗi"),
        ],
    ),
    (
        "feedback",
        "Phản ánh, kiến nghị",
        [
            ("received", "Phản ánh nhận được"),
            ("handled", "Đã xử lý (trả lời hoặc kết thúc)"),
            ("handled_on_time", "Xử lý đúng hạn"),
            ("overdue_open", "Quá hạn chưa xử lý"),
            ("median_hours_to_answer", "Thời gian trả lời, trung vị (giờ)"),
        ],
    ),
]
UNIT_HEADERS = ["Mã đơn vị", "Đơn vị", "Cấp"]
TOTAL_LABEL = "Tổng cộng"


def _get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _value(row: dict[str, Any], section: str, path: str) -> Any:
    """A field of the row's section, or of the row itself for a "/" path."""
    return _get(row, path[1:]) if path.startswith("/") else _get(row[section], path)


def _column(section: str, path: str) -> str:
    return path[1:] if path.startswith("/") else f"{section}.{path}"


def _rows(report: SummaryOut) -> list[tuple[str, SummaryRow]]:
    return [("child", r) for r in report.rows] + [("total", report.total)]


def summary_csv(report: SummaryOut) -> str:
    """One line per child unit and one for the total; columns are section.field."""
    topics = sorted({t for _, r in _rows(report) for t in r.broadcast.by_topic})
    columns = [_column(s, path) for s, _, fields in SECTIONS for path, _ in fields]
    columns += [f"broadcast.by_topic.{t or '(none)'}" for t in topics]
    out = io.StringIO()
    out.write("\ufeff")  # spreadsheet programs then read the Vietnamese names correctly
    writer = csv.writer(out)
    writer.writerow(["schema_version", "period", "row", "org_unit_id", "name", "kind", *columns])
    for role, row in _rows(report):
        data = row.model_dump()
        values = [_value(data, s, path) for s, _, fields in SECTIONS for path, _ in fields]
        values += [row.broadcast.by_topic.get(t, 0.0) for t in topics]
        cells = ["" if v is None else v for v in values]
        head = [report.schema_version, report.period.label, role, row.org_unit_id, row.name]
        writer.writerow([*head, row.kind, *cells])
    return out.getvalue()


def summary_xlsx(report: SummaryOut) -> bytes:
    """A workbook: a sheet per section, header row in Vietnamese, numbers stored as numbers."""
    book = Workbook()
    info = book.active
    assert info is not None
    info.title = "Thông tin"
    info.append(["Báo cáo", "Tổng hợp phát thanh cơ sở"])
    info.append(["Phiên bản lược đồ", report.schema_version])
    info.append(["Đơn vị", str(report.org_unit["name"])])
    info.append(["Kỳ báo cáo", report.period.label])
    info.append(["Từ ngày", report.period.first_day])
    info.append(["Đến ngày", report.period.last_day])
    for section, title, fields in SECTIONS:
        sheet = book.create_sheet(title)
        sheet.append(UNIT_HEADERS + [header for _, header in fields])
        for role, row in _rows(report):
            data = row.model_dump()
            name = TOTAL_LABEL if role == "total" else row.name
            values = [_value(data, section, p) for p, _ in fields]
            sheet.append([row.org_unit_id, name, row.kind, *values])
    topics = sorted({t for _, r in _rows(report) for t in r.broadcast.by_topic})
    sheet = book.create_sheet("Theo chủ đề")
    sheet.append(UNIT_HEADERS + [t or "(không có chủ đề)" for t in topics])
    for role, row in _rows(report):
        name = TOTAL_LABEL if role == "total" else row.name
        by_topic = row.broadcast.by_topic
        sheet.append([row.org_unit_id, name, row.kind] + [by_topic.get(t, 0.0) for t in topics])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
