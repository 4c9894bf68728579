"""A two-commune world for the permission tests: one user per role in commune A.

No tests live here; test_permissions*.py and test_audit*.py import it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loa_testkit.stack import Stack, database, server_stack
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from server.users.models import ROLES

PASSWORD = "mat-khau-thu-1"


def tone_wav(seconds: float = 1.0, freq: float = 440.0, rate: int = 16000) -> bytes:
    """A real mono 16-bit WAV with a sine tone (distinct bytes per frequency)."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        sample = int(12000 * math.sin(2 * math.pi * freq * i / rate))
        frames += struct.pack("<h", sample)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


@dataclass
class Org:
    """One commune: its id, a village below it, and a zone with one device in the village."""

    commune: int
    village: int
    zone: int
    device: int
    clip: int
    name: str


@dataclass
class PermWorld:
    """Province P with communes A (the users' own) and B (foreign), built as the global admin."""

    stack: Stack
    province: int = 0
    a: Org | None = None
    b: Org | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    counter: int = 0
    start_day: int = 0

    # -- plumbing -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The HTTP client."""
        return self.stack.client

    def next(self) -> int:
        """A fresh number for unique names."""
        self.counter += 1
        return self.counter

    def admin(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        """Call the API as the global (bootstrap) admin."""
        r = self.client.request(method, f"/api/v1{path}", json=body, headers=self.stack.headers)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def headers(self, role: str) -> dict[str, str]:
        """Bearer headers of the commune-A user with this role."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def sign_in(self, username: str, password: str = PASSWORD) -> str:
        """A fresh bearer token."""
        r = self.client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    # -- objects --------------------------------------------------------------------------

    def org_unit(self, parent: int, kind: str = "village") -> int:
        """A new org unit under parent."""
        body = {"name": f"Thôn {self.next()}", "kind": kind, "parent_id": parent}
        return int(self.admin("POST", "/org-units", body, expect=201)["id"])

    def device(self, org: int) -> int:
        """A new device in org."""
        n = self.next()
        body = {
            "uid": f"perm-{n:04d}",
            "name": f"Cụm loa {n}",
            "org_unit_id": org,
            "firmware_profile": "sim",
        }
        return int(self.admin("POST", "/devices", body, expect=201)["device"]["id"])

    def zone(self, org: int, device_ids: list[int] | None = None) -> int:
        """A new zone in org."""
        body = {"org_unit_id": org, "name": f"Vùng {self.next()}", "device_ids": device_ids or []}
        return int(self.admin("POST", "/zones", body, expect=201)["id"])

    def db_clip(self, org: int | None, duration_s: float = 30.0) -> int:
        """A clip row (random bytes on disk, never decoded) owned by org."""
        data = os.urandom(1000)
        sha = hashlib.sha256(data).hexdigest()
        storage = ClipStorage(self.stack.settings.data_dir / "clips")
        path = storage.dist_path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self.stack.session() as db:
            clip = Clip(
                sha256=sha,
                original_sha256=sha,
                title=f"Bản tin {self.next()}",
                original_duration_s=duration_s,
                original_sample_rate=48000,
                original_channels=1,
                original_size_bytes=1000,
                duration_s=duration_s,
                size_bytes=1000,
                peaks=[],
                org_unit_id=org,
            )
            db.add(clip)
            db.flush()
            return int(clip.id)

    def upload(self, headers: dict[str, str], *, title: str, expect: int = 201) -> int:
        """Upload a real tone as a clip; returns its id."""
        wav = tone_wav(1.0, 200 + 7 * self.next())
        r = self.client.post(
            "/api/v1/clips",
            headers=headers,
            files={"file": ("tin.wav", wav, "audio/wav")},
            data={"title": title},
        )
        assert r.status_code == expect, r.text
        return int(r.json()["id"]) if expect in (200, 201) else 0

    def user(self, org: int | None, role: str = "viewer", can_emergency: bool = False) -> int:
        """A new user."""
        body = {
            "username": f"u{self.next()}",
            "password": PASSWORD,
            "role": role,
            "org_unit_id": org,
            "can_emergency": can_emergency,
        }
        return int(self.admin("POST", "/users", body, expect=201)["id"])

    def start_at(self) -> str:
        """A distinct future start time (one per programme, so none conflict)."""
        self.start_day += 1
        when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2 + self.start_day)
        return when.isoformat()

    def programme(self, org: Org, *, status: str = "draft", priority: str = "normal") -> int:
        """A programme owned by the commune, on a fresh zone of its own, in the given status."""
        zone = self.zone(org.village, [])
        body = {
            "title": f"Chương trình {self.next()}",
            "priority": priority,
            "clip_ids": [org.clip],
            "zone_ids": [zone],
            "start": self.start_at(),
            "org_unit_id": org.commune,
        }
        if status == "approved" and priority == "emergency":
            body["approve_now"] = True
        pid = int(self.admin("POST", "/programmes", body, expect=201)["id"])
        if status in ("submitted", "approved") and priority != "emergency":
            self.admin("POST", f"/programmes/{pid}/submit", expect=200)
        if status == "approved" and priority != "emergency":
            self.admin("POST", f"/programmes/{pid}/approve", expect=200)
        return pid

    def bulletin_until(self) -> str:
        """A bulletin validity end far enough for every start_at() of a test run."""
        return (datetime.now(UTC).replace(microsecond=0) + timedelta(days=400)).isoformat()

    def bulletin(self, org: Org, *, sent: bool = False) -> int:
        """A bulletin the province delivered to the commune, or (sent) one the commune sent."""
        body: dict[str, Any] = {
            "title": f"Bản tin {self.next()}",
            "valid_until": self.bulletin_until(),
        }
        if not sent:
            body.update(clip_ids=[self.db_clip(self.province)], target_org_unit_ids=[org.commune])
            bid = int(self.admin("POST", "/bulletins", body, expect=201)["id"])
            self.admin("POST", f"/bulletins/{bid}/approve", expect=200)
            return bid
        sender = f"bulletin-sender-{org.commune}"  # an editor of the commune, made once
        if sender not in self.tokens:
            self.admin(
                "POST",
                "/users",
                {
                    "username": sender,
                    "password": PASSWORD,
                    "role": "editor",
                    "org_unit_id": org.commune,
                },
                expect=201,
            )
            self.tokens[sender] = self.sign_in(sender)
        body.update(clip_ids=[org.clip], target_org_unit_ids=[org.village])
        r = self.client.post("/api/v1/bulletins", json=body, headers=self.headers(sender))
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def priority_delivery(self, org: Org) -> int:
        """A priority bulletin from the province, placed in the commune from tomorrow on."""
        # Imported here, like the app: most users of this module never need bulletins.
        from server.bulletins.models import APPROVED, Bulletin, BulletinClip, BulletinDelivery
        from server.bulletins.placement import place

        now = datetime.now(UTC)
        with self.stack.session() as db:
            bulletin = Bulletin(
                title=f"Tin ưu tiên {self.next()}", level="priority", status=APPROVED,
                valid_from=now + timedelta(days=1), valid_until=now + timedelta(days=3),
                org_unit_id=self.province, approved_at=now,
            )  # fmt: skip
            bulletin.clips = [BulletinClip(position=0, clip_id=org.clip)]
            db.add(bulletin)
            db.flush()
            delivery = BulletinDelivery(bulletin_id=bulletin.id, org_unit_id=org.commune)
            db.add(delivery)
            db.flush()
            place(db, bulletin=bulletin, deliveries=[delivery], now=now)
            return int(delivery.id)

    def commune(self, name: str) -> Org:
        """A commune with a village, a device, a zone over it and a clip."""
        commune = self.org_unit(self.province, kind="commune")
        self.admin("PATCH", f"/org-units/{commune}", {"name": name}, expect=200)
        village = self.org_unit(commune)
        device = self.device(village)
        zone = self.zone(village, [device])
        return Org(commune, village, zone, device, self.db_clip(commune), name)


def cap_alert(w: PermWorld, unit_id: int) -> bytes:
    """A normal-level CAP 1.2 alert whose geocode is the unit's code (given it here if none)."""
    code = f"PERM{unit_id}"
    w.admin("PATCH", f"/org-units/{unit_id}", {"code": code})  # a missing unit: a code of none
    now = datetime.now(UTC).replace(microsecond=0)
    return (
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        f"<identifier>perm-{w.next()}</identifier><sender>perm@loa.test</sender>"
        f"<sent>{now.isoformat()}</sent><status>Actual</status><msgType>Alert</msgType>"
        "<scope>Public</scope><info><category>Met</category><event>Mưa lớn</event>"
        "<urgency>Future</urgency><severity>Minor</severity><certainty>Likely</certainty>"
        f"<expires>{(now + timedelta(days=1)).isoformat()}</expires>"
        "<headline>Mưa lớn</headline><area><areaDesc>Thôn</areaDesc><geocode>"
        f"<valueName>MA_DVHC</valueName><value>{code}</value></geocode></area></info></alert>"
    ).encode()


def build_world(stack: Stack) -> PermWorld:
    """Province, communes A and B, one user per role in commune A (signed in)."""
    w = PermWorld(stack=stack)
    w.province = int(
        w.admin("POST", "/org-units", {"name": "Tỉnh Thử", "kind": "province"}, expect=201)["id"]
    )
    w.a = w.commune("Xã An Bình")
    w.b = w.commune("Xã Bình Minh")
    for role in ROLES:
        name = f"{role}-a"
        body = {
            "username": name,
            "password": PASSWORD,
            "role": role,
            "org_unit_id": w.a.commune,
            "can_emergency": role in ("operator", "approver"),
        }
        w.user_ids[role] = int(w.admin("POST", "/users", body, expect=201)["id"])
        w.tokens[role] = w.sign_in(name)
    # Commune A's standing clip is real audio: compose and playback decode it.
    w.a.clip = w.upload(w.headers("editor"), title="Bản tin thời sự")
    return w


@contextmanager
def running_perm_world(backend: str, tmp_path: Path) -> Iterator[PermWorld]:
    """The world on one database backend, with a real broker (commands are published)."""
    with (
        database(backend, tmp_path) as url,
        server_stack(url, tmp_path / "data", with_broker=True) as stack,
    ):
        yield build_world(stack)
