"""Citizen feedback, the public side: submit (JSON, multipart with a photo or voice note),
follow by tracking code, and every refusal (wrong code, disguised or oversized file,
honeypot, rate limits). A running server on real SQLite; real Pillow and ffmpeg."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from loa_testkit.stack import Stack
from server.feedback.attachments import path_of
from server.feedback.intake import ALPHABET
from tests.server.test_permissions_fixtures import PermWorld

URL = "/api/v1/public/feedback"


@dataclass
class Commune:
    """A commune with a public code and two categories."""

    w: PermWorld
    id: int
    code: str

    def submit(self, expect: int = 201, **fields: Any) -> Any:
        body = {"org_unit_code": self.code, "category": "Môi trường", "content": "Rác ở chợ"}
        r = self.w.client.post(URL, json=body | fields)
        assert r.status_code == expect, r.text
        return r.json()


@pytest.fixture
def commune(api: Stack) -> Iterator[Commune]:
    w = PermWorld(stack=api)
    unit = w.org_unit(_province(w), kind="commune")
    w.admin("PATCH", f"/org-units/{unit}", {"code": "XA01"}, expect=200)
    for name, days in (("Môi trường", 5), ("Đất đai", 30)):
        body = {"org_unit_id": unit, "name": name, "due_days": days}
        w.admin("POST", "/feedback/categories", body, expect=201)
    api.settings.feedback_per_address = 50
    yield Commune(w, unit, "XA01")


def _province(w: PermWorld) -> int:
    body = {"name": "Tỉnh Thử", "kind": "province"}
    return int(w.admin("POST", "/org-units", body, expect=201)["id"])


def _photo_with_exif() -> bytes:
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "GPS-bearing software"
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def _voice(tmp: Path) -> bytes:
    path = tmp / "note.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=300:duration=2",
         "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


def test_json_submit_and_follow_by_code(commune: Commune) -> None:
    out = commune.submit(name="Lê Thị B", phone="+84 912 345 678", category="môi trường")
    code = out["tracking_code"]
    assert 10 <= len(code) <= 12 and set(code) <= set(ALPHABET)
    assert out["status"] == "new" and out["status_label"] == "Đã tiếp nhận"
    r = commune.w.client.get(f"{URL}/{code.lower()}")
    assert r.status_code == 200
    seen = r.json()
    assert seen["category"] == "Môi trường" and seen["answer"] is None
    assert "Lê Thị B" not in r.text and "0912345678" not in r.text and "912" not in r.text
    # Due = created + the category's 5 days.
    assert seen["due_at"][:10] != seen["created_at"][:10]


def test_wrong_code_is_404_without_hint(commune: Commune) -> None:
    commune.submit()
    a = commune.w.client.get(f"{URL}/ABCDEFGHJK")
    b = commune.w.client.get(f"{URL}/x")
    assert a.status_code == b.status_code == 404
    assert a.json() == b.json()


def test_bad_fields_are_clear_4xx(commune: Commune) -> None:
    assert "phone" in commune.submit(422, phone="12345")["detail"]
    assert "categor" in commune.submit(422, category="Không có")["detail"]
    commune.submit(422, content="")
    commune.submit(422, content="x" * 5001)
    commune.submit(404, org_unit_code="NOPE")
    r = commune.w.client.post(URL, content=b"not json", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_multipart_photo_is_reencoded_without_exif(commune: Commune) -> None:
    photo = _photo_with_exif()
    assert b"SecretCam" in photo
    fields = {"org_unit_code": commune.code, "category": "Đất đai", "content": "Lấn chiếm"}
    r = commune.w.client.post(
        URL, data=fields, files={"attachment": ("a.txt", photo, "text/plain")}
    )
    assert r.status_code == 201, r.text
    with commune.w.stack.session() as db:  # type: ignore[no-untyped-call]
        from server.feedback.models import FeedbackCase

        case = db.query(FeedbackCase).one()
        sha, kind = case.attachment_sha256, case.attachment_type
    assert kind == "image/jpeg"
    stored = path_of(commune.w.stack.settings.data_dir / "feedback", sha).read_bytes()
    assert b"SecretCam" not in stored
    with Image.open(io.BytesIO(stored)) as img:
        assert not img.getexif()
        assert img.size == (64, 48)
    # The public never gets the file.
    code = r.json()["tracking_code"]
    assert "attachment" not in commune.w.client.get(f"{URL}/{code}").json()


def test_voice_note_becomes_ogg_opus(commune: Commune, tmp_path: Path) -> None:
    fields = {"org_unit_code": commune.code, "category": "Đất đai", "content": "Ghi âm"}
    r = commune.w.client.post(
        URL, data=fields, files={"attachment": ("note.jpg", _voice(tmp_path), "image/jpeg")}
    )
    assert r.status_code == 201, r.text
    with commune.w.stack.session() as db:  # type: ignore[no-untyped-call]
        from server.feedback.models import FeedbackCase

        case = db.query(FeedbackCase).one()
        sha, kind = case.attachment_sha256, case.attachment_type
    assert kind == "audio/ogg"
    stored = path_of(commune.w.stack.settings.data_dir / "feedback", sha).read_bytes()
    assert stored.startswith(b"OggS") and b"OpusHead" in stored[:200]


def test_disguised_and_oversized_attachments_refused(commune: Commune) -> None:
    fields = {"org_unit_code": commune.code, "category": "Đất đai", "content": "Tệp lạ"}
    client = commune.w.client
    script = b"#!/bin/sh\nrm -rf /\n"
    r = client.post(URL, data=fields, files={"attachment": ("p.jpg", script, "image/jpeg")})
    assert r.status_code == 415 and "photo" in r.json()["detail"]
    wrong = fields | {"category": "Không có"}  # refused before the photo is decoded or kept
    r = client.post(URL, data=wrong, files={"attachment": ("p.jpg", _photo_with_exif())})
    assert r.status_code == 422
    assert not list((commune.w.stack.settings.data_dir / "feedback").rglob("*.part"))
    assert not [p for p in (commune.w.stack.settings.data_dir).rglob("*") if len(p.name) == 64]
    fake_jpeg = b"\xff\xd8\xff\xe0" + b"garbage" * 100  # a JPEG's first bytes, nothing more
    r = client.post(URL, data=fields, files={"attachment": ("p.jpg", fake_jpeg, "image/jpeg")})
    assert r.status_code == 422 and "photo" in r.json()["detail"]
    fake_ogg = b"OggS" + b"\x00" * 500
    r = client.post(URL, data=fields, files={"attachment": ("v.ogg", fake_ogg, "audio/ogg")})
    assert r.status_code == 422 and "voice note" in r.json()["detail"]
    commune.w.stack.settings.feedback_max_attachment_bytes = 2048
    big = _photo_with_exif() + b"\x00" * 4000
    r = client.post(URL, data=fields, files={"attachment": ("p.jpg", big, "image/jpeg")})
    assert r.status_code == 413
    chunked = iter([b'{"content": "' + b"x" * 40_000, b"x" * 40_000 + b'"}'])  # no length
    r = client.post(URL, content=chunked, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    with commune.w.stack.session() as db:  # type: ignore[no-untyped-call]
        from server.feedback.models import FeedbackCase

        assert db.query(FeedbackCase).count() == 0  # nothing half-taken


def test_honeypot_refused_and_nothing_stored(commune: Commune) -> None:
    out = commune.submit(400, website="http://spam.example")
    assert "could not be accepted" in out["detail"]
    with commune.w.stack.session() as db:  # type: ignore[no-untyped-call]
        from server.feedback.models import FeedbackCase

        assert db.query(FeedbackCase).count() == 0


def test_rate_limits_per_address_and_per_phone(commune: Commune) -> None:
    settings = commune.w.stack.settings
    settings.feedback_per_address, settings.feedback_per_phone = 3, 2
    commune.submit(phone="0912345678")
    commune.submit(phone="0912 345 678")
    r = commune.submit(429, phone="+84912345678")
    assert "Too many" in r["detail"] and "phút" in r["detail"]
    commune.submit(phone="0987654321")  # another phone, third from this address
    commune.submit(429)  # the address is spent
