"""An answer read on the horns: a pending programme of the case's unit with a TTS clip and the
display text, never the citizen's name or phone; zones and times checked; the console form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.clips.models import Clip
from server.console.catalogue import CATALOGUE
from server.console.feedback_pages import ACTIONS
from server.feedback.broadcast import public_text
from server.feedback.models import STATUSES, FeedbackCase
from server.programmes.models import Programme
from tests.server.test_console import csrf_of, sign_in
from tests.server.test_feedback import World
from tests.server.test_feedback import world as world  # the fixture, re-exported

NAME, PHONE = "Trần Văn C", "0912345678"
ANSWER = "Chào ông Trần Văn C (0912 345 678): đèn đường thôn 2 đã được thay chiều nay."


@pytest.fixture
def zones(world: World) -> tuple[int, int, int]:
    """A zone in commune A, one in its village, one in commune B."""
    return world.w.zone(world.a), world.w.zone(world.village), world.w.zone(world.b)


def _answer(world: World, cid: int, headers: Any = None, **extra: Any) -> Any:
    body = {"answer": ANSWER, "publish": True, "broadcast": True} | extra
    return world.call("POST", f"/feedback/{cid}/answer", body, headers=headers)


def test_broadcast_makes_a_pending_programme_without_personal_data(
    world: World, zones: tuple[int, int, int]
) -> None:
    code = world.case()
    cid = world.case_id(code)
    before = datetime.now(UTC)
    r = _answer(world, cid)
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["status"] == "answered" and case["programme_id"]
    assert [s["action"] for s in case["steps"]][-2:] == ["answer", "broadcast"]
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        p = db.get(Programme, case["programme_id"])
        assert p.status == "submitted" and p.priority == "normal"
        assert p.org_unit_id == world.a
        assert sorted(z.id for z in p.zones) == sorted(zones[:2])  # not commune B's
        assert p.title.startswith(f"Trả lời phản ánh {code}")
        assert p.start is not None and p.start >= before + timedelta(minutes=5)
        assert p.start.second == 0 and p.start - before < timedelta(minutes=7)
        assert "đèn đường thôn 2" in p.display_text
        [clip] = [db.get(Clip, pc.clip_id) for pc in p.clips]
        assert clip.source == "tts" and clip.duration_s > 0
        for text in (p.title, p.description, p.display_text, clip.notes, clip.title):
            assert NAME not in text and "912" not in text.replace(" ", ""), text
        assert db.get(FeedbackCase, cid).programme_id == p.id
        actions = list(
            db.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.object_type == "feedback_case")
                .where(AuditEntry.object_id == str(cid))
            )
        )
        assert actions[-2:] == ["feedback.answer", "feedback.broadcast"]
    # The staff answer itself is kept as written; the public page shows it, the horns do not.
    assert world.call("GET", f"/feedback/{cid}").json()["answer"] == ANSWER


def test_broadcast_zones_and_time_are_checked(world: World, zones: tuple[int, int, int]) -> None:
    cid = world.case_id(world.case())
    foreign = _answer(world, cid, zone_ids=[zones[2]])
    missing = _answer(world, cid, zone_ids=[2000000000])
    assert foreign.status_code == missing.status_code == 422
    said = foreign.json()["detail"].replace(str(zones[2]), "N")
    assert said == missing.json()["detail"].replace("2000000000", "N")
    now = datetime.now(UTC)
    for at in (now - timedelta(hours=1), now + timedelta(days=31)):
        r = _answer(world, cid, broadcast_at=at.isoformat())
        assert r.status_code == 422 and "broadcast_at" in r.json()["detail"], r.text
    naive = _answer(world, cid, broadcast_at="2031-03-01T05:00:00")
    assert naive.status_code == 422
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        assert db.get(FeedbackCase, cid).programme_id is None  # nothing half-done
        assert db.scalar(select(Programme.id)) is None
    at = (now + timedelta(days=2)).replace(second=0, microsecond=0)
    r = _answer(world, cid, zone_ids=[zones[1]], broadcast_at=at.isoformat())
    assert r.status_code == 200, r.text
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        p = db.get(Programme, r.json()["programme_id"])
        assert p.start == at and [z.id for z in p.zones] == [zones[1]]


def test_second_broadcast_moves_past_the_first(world: World, zones: tuple[int, int, int]) -> None:
    first = _answer(world, world.case_id(world.case())).json()["programme_id"]
    second = _answer(world, world.case_id(world.case())).json()["programme_id"]
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        a, b = db.get(Programme, first), db.get(Programme, second)
        length = timedelta(seconds=sum(pc.clip.duration_s for pc in a.clips))
        assert b.start >= a.start + length and b.status == "submitted"


def test_a_caller_who_may_approve_gets_it_approved(
    world: World, zones: tuple[int, int, int]
) -> None:
    cid = world.case_id(world.case())
    r = _answer(world, cid, headers=world.w.stack.headers)
    assert r.status_code == 200, r.text
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        assert db.get(Programme, r.json()["programme_id"]).status == "approved"


@pytest.mark.parametrize(
    "body",
    [
        {"answer": "x", "broadcast": "yes please"},
        {"answer": "x", "broadcast": True, "zone_ids": "all"},
        {"answer": "x", "broadcast": True, "zone_ids": []},
        {"answer": "x", "broadcast": True, "zone_ids": list(range(1, 300))},
        {"answer": "x", "broadcast": True, "broadcast_at": "tomorrow"},
        {"answer": "x", "broadcast": True, "broadcast_at": "99999-01-01T00:00:00Z"},
        {"answer": "x", "zone_ids": [1]},
        {"answer": "x", "broadcast": True, "extra": 1},
        [1, 2],
    ],
)
def test_garbage_is_a_422(world: World, body: Any) -> None:
    cid = world.case_id(world.case())
    r = world.call("POST", f"/feedback/{cid}/answer", body)
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_console_checkbox_broadcasts_and_links(world: World, zones: tuple[int, int, int]) -> None:
    cid = world.case_id(world.case())
    browser = sign_in(world.w, "op-a")
    page = browser.get(f"/feedback/{cid}")
    assert "Phát câu trả lời trên loa" in page.text and "Công khai" in page.text
    form = {"csrf": csrf_of(browser, f"/feedback/{cid}"), "answer": ANSWER, "broadcast": "true"}
    r = browser.post(f"/feedback/{cid}/answer", data=form, follow_redirects=True)
    assert r.status_code == 200, r.text
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        pid = db.get(FeedbackCase, cid).programme_id
    assert pid is not None and f'href="/programmes/{pid}"' in r.text


def test_public_text_drops_name_and_phone_in_any_spelling() -> None:
    case = FeedbackCase(name=NAME, phone=PHONE)
    text = public_text(case, "Gửi trần  văn c, số +84 912.345.678 hoặc 0912345678; hotline 1022.")
    assert "trần" not in text.lower() and "912" not in text and "hotline 1022" in text


def test_feedback_pages_speak_english_from_the_catalogue(world: World) -> None:
    cid = world.case_id(world.case())
    browser = sign_in(world.w, "op-a")
    browser.get("/lang/en")
    raw_key = re.compile(r">\s*([a-z_]+\.[a-z_]+(?:\.[a-z_]+)?)\s*<")
    queue, case = browser.get("/feedback").text, browser.get(f"/feedback/{cid}").text
    assert "Citizen feedback" in queue and "New: 1" in queue and "Received" in queue
    assert "Broadcast the answer on the horns" in case and "Publish the answer" in case
    assert "Phát câu trả lời" not in case and "Nội dung" not in queue
    assert not raw_key.findall(queue) and not raw_key.findall(case)
    assert all(f"feedback.status.{s}" in CATALOGUE for s in STATUSES)
    assert all(f"feedback.step.{a}" in CATALOGUE for a in ACTIONS)
