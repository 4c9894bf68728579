"""Live sessions across server processes: two apps on one database and one broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from loa_testkit.harness import eventually, run
from loa_testkit.livesim import SimListener
from loa_testkit.stack import Stack, live_stacks
from server.live import registry
from server.live.schemas import LiveSessionOut
from tests.server.conftest import BACKENDS


def _post(api: Stack, path: str, body: dict[str, Any]) -> Any:
    r = api.client.post(path, json=body, headers=api.headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _listed(api: Stack, sid: str, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    r = api.client.get("/api/v1/live", headers=headers or api.headers)
    assert r.status_code == 200, r.text
    return next((s for s in r.json() if s["id"] == sid), None)


def _dashboard(api: Stack) -> str:
    """The console's dashboard as the admin sees it (its 'live now' card)."""
    api.client.cookies.set("loa_session", api.headers["Authorization"].split()[1])
    try:
        r = api.client.get("/")
    finally:
        api.client.cookies.clear()
    assert r.status_code == 200, r.text[:300]
    return str(r.text)


def _user(api: Stack, name: str, unit: int) -> dict[str, str]:
    body = {"username": name, "password": "mat-khau-1", "role": "operator", "org_unit_id": unit}
    _post(api, "/api/v1/users", body)
    r = api.client.post("/api/v1/auth/token", data={"username": name, "password": "mat-khau-1"})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _commune(api: Stack, name: str, uid: str) -> tuple[int, int, str]:
    """A commune with one device in one zone: (unit, zone, device password)."""
    unit = _post(api, "/api/v1/org-units", {"name": name, "kind": "commune"})["id"]
    zone = _post(api, "/api/v1/zones", {"org_unit_id": unit, "name": "Toàn xã"})["id"]
    dev = {"uid": uid, "name": uid, "org_unit_id": unit, "firmware_profile": "sim",
           "zone_ids": [zone]}  # fmt: skip
    password = _post(api, "/api/v1/devices", dev)["credentials"]["password"]
    return unit, zone, password


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_session_started_through_one_process_is_listed_and_stopped_through_the_other(
    tmp_path: Path, kind: str
) -> None:
    with live_stacks(tmp_path, count=2, kind=kind) as (one, two):
        _, zone_a, pw_a = _commune(one, "Xã Bảo Ninh", "dev-reg-a")
        unit_b, zone_b, pw_b = _commune(one, "Xã Quảng Phú", "dev-reg-b")
        only_b = _user(one, "trucphat-b", unit_b)
        time.sleep(0.5)  # the broker reloads its ACL

        async def scenario() -> None:
            listeners = []
            for uid, pw in (("dev-reg-a", pw_a), ("dev-reg-b", pw_b)):
                li = SimListener(uid=uid, out_dir=tmp_path / uid, idle_timeout_s=30)
                li.connect(host="127.0.0.1", port=one.settings.mqtt_port, password=pw)
                assert li.link is not None
                asyncio.get_running_loop().create_task(li.link.run())
                await asyncio.wait_for(li.link.connected.wait(), 10)
                listeners.append(li)
            body = {"source": "mic", "zone_ids": [zone_a, zone_b], "idle_timeout_s": 60,
                    "label": "Loa phát thanh hai xã"}  # fmt: skip
            sid = (await asyncio.to_thread(_post, one, "/api/v1/live", body))["id"]

            def seen_by_two(**want: Any) -> bool:
                view = _listed(two, sid)
                return view is not None and all(view[k] == v for k, v in want.items())

            # Listed through the other process at once, then with its listeners (refreshed).
            first = await asyncio.to_thread(_listed, two, sid)
            assert first is not None and first["state"] == "running" and first["targeted"] == 2
            await eventually(
                lambda: seen_by_two(listeners=2), timeout=5, what="two listeners seen by two"
            )
            assert "Loa phát thanh hai xã" in await asyncio.to_thread(_dashboard, two)
            # The same reach rules: commune B's operator sees it but may not stop it.
            assert await asyncio.to_thread(_listed, two, sid, only_b) is not None
            r = await asyncio.to_thread(two.client.delete, f"/api/v1/live/{sid}", headers=only_b)
            assert r.status_code == 403 and "outside your org unit" in r.json()["detail"]
            r = await asyncio.to_thread(
                two.client.delete, "/api/v1/live/0123456789ab", headers=two.headers
            )
            assert r.status_code == 404 and r.json()["detail"] == "No live session '0123456789ab'."
            assert seen_by_two(state="running")  # the refused stops left it running
            started = time.monotonic()
            r = await asyncio.to_thread(
                two.client.delete, f"/api/v1/live/{sid}", headers=two.headers
            )
            took = time.monotonic() - started
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["id"] == sid and out["state"] == "ended", out
            assert out["end_reason"] == "stopped by admin"
            assert took < 3.0, took  # the owner polls for stop requests every 0.25 s
            # The owner ended it: its own listing says so, and every device left.
            own = await asyncio.to_thread(_listed, one, sid)
            assert own is not None and own["state"] == "ended"
            await eventually(
                lambda: all(li.receiver is not None and li.receiver.current is None
                            for li in listeners),
                timeout=5, what="every device to leave",
            )  # fmt: skip
            await eventually(
                lambda: {d["status"] for d in (_listed(two, sid) or {"devices": []})["devices"]}
                == {"left"},
                timeout=5, what="the other process to see the devices' leave answers",
            )  # fmt: skip
            for li in listeners:
                assert li.link is not None
                await li.link.close()

        run(scenario(), timeout=40)


def test_a_session_whose_process_died_is_shown_as_ended(tmp_path: Path) -> None:
    with live_stacks(tmp_path, count=1) as (one,):
        unit, _, _ = _commune(one, "Xã Bảo Ninh", "dev-dead-a")
        view = LiveSessionOut(
            id="deadbeef0001", label="", source="mic", priority="normal", state="running",
            started_at=time.time() - 600, playout_delay_ms=500, zone_topics=[], listeners=1,
            targeted=1, frames_sent=10, silent_frames=0, source_status={}, cpu_s=0.0, devices=[],
        )  # fmt: skip
        factory = one.app.state.session_factory
        entry = registry.Entry(id=view.id, org_unit_ids=frozenset({unit}), view=view)
        last_write = time.time() - registry.STALE_S - 1
        registry.save(factory, owner="a-dead-process", entries=[entry], now=last_write)
        listed = _listed(one, view.id)
        assert listed is not None and listed["state"] == "ended"
        assert listed["end_reason"] == registry.DEAD_OWNER and listed["ended_at"] == last_write
        r = one.client.delete(f"/api/v1/live/{view.id}", headers=one.headers)
        assert r.status_code == 200 and r.json()["state"] == "ended"
        # Fresh rows of a live process stay running.
        registry.save(factory, owner="a-dead-process", entries=[entry], now=time.time())
        listed = _listed(one, view.id)
        assert listed is not None and listed["state"] == "running"
