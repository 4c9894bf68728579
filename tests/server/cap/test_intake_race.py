"""Two posts of one CAP alert at the same moment: one bulletin, the other answered as a repeat.

Real concurrency against the real database (SQLite; PostgreSQL when configured): both
requests run at once in the server's threads. The alert's audio resource is served by a
local HTTP server that answers only once both requests asked for it, so both are past the
first look for an earlier message before either writes anything.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import func, select

from server.audit.models import AuditEntry
from server.bulletins.models import Bulletin
from server.cap.models import CapMessage
from server.clips.models import Clip
from server.programmes.models import Programme
from tests.server.cap.world import Served, World, cap, db_of, file_server, undispatched
from tests.server.test_permissions_fixtures import tone_wav


def _both_at_once(world: World, xml: str) -> list[Any]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda _: world.post(xml), range(2)))


def _one_of_each(world: World, answers: list[Any]) -> int:
    """201 for one, 200 (a repeat of the same bulletin) for the other; the bulletin's id."""
    first, again = sorted(answers, key=lambda r: -r.status_code)
    assert (first.status_code, again.status_code) == (201, 200), [r.text for r in answers]
    assert not first.json()["repeat"] and again.json()["repeat"]
    # The winner's events (its emergency's replan) left with its commit, not later.
    assert undispatched(world.stack) == 0
    bulletin_id = int(first.json()["bulletin_id"])
    assert again.json()["bulletin_id"] == bulletin_id
    assert again.json()["message_id"] == first.json()["message_id"]
    with db_of(world.stack) as db:
        played = db.scalar(
            select(func.count(Programme.id)).where(Programme.bulletin_id == bulletin_id)
        )
        assert played == 1  # one commune, one emergency programme: nothing played twice
        received = db.scalar(
            select(func.count(AuditEntry.id)).where(
                AuditEntry.action == "cap.receive",
                AuditEntry.object_id == str(first.json()["message_id"]),
            )
        )
        assert received == 1
    return bulletin_id


def test_two_posts_racing_past_the_first_check_make_one_bulletin(world: World) -> None:
    gate = threading.Barrier(2)
    files = {"/tone.wav": Served(tone_wav(1.0, 611.0), "audio/wav", gate=gate)}
    settings = world.stack.settings
    with file_server(files) as (base, hits):
        settings.cap_resource_allowed_hosts = "127.0.0.1"
        try:
            xml = cap("RACE-1", resource=("audio/wav", f"{base}/tone.wav"))
            answers = _both_at_once(world, xml)
        finally:
            settings.cap_resource_allowed_hosts = ""
    assert hits["/tone.wav"] == 2 and not gate.broken  # both fetched it, at the same time
    _one_of_each(world, answers)
    assert world.count(Bulletin) == 1 and world.count(CapMessage) == 1
    assert world.count(Clip) == 1  # the same audio: one clip, the loser's rolled back or reused


def test_two_text_only_posts_at_once_make_one_bulletin(world: World) -> None:
    for n in range(2):
        _one_of_each(world, _both_at_once(world, cap(f"RACE-TTS-{n}")))
    assert world.count(Bulletin) == 2 and world.count(CapMessage) == 2
