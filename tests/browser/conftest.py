"""A real server (uvicorn in a thread, its own Mosquitto) and headless Chromium via Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from loa_testkit.brokerfix import MOSQUITTO_MISSING, has_mosquitto
from loa_testkit.stack import admin_headers, prepared, serve, stack_settings
from server.app import create_app
from server.broker.process import free_port
from server.settings import ServerSettings

ADMIN_PASSWORD = "admin-browser-test"
PASSWORD = "mat-khau-thu-1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The Live page's microphone: allow it without a prompt and feed Chromium's beeping fake.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PHONE = {"width": 390, "height": 844}


@dataclass
class LiveServer:
    """The running server: its URL, settings, app, and an admin API client."""

    base_url: str
    settings: ServerSettings
    app: Any
    admin: httpx.Client
    ids: dict[str, int] = field(default_factory=dict)
    counter: int = 0

    def api(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        """Call the API as the global admin."""
        r = self.admin.request(method, f"/api/v1{path}", json=body)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def next(self) -> int:
        """A fresh number for unique names."""
        self.counter += 1
        return self.counter


def _world(live: LiveServer) -> None:
    """Province › communes An Bình (A) and Bình Minh (B), each with a village, zone, devices."""
    province = live.api(
        "POST", "/org-units", {"name": "Tỉnh Quảng Bình", "kind": "province"}, expect=201
    )["id"]
    for key, name in (("a", "Xã An Bình"), ("b", "Xã Bình Minh")):
        commune = live.api(
            "POST",
            "/org-units",
            {"name": name, "kind": "commune", "parent_id": province},
            expect=201,
        )["id"]
        village = live.api(
            "POST",
            "/org-units",
            {"name": f"Thôn Đông ({name})", "kind": "village", "parent_id": commune},
            expect=201,
        )["id"]
        devices = []
        for i in (1, 2):
            body = {
                "uid": f"{key}-cum-{i:02d}",
                "name": f"Cụm loa {i:02d} {name}",
                "org_unit_id": village,
                "firmware_profile": "sim",
            }
            devices.append(live.api("POST", "/devices", body, expect=201)["device"]["id"])
        zone = live.api(
            "POST",
            "/zones",
            {"org_unit_id": village, "name": f"Loa {name}", "device_ids": devices},
            expect=201,
        )["id"]
        live.ids.update(
            {
                f"{key}_commune": commune,
                f"{key}_village": village,
                f"{key}_zone": zone,
                f"{key}_device": devices[0],
            }
        )
    users = [
        ("bientap", "editor", "Nguyễn Thị Lan"),
        ("duyet", "approver", "Trần Văn Hùng"),
        ("trucphat", "operator", "Lê Văn Tâm"),
        ("kythuat", "technician", "Phạm Minh Đức"),
    ]
    for username, role, full_name in users:
        body = {
            "username": username,
            "password": PASSWORD,
            "role": role,
            "full_name": full_name,
            "org_unit_id": live.ids["a_commune"],
            "can_emergency": role == "operator",
        }
        live.api("POST", "/users", body, expect=201)


@pytest.fixture(scope="package")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Migrated SQLite, a Mosquitto, the app served by uvicorn on a free port, demo data."""
    if not has_mosquitto():
        pytest.fail(MOSQUITTO_MISSING)
    tmp = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{tmp / 'loa.db'}"
    settings = stack_settings(tmp / "data", url, admin_password=ADMIN_PASSWORD)
    with prepared(settings):
        app = create_app(settings)
        port = free_port()
        server, thread = serve(app, port)
        base = f"http://localhost:{port}"
        try:
            with httpx.Client(base_url=base, timeout=60) as http:
                headers = admin_headers(http, ADMIN_PASSWORD)
            admin = httpx.Client(base_url=base, headers=headers, timeout=60)
            live = LiveServer(base_url=base, settings=settings, app=app, admin=admin)
            _world(live)
            yield live
            admin.close()
        finally:
            server.should_exit = True
            thread.join(15)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs it with apt-get)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-output/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def signed_in(chromium: Any, live: LiveServer, username: str, password: str = PASSWORD) -> Any:
    """A new phone-sized browser context signed in as username; returns its page."""
    context = chromium.new_context(
        viewport=PHONE, base_url=live.base_url, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh"
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.base_url}/")
    return page
