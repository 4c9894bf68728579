"""CAP Test and Exercise alerts: only logged by default; on the test zone alone when one is set.

LOA_CAP_TEST_ZONE_ID names a zone (here a test cluster of its own in commune A): such an
alert becomes one programme there, marked as a test in its title and in what it says, and
nothing reaches the public's zones, bulletins or deliveries.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from server.bulletins.models import Bulletin, BulletinDelivery
from server.cap.models import CapMessage
from server.clips.models import Clip
from server.programmes.models import Programme
from tests.server.cap.world import Served, World, cap, db_of, file_server, undispatched
from tests.server.test_permissions_fixtures import tone_wav


@pytest.fixture
def test_zone(world: World) -> Iterator[int]:
    """A zone with one test cluster of its own in commune A, set as LOA_CAP_TEST_ZONE_ID."""
    stack = world.stack
    body = {"uid": "cap-test", "name": "Loa thử", "org_unit_id": world.a, "firmware_profile": "sim"}
    r = stack.client.post("/api/v1/devices", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    zone = {"org_unit_id": world.a, "name": "Vùng thử", "device_ids": [r.json()["device"]["id"]]}
    r = stack.client.post("/api/v1/zones", json=zone, headers=stack.headers)
    assert r.status_code == 201, r.text
    stack.settings.cap_test_zone_id = int(r.json()["id"])
    try:
        yield stack.settings.cap_test_zone_id
    finally:
        stack.settings.cap_test_zone_id = None


def _programmes(world: World) -> list[Programme]:
    with db_of(world.stack) as db:
        return list(db.scalars(select(Programme).order_by(Programme.id)))


def test_a_test_alert_plays_on_the_test_zone_only_marked(world: World, test_zone: int) -> None:
    r = world.post(cap("T-1", status="Test"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["logged_only"] and body["bulletin_id"] is None
    assert undispatched(world.stack) == 0  # its replan left with the commit
    [programme] = _programmes(world)
    assert body["test_programme_id"] == programme.id
    assert [z.id for z in programme.zones] == [test_zone]
    assert programme.title == "[THỬ NGHIỆM] Cảnh báo lũ quét"
    assert programme.status == "approved" and programme.priority == "emergency"
    assert programme.bulletin_id is None and programme.org_unit_id == world.a
    with db_of(world.stack) as db:
        [clip] = [db.get(Clip, pc.clip_id) for pc in programme.clips]
        assert clip is not None and clip.source == "tts"
        # What the loudspeaker says starts by saying it is a test.
        assert clip.notes.startswith("Đây là tin thử nghiệm, không phải cảnh báo thật. ")
        assert "sơ tán lên vùng cao" in clip.notes
    # Nothing went down the tree: no bulletin, no delivery, no programme on a public zone.
    assert world.count(Bulletin) == 0 and world.count(BulletinDelivery) == 0
    again = world.post(cap("T-1", status="Test"))
    assert again.status_code == 200 and again.json()["repeat"]
    assert len(_programmes(world)) == 1  # a repeat plays nothing new
    exercise = world.post(cap("T-2", status="Exercise", urgency="Future", severity="Minor"))
    assert exercise.status_code == 201, exercise.text
    marked = _programmes(world)[-1]
    assert marked.title.startswith("[DIỄN TẬP] ") and marked.priority == "normal"
    assert [z.id for z in marked.zones] == [test_zone]


def test_a_test_alert_keeps_the_sources_limits(world: World, test_zone: int) -> None:
    # A department may send normal only: its emergency test is refused like the real one.
    r = world.post(cap("T-3", status="Test"), key=world.department)
    assert r.status_code == 403, r.text
    assert world.count(CapMessage) == 0 and _programmes(world) == []
    expired = world.post(cap("T-4", status="Test", expires=None))
    assert expired.status_code == 422 and "<expires>" in expired.json()["detail"]
    assert _programmes(world) == []


def test_a_test_alerts_audio_follows_its_spoken_mark(world: World, test_zone: int) -> None:
    files = {"/tone.wav": Served(tone_wav(1.0, 587.0), "audio/wav")}
    with file_server(files) as (base, _hits):
        world.stack.settings.cap_resource_allowed_hosts = "127.0.0.1"
        try:
            r = world.post(cap("T-5", status="Test", resource=("audio/wav", f"{base}/tone.wav")))
        finally:
            world.stack.settings.cap_resource_allowed_hosts = ""
    assert r.status_code == 201, r.text
    [programme] = _programmes(world)
    with db_of(world.stack) as db:
        clips = [db.get(Clip, pc.clip_id) for pc in programme.clips]
        assert [c.source for c in clips if c is not None] == ["tts", "cap"]


def test_system_and_draft_stay_in_the_log_and_a_missing_zone_means_log_only(
    world: World, test_zone: int
) -> None:
    for n, status in enumerate(("System", "Draft")):
        r = world.post(cap(f"T-S{n}", status=status))
        assert r.status_code == 201 and r.json()["test_programme_id"] is None
    world.stack.settings.cap_test_zone_id = 999_999  # a zone deleted since it was configured
    r = world.post(cap("T-6", status="Test"))
    assert r.status_code == 201, r.text
    assert r.json()["logged_only"] and r.json()["test_programme_id"] is None
    assert _programmes(world) == [] and world.count(Bulletin) == 0
