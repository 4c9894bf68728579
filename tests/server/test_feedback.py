"""Citizen feedback, the staff side: the queue in reach, assign/answer/forward/close with
their audit rows, what the public then sees, and the retention of personal data."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from loa_testkit.stack import Stack
from server.audit.models import AuditEntry
from server.db import utcnow
from server.feedback.models import FeedbackCase
from server.feedback.retention import erase_personal_data
from tests.server.test_console import csrf_of, sign_in
from tests.server.test_permissions_fixtures import PASSWORD, PermWorld

SCRIPT = "<script>alert(1)</script>"


@dataclass
class World:
    """Communes A (with a village) and B, an operator in each, a technician in A."""

    w: PermWorld
    a: int
    village: int
    b: int
    op_a: dict[str, str]
    op_b: dict[str, str]
    tech_a: dict[str, str]
    op_a_id: int

    def call(self, method: str, path: str, body: Any = None, headers: Any = None) -> Any:
        return self.w.client.request(
            method, f"/api/v1{path}", json=body, headers=headers or self.op_a
        )

    def case(self, code: str = "XA01", **fields: Any) -> str:
        body = {"org_unit_code": code, "content": "Đèn đường hỏng", "name": "Trần Văn C",
                "phone": "0912345678"} | fields  # fmt: skip
        r = self.w.client.post("/api/v1/public/feedback", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["tracking_code"])

    def case_id(self, code: str) -> int:
        with self.w.stack.session() as db:  # type: ignore[no-untyped-call]
            return int(db.scalar(select(FeedbackCase.id).where(FeedbackCase.tracking_code == code)))


@pytest.fixture
def world(api: Stack) -> Iterator[World]:
    api.settings.feedback_per_address = 100
    w = PermWorld(stack=api)
    prov = int(
        w.admin("POST", "/org-units", {"name": "Tỉnh", "kind": "province"}, expect=201)["id"]
    )
    a, b = w.org_unit(prov, kind="commune"), w.org_unit(prov, kind="commune")
    village = w.org_unit(a)
    w.admin("PATCH", f"/org-units/{a}", {"code": "XA01"}, expect=200)
    w.admin("PATCH", f"/org-units/{b}", {"code": "XB02"}, expect=200)
    heads, ids = [], []
    for name, role, unit in (("op-a", "operator", a), ("op-b", "operator", b),
                             ("tech-a", "technician", a)):  # fmt: skip
        body = {"username": name, "password": PASSWORD, "role": role, "org_unit_id": unit}
        ids.append(int(w.admin("POST", "/users", body, expect=201)["id"]))
        heads.append({"Authorization": f"Bearer {w.sign_in(name)}"})
    yield World(w, a, village, b, heads[0], heads[1], heads[2], ids[0])


def _audit_actions(stack: Stack, case_id: int) -> list[str]:
    with stack.session() as db:  # type: ignore[no-untyped-call]
        return list(
            db.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.object_type == "feedback_case")
                .where(AuditEntry.object_id == str(case_id))
                .order_by(AuditEntry.id)
            )
        )


def test_queue_is_in_reach_and_technicians_have_none(world: World) -> None:
    code_a, code_b = world.case(), world.case("XB02")
    page = world.call("GET", "/feedback").json()
    assert [c["tracking_code"] for c in page["items"]] == [code_a]
    assert page["new_count"] == 1 and page["overdue_count"] == 0
    other = world.case_id(code_b)
    missing = world.call("GET", "/feedback/2000000000")
    foreign = world.call("GET", f"/feedback/{other}")
    assert foreign.status_code == missing.status_code == 404
    assert world.call("GET", "/feedback", headers=world.tech_a).status_code == 403
    detail = world.call("GET", f"/feedback/{world.case_id(code_a)}").json()
    assert detail["name"] == "Trần Văn C" and detail["phone"] == "0912345678"


def test_assign_answer_forward_close_each_audited(world: World) -> None:
    code = world.case(content=SCRIPT)
    cid = world.case_id(code)
    r = world.call("POST", f"/feedback/{cid}/assign", {"user_id": world.op_a_id})
    assert r.status_code == 200 and r.json()["status"] == "assigned"
    r = world.call("POST", f"/feedback/{cid}/answer", {"answer": "Đã thay đèn.", "publish": False})
    assert r.json()["status"] == "answered"
    public = world.w.client.get(f"/api/v1/public/feedback/{code}").json()
    assert public["answer"] is None and public["status_label"] == "Đã trả lời"
    r = world.call("POST", f"/feedback/{cid}/answer", {"answer": "Đã thay đèn.", "publish": True})
    public = world.w.client.get(f"/api/v1/public/feedback/{code}")
    assert public.json()["answer"] == "Đã thay đèn."
    assert "Trần Văn C" not in public.text and "0912345678" not in public.text
    bad = world.call("POST", f"/feedback/{cid}/forward", {"org_unit_id": world.b})
    assert bad.status_code == 422
    r = world.call("POST", f"/feedback/{cid}/forward", {"org_unit_id": world.village})
    assert r.json()["status"] == "forwarded" and r.json()["org_unit_id"] == world.village
    r = world.call("POST", f"/feedback/{cid}/close", {"note": "Xong"})
    assert r.json()["status"] == "closed"
    assert world.call("POST", f"/feedback/{cid}/close", {}).status_code == 409
    steps = [s["action"] for s in r.json()["steps"]]
    assert steps == ["received", "assign", "answer", "answer", "forward", "close"]
    assert _audit_actions(world.w.stack, cid) == [
        "feedback.received", "feedback.assign", "feedback.answer", "feedback.answer",
        "feedback.forward", "feedback.close",
    ]  # fmt: skip
    assert r.json()["content"] == SCRIPT  # stored as text


def test_assign_to_a_foreign_user_is_like_a_missing_one(world: World) -> None:
    cid = world.case_id(world.case())
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        from server.users.models import User

        foreign = int(db.scalar(select(User.id).where(User.username == "op-b")))
    a = world.call("POST", f"/feedback/{cid}/assign", {"user_id": foreign})
    b = world.call("POST", f"/feedback/{cid}/assign", {"user_id": 2000000000})
    assert a.status_code == b.status_code == 422
    assert a.json()["detail"].replace(str(foreign), "N") == b.json()["detail"].replace(
        "2000000000", "N"
    )


def test_overdue_flag_and_filter(world: World) -> None:
    cid = world.case_id(world.case())
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        db.get(FeedbackCase, cid).due_at = utcnow() - timedelta(days=1)
    page = world.call("GET", "/feedback?overdue=true").json()
    assert page["overdue_count"] == 1 and page["items"][0]["overdue"] is True
    assert world.call("GET", "/feedback?overdue=false").json()["items"] == []


def test_categories_bounded_and_in_reach(world: World) -> None:
    body = {"org_unit_id": world.a, "name": "Giao thông", "due_days": 91}
    assert world.call("POST", "/feedback/categories", body).status_code == 422
    body["due_days"] = 7
    cat = world.call("POST", "/feedback/categories", body).json()
    assert world.call("POST", "/feedback/categories", body).status_code == 409
    r = world.call("PATCH", f"/feedback/categories/{cat['id']}", {"enabled": False})
    assert r.json()["enabled"] is False
    foreign = world.call("PATCH", f"/feedback/categories/{cat['id']}", {}, headers=world.op_b)
    assert foreign.status_code == 404


def test_retention_erases_personal_data_of_old_closed_cases(world: World) -> None:
    photo = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(photo, format="PNG")
    fields = {
        "org_unit_code": "XA01",
        "content": "Ảnh",
        "name": "Trần Văn C",
        "phone": "0912345678",
    }
    r = world.w.client.post(
        "/api/v1/public/feedback", data=fields, files={"attachment": ("a.png", photo.getvalue())}
    )
    assert r.status_code == 201, r.text
    old, recent = world.case_id(r.json()["tracking_code"]), world.case_id(world.case())
    got = world.call("GET", f"/feedback/{old}/attachment")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert world.w.client.get(f"/api/v1/feedback/{old}/attachment").status_code == 401
    for cid in (old, recent):
        world.call("POST", f"/feedback/{cid}/close", {})
    now = utcnow()
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        db.get(FeedbackCase, old).closed_at = now - timedelta(days=400)
    root = world.w.stack.settings.data_dir / "feedback"
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        assert erase_personal_data(db, now=now, days=365, root=root) == 1
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        erased, kept = db.get(FeedbackCase, old), db.get(FeedbackCase, recent)
        assert (erased.name, erased.phone) == ("", "") and erased.personal_erased_at
        assert erased.attachment_sha256 is None
        assert kept.name == "Trần Văn C" and kept.personal_erased_at is None
        assert erase_personal_data(db, now=now, days=365, root=root) == 0
    assert not [f for f in root.rglob("*") if f.is_file() and f.parent != root]  # photo gone
    assert world.call("GET", f"/feedback/{old}/attachment").status_code == 404
    detail = world.call("GET", f"/feedback/{old}").json()
    assert detail["personal_erased"] is True and detail["name"] == ""


def test_console_queue_and_case_page_escape_script_and_run_the_steps(world: World) -> None:
    cid = world.case_id(world.case(content=SCRIPT, name=SCRIPT))
    tech = sign_in(world.w, "tech-a")
    assert tech.get("/feedback").status_code == 403
    assert 'href="/feedback"' not in tech.get("/").text
    op = sign_in(world.w, "op-a")
    home = op.get("/").text
    assert 'href="/feedback"' in home and "Phản ánh, kiến nghị" in home
    queue = op.get("/feedback").text
    assert SCRIPT not in queue and "&lt;script&gt;" in queue and 'id="fb-new-count"' in queue
    page = op.get(f"/feedback/{cid}").text
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "0912345678" in page  # staff see the phone
    token = csrf_of(op, f"/feedback/{cid}")
    r = op.post(f"/feedback/{cid}/answer", data={"answer": "x"}, follow_redirects=False)
    assert r.status_code == 403  # no CSRF token
    r = op.post(
        f"/feedback/{cid}/answer",
        data={"csrf": token, "answer": f"Trả lời {SCRIPT}", "publish": "true"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/feedback/{cid}?done=answer"
    r = op.post(f"/feedback/{cid}/close", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    page = op.get(f"/feedback/{cid}").text
    assert "Đã kết thúc" in page and SCRIPT not in page
    r = op.post(f"/feedback/{cid}/close", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 409 and "closed" in r.text
    other = world.case_id(world.case("XB02"))
    assert op.get(f"/feedback/{other}").status_code == 404


def test_public_pages_work_without_javascript_and_never_show_personal_data(world: World) -> None:
    client = world.w.client
    form = client.get("/p/XA01/phan-anh")
    assert form.status_code == 200 and "<script" not in form.text
    assert 'name="website"' in form.text and "fb-trap" in form.text
    assert 'href="/feedback"' not in form.text  # not the console's menu
    fields = {"content": SCRIPT, "name": "Phạm Thị D", "phone": "0987 654 321"}
    r = client.post("/p/XA01/phan-anh", data=fields, files={"attachment": ("", b"", "")})
    assert r.status_code == 201, r.text
    found = re.search(r'id="fb-tracking-code">([A-Z0-9]+)<', r.text)
    assert found is not None
    code = found.group(1)
    cid = world.case_id(code)
    world.call("POST", f"/feedback/{cid}/answer", {"answer": f"Đã xử lý {SCRIPT}", "publish": True})
    page = client.get(f"/p/XA01/phan-anh/{code}")
    assert page.status_code == 200 and "Đã trả lời" in page.text
    assert SCRIPT not in page.text and "Đã xử lý &lt;script&gt;" in page.text
    assert "Phạm Thị D" not in page.text and "0987654321" not in page.text
    r = client.get(f"/p/XA01/phan-anh/tra-cuu?ma={code.lower()}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/p/XA01/phan-anh/{code}"
    wrong, foreign = (
        client.get("/p/XA01/phan-anh/ABCDEFGHJK"),
        client.get(f"/p/XB02/phan-anh/{code}"),
    )
    assert wrong.status_code == foreign.status_code == 404
    trap = client.post("/p/XA01/phan-anh", data={"content": "spam", "website": "x"})
    assert trap.status_code == 400 and 'id="fb-error"' in trap.text
