"""Issue 16's walk-through on a phone: a citizen sends feedback from the commune's public page,
the commune's operator answers it in the console, the citizen reads the answer by its code."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import PHONE, LiveServer, shot, signed_in

CODE = "BROWSER-WALK-A"
CATEGORY = "Môi trường"
CONTENT = "Bãi rác tự phát ở cuối đường thôn Đông bốc mùi, đề nghị xã cho thu gom."
NAME = "Hoàng Thị Xuân Walk"
PHONE_NUMBER = "0912 345 678"
STORED_PHONE = "0912345678"  # as the server keeps it (spaces dropped)
ANSWER = "Xã đã giao tổ vệ sinh thu gom bãi rác trong tuần này. Cảm ơn bà con đã phản ánh."


def _citizen(chromium: Any, live: LiveServer) -> Any:
    """A fresh phone browser, signed in to nothing."""
    context = chromium.new_context(
        viewport=PHONE, base_url=live.base_url, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh"
    )
    context.set_default_timeout(20_000)
    return context.new_page()


def _private_nowhere(page: Any) -> None:
    """The sender's name and phone are on no public page."""
    html = page.content()
    assert NAME not in html and PHONE_NUMBER not in html and STORED_PHONE not in html


def _commune_a(live: LiveServer) -> None:
    """Commune A gets a public code and a category (a repeated run finds them there)."""
    unit = live.api("GET", f"/org-units/{live.ids['a_commune']}", expect=200)
    if unit.get("code") != CODE:
        live.api("PATCH", f"/org-units/{live.ids['a_commune']}", {"code": CODE}, expect=200)
    body = {"org_unit_id": live.ids["a_commune"], "name": CATEGORY, "due_days": 7}
    r = live.admin.post("/api/v1/feedback/categories", json=body)
    assert r.status_code in (201, 409), r.text


def test_citizen_sends_feedback_operator_answers_citizen_reads_it_by_code(
    chromium: Any, live_server: LiveServer
) -> None:
    live = live_server
    _commune_a(live)

    # The citizen: the commune's public page, its link to the form, the form.
    page = _citizen(chromium, live)
    page.goto(f"/p/{CODE}")
    assert page.inner_text("h1") == "Bản tin Xã An Bình"
    _private_nowhere(page)
    page.click("footer a[href$='/phan-anh']")
    page.wait_for_url(f"**/p/{CODE}/phan-anh")
    page.select_option("#fb-category", label=CATEGORY)
    page.fill("#fb-content", CONTENT)
    page.fill("#fb-name", NAME)
    page.fill("#fb-phone", PHONE_NUMBER)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "issue16-walk-1-feedback-form-phone")
    page.click("#fb-form button[type=submit]")
    page.wait_for_selector("#fb-tracking-code")
    assert page.inner_text("h1") == "Đã gửi phản ánh"
    code = page.inner_text("#fb-tracking-code").strip()
    assert code and code.isalnum(), code
    assert page.inner_text("#fb-status") == "Đã tiếp nhận"
    _private_nowhere(page)
    shot(page, "issue16-walk-2-tracking-code-phone")
    page.context.close()

    # The commune's operator (feedback:handle): the queue, the case, the answer published.
    staff = signed_in(chromium, live, "trucphat")
    staff.goto("/feedback")
    row = staff.locator("#fb-list tr", has_text=code)
    assert CATEGORY in row.inner_text()
    row.locator(f"a:has-text('{code}')").click()
    staff.wait_for_url("**/feedback/*")
    assert CONTENT in staff.inner_text("#fb-content")
    person = staff.inner_text("#fb-person")
    assert NAME in person and STORED_PHONE in person  # staff of the handling unit see them
    staff.fill("#fb-answer-form textarea[name=answer]", ANSWER)
    staff.check("#fb-answer-form input[name=publish]")
    staff.click("#fb-answer-form button[type=submit]")
    staff.wait_for_url("**/feedback/*?done=answer")
    assert ANSWER in staff.inner_text("#fb-answer")
    assert staff.inner_text("#fb-status").startswith("Đã trả lời")
    shot(staff, "issue16-walk-3-console-answer-phone")
    staff.context.close()

    # The citizen again, in a new browser: the tracking code finds the answer.
    page = _citizen(chromium, live)
    page.goto(f"/p/{CODE}/phan-anh")
    page.fill("#fb-code", code.lower())  # as typed on a phone keyboard
    page.click("#fb-lookup button[type=submit]")
    page.wait_for_url(f"**/p/{CODE}/phan-anh/{code}")
    assert page.inner_text("#fb-tracking-code").strip() == code
    assert page.inner_text("#fb-status") == "Đã trả lời"
    assert page.inner_text("#fb-answer") == ANSWER
    assert CONTENT not in page.content()  # the status page shows the answer, not the report
    _private_nowhere(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "issue16-walk-4-answer-by-code-phone")
    for path in (f"/p/{CODE}", f"/p/{CODE}/feed.xml", f"/p/{CODE}/phan-anh"):
        page.goto(path)
        _private_nowhere(page)
    page.context.close()
