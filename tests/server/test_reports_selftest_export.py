"""Issue 17: the summary's CSV and XLSX carry the clusters whose latest self-test failed."""

from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from tests.server.test_programmes_fixtures import NOW, World, sqlite_world, world
from tests.server.test_selftest_api import Cluster, H, _get, _test

__all__ = ["sqlite_world", "world"]  # fixtures, imported for pytest


def test_the_csv_and_xlsx_carry_the_failed_self_tests(world: World) -> None:
    w = world
    province = w.org("Tỉnh Xuất Báo Cáo")
    c1, c2 = w.org("Xã Một", parent_id=province), w.org("Xã Hai", parent_id=province)
    failing, mended, healthy = Cluster(w, c1), Cluster(w, c1), Cluster(w, c2)
    failing.send(_test(1, NOW - 2 * H, "ok", -30.0), _test(2, NOW - H, "silent", -90.0))
    mended.send(_test(1, NOW - 2 * H, "distorted", -30.0), _test(2, NOW - H, "ok", -30.0))
    healthy.send(_test(1, NOW - H, "ok", -30.0))
    r = _get(w, "/reports/summary", org_unit_id=province, period="2031-03", format="csv")
    assert r.status_code == 200, r.text
    lines = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert {line["org_unit_id"]: line["selftest_failed"] for line in lines} == {
        str(c1): "1",
        str(c2): "0",
        str(province): "1",
    }
    header = next(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert header.index("selftest_failed") == header.index("availability.longest_outage_s") + 1

    r = _get(w, "/reports/summary", org_unit_id=province, period="2031-03", format="xlsx")
    assert r.status_code == 200
    sheet = load_workbook(io.BytesIO(r.content))["Thiết bị"]
    assert sheet.cell(row=1, column=sheet.max_column).value == "Cụm loa tự kiểm tra lỗi"
    cells = {row[0]: row[-1] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert cells == {c1: 1, c2: 0, province: 1}
    assert isinstance(cells[province], int)
