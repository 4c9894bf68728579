"""The CAP intake's test world: units, clusters with coordinates, sources, and alerts.

Province P (code 01) › commune A (code 00001) › village A1 with cluster 1 at 21.03,105.85;
P › commune B (code 00002) with cluster 2 at 22.00,106.50. Sources are registered on P:
the disaster office (emergency, trusted) and a department (normal only).
"""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loa_testkit.stack import Stack
from server.bulletins.models import BulletinDelivery
from server.devices.models import Device
from server.events.models import OutboxEvent

CAP_TYPE = {"Content-Type": "application/cap+xml"}


@dataclass
class World:
    """The stack, the units' ids and the two source keys."""

    stack: Stack
    p: int
    a: int
    a1: int
    b: int
    office: str  # the disaster office's key: emergency, trusted
    department: str  # a department's key: normal only

    def post(self, xml: str | bytes, key: str | None = None, **headers: str) -> Any:
        """POST /api/v1/cap with a source key (the office's by default)."""
        data = xml.encode() if isinstance(xml, str) else xml
        auth = {"Authorization": f"Bearer {key or self.office}"}
        return self.stack.client.post(
            "/api/v1/cap", content=data, headers=CAP_TYPE | auth | headers
        )

    def count(self, model: Any) -> int:
        """Rows of a table."""
        with db_of(self.stack) as db:
            return int(db.scalar(select(func.count()).select_from(model)) or 0)

    def receivers(self, bulletin_id: int) -> list[int]:
        """The org units that got a delivery of the bulletin."""
        with db_of(self.stack) as db:
            rows = db.scalars(
                select(BulletinDelivery.org_unit_id).where(
                    BulletinDelivery.bulletin_id == bulletin_id
                )
            )
            return sorted(rows)


def db_of(stack: Stack) -> AbstractContextManager[Session]:
    return stack.session()  # type: ignore[no-untyped-call,no-any-return]


def add_unit(stack: Stack, name: str, kind: str, parent: int | None, code: str) -> int:
    body = {"name": name, "kind": kind, "parent_id": parent, "code": code}
    r = stack.client.post("/api/v1/org-units", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _cluster(stack: Stack, unit: int, uid: str, lat: float, lon: float) -> int:
    body = {"uid": uid, "name": uid, "org_unit_id": unit, "firmware_profile": "sim"}
    r = stack.client.post("/api/v1/devices", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    device_id = int(r.json()["device"]["id"])
    zone = {"org_unit_id": unit, "name": f"Vùng {uid}", "device_ids": [device_id]}
    r = stack.client.post("/api/v1/zones", json=zone, headers=stack.headers)
    assert r.status_code == 201, r.text
    with db_of(stack) as db:  # coordinates are set by the installer, not through this API
        device = db.get(Device, device_id)
        assert device is not None
        device.latitude, device.longitude = lat, lon
    return device_id


def _source(stack: Stack, unit: int, max_level: str, trusted: list[str]) -> str:
    body = {"name": f"Nguồn {max_level}", "org_unit_id": unit, "max_level": max_level}
    body["trusted_levels"] = trusted
    r = stack.client.post("/api/v1/sources", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def build_world(api: Stack) -> World:
    """Province P › communes A (› village A1) and B, two clusters, the two sources."""
    p = add_unit(api, "Tỉnh Thử", "province", None, "01")
    a = add_unit(api, "Xã An Bình", "commune", p, "00001")
    a1 = add_unit(api, "Thôn Một", "village", a, "00001-1")
    b = add_unit(api, "Xã Bình Minh", "commune", p, "00002")
    _cluster(api, a1, "cap-a1", 21.03, 105.85)
    _cluster(api, b, "cap-b", 22.00, 106.50)
    office = _source(api, p, "emergency", ["emergency"])
    department = _source(api, p, "normal", [])
    return World(api, p, a, a1, b, office, department)


def when(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat()


def cap(
    identifier: str,
    *,
    urgency: str = "Immediate",
    severity: str = "Extreme",
    expires: timedelta | None = timedelta(hours=6),
    geocodes: tuple[str, ...] = ("00001",),
    polygon: str | None = None,
    circle: str | None = None,
    msg_type: str = "Alert",
    status: str = "Actual",
    references: tuple[str, ...] = (),
    resource: tuple[str, str] | None = None,
) -> str:
    """A CAP 1.2 alert from the disaster office, Vietnamese text, text only unless resource."""
    refs = " ".join(f"pctt@quangninh.gov.vn,{r},{when(-timedelta(minutes=5))}" for r in references)
    area = "".join(
        f"<geocode><valueName>MA_DVHC</valueName><value>{c}</value></geocode>" for c in geocodes
    )
    area += f"<polygon>{polygon}</polygon>" if polygon else ""
    area += f"<circle>{circle}</circle>" if circle else ""
    res = ""
    if resource is not None:
        mime, uri = resource
        res = f"<resource><resourceDesc>Bản đọc</resourceDesc><mimeType>{mime}</mimeType>"
        res += f"<uri>{uri}</uri></resource>"
    expiry = f"<expires>{when(expires)}</expires>" if expires is not None else ""
    info = (
        "<info><language>vi-VN</language><category>Met</category><event>Lũ quét</event>"
        f"<urgency>{urgency}</urgency><severity>{severity}</severity>"
        f"<certainty>Observed</certainty>{expiry}"
        "<headline>Cảnh báo lũ quét</headline>"
        "<description>Mưa lớn gây lũ quét ở các xã vùng núi.</description>"
        "<instruction>Người dân sơ tán lên vùng cao.</instruction>"
        f"{res}<area><areaDesc>Vùng núi</areaDesc>{area}</area></info>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        f"<identifier>{identifier}</identifier><sender>pctt@quangninh.gov.vn</sender>"
        f"<sent>{when(timedelta(0))}</sent><status>{status}</status>"
        f"<msgType>{msg_type}</msgType><scope>Public</scope>"
        + (f"<references>{refs}</references>" if refs else "")
        + (info if msg_type != "Cancel" else "")
        + "</alert>"
    )


@dataclass
class Served:
    """One file of the test HTTP server: its bytes, type, and who waits before it is sent."""

    body: bytes
    content_type: str = "application/octet-stream"
    gate: threading.Barrier | None = None  # every GET of it waits until the barrier fills


@contextmanager
def file_server(files: dict[str, Served]) -> Iterator[tuple[str, Counter[str]]]:
    """A real local HTTP server for `files` (404 elsewhere); its base URL and the GET counts."""
    hits: Counter[str] = Counter()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] += 1
            found = files.get(self.path)
            if found is None:
                self.send_error(404)
                return
            if found.gate is not None:
                found.gate.wait(timeout=30)
            self.send_response(200)
            self.send_header("Content-Type", found.content_type)
            self.send_header("Content-Length", str(len(found.body)))
            self.end_headers()
            self.wfile.write(found.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def undispatched(stack: Stack) -> int:
    """Committed domain events not yet handed on: a request's go out before its answer."""
    with db_of(stack) as db:
        query = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.done_at.is_(None))
        return int(db.scalar(query) or 0)
