"""`loa-server demo` commissions the acoustic self-test (issue 17's "done means"): a technician
runs one on a cluster and sees its verdict within 30 s; the simulated dead horn is flagged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from loa_testkit.demolines import DemoLines
from server.broker.process import free_port
from server.db import make_engine, make_session_factory, session_scope
from server.demo_selftest import DEAD_HORN_UID, MARKER
from server.devices.health import health_flags
from server.devices.models import Device
from tests.stack import requires_mosquitto

pytestmark = requires_mosquitto

HEALTHY_UID = "bao-ninh-01"
VERDICT_WITHIN_S = 30.0


def _call(base: str, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="GET" if body is None else "POST")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def _sign_in(base: str, username: str, password: str) -> str:
    body = urllib.parse.urlencode({"username": username, "password": password}).encode()
    with urllib.request.urlopen(base + "/api/v1/auth/token", data=body, timeout=10) as r:
        return str(json.load(r)["access_token"])


def _device_id(base: str, token: str, uid: str) -> int:
    page = _call(base, f"/api/v1/devices?q={uid}", token)
    [device] = [d for d in page["items"] if d["uid"] == uid]
    return int(device["id"])


def test_a_technician_sees_a_self_test_verdict_within_30s_and_the_dead_horn_is_flagged(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        "LOA_DATA_DIR": str(data_dir),
        "LOA_HTTP_PORT": str(free_port()),
        "LOA_MQTT_PORT": str(free_port()),
    }
    for name in ("LOA_ADMIN_PASSWORD", "LOA_MQTT_PASSWORD", "LOA_AGENT_DISPLAY_PORT"):
        env.pop(name, None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "server", "demo"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        lines = DemoLines(demo)
        lines.until(r"13/13 devices online", 120)
        password = lines.until(r"sign in as: admin / (\S+)", 30).group(1)
        recorded = lines.until(r"self-test: baselines recorded for (\d+)/(\d+) devices", 120)
        assert recorded.group(1) == recorded.group(2) == "13", recorded.group(0)
        dead = lines.until(r"self-test: .*\((\S+)\) has a simulated dead horn; .*\((\w+)\)", 90)
        assert dead.group(1) == DEAD_HORN_UID and dead.group(2) == "level_low", dead.group(0)
        hint = lines.until(r"self-test: sign in as (\w+), open (\S+)/devices/(\d+)#selftest", 10)
        base = hint.group(2)
        token = _sign_in(base, hint.group(1), password)  # the demo's technician
        dead_id = int(hint.group(3))
        assert dead_id == _device_id(base, token, DEAD_HORN_UID)

        # As the console's button does: a self-test now, at the unit's volume.
        healthy_id = _device_id(base, token, HEALTHY_UID)
        started = time.monotonic()
        command = _call(base, f"/api/v1/devices/{healthy_id}/self-test", token, {"volume": None})
        run = None
        while run is None and time.monotonic() - started < VERDICT_WITHIN_S + 30:
            found = _call(base, f"/api/v1/devices/{healthy_id}/self-tests", token)
            run = next((r for r in found["items"] if r["command_id"] == command["id"]), None)
            if run is None:
                time.sleep(0.25)
        took = time.monotonic() - started
        print(f"self-test verdict on {HEALTHY_UID} after {took:.1f} s: {run}")
        assert run is not None, found
        assert took < VERDICT_WITHIN_S, took
        assert run["code"] == "ok" and run["verdict"] == "bình thường", run
        assert found["baseline"] is not None and found["baseline"]["code"] == "baseline", found

        tests = _call(base, f"/api/v1/devices/{dead_id}/self-tests", token)
        assert tests["latest"]["code"] == "level_low", tests["latest"]
        assert tests["latest"]["verdict"] == "yếu tiếng", tests["latest"]
        assert tests["latest"]["level_vs_baseline_db"] < -5.0, tests["latest"]
        assert _call(base, f"/api/v1/devices/{dead_id}", token)["selftest_code"] == "level_low"
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
    assert (data_dir / "agents" / MARKER).exists()
    engine = make_engine(f"sqlite:///{(data_dir / 'loa.db').resolve()}")
    try:
        with session_scope(make_session_factory(engine)) as db:
            flags = {
                d.uid: health_flags(d, now=datetime.now(UTC), published_schedule=None)
                for d in db.scalars(select(Device))
            }
    finally:
        engine.dispose()
    assert "selftest_failed" in flags[DEAD_HORN_UID], flags[DEAD_HORN_UID]
    assert "selftest_failed" not in flags[HEALTHY_UID], flags[HEALTHY_UID]
