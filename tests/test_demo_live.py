"""`loa-server demo`, then `loa-server live --input FILE`: every cluster of the zone records it
in sync (the issue's "done means", as a user would do it)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from loa_testkit.demolines import DemoLines
from server.broker.process import free_port
from tests.live.markers import heard_by_device, marker_wav, matched_skews
from tests.stack import requires_mosquitto

pytestmark = requires_mosquitto


def _get(base: str, path: str, token: str) -> Any:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def _sign_in(base: str, username: str, password: str) -> str:
    body = urllib.parse.urlencode({"username": username, "password": password}).encode()
    with urllib.request.urlopen(base + "/api/v1/auth/token", data=body, timeout=10) as r:
        return str(json.load(r)["access_token"])


def test_an_operator_goes_live_from_a_file_and_every_cluster_records_it_in_sync(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "LOA_DATA_DIR": str(tmp_path / "var"),
        "LOA_HTTP_PORT": str(free_port()),
        "LOA_MQTT_PORT": str(free_port()),
    }
    env.pop("LOA_ADMIN_PASSWORD", None)
    env.pop("LOA_MQTT_PASSWORD", None)
    wav_path = tmp_path / "thong-bao.wav"
    marker = marker_wav(wav_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "server", "demo"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = DemoLines(demo)
        # The demo prints the live hint, then the devices coming online, then the sign-ins.
        hint = lines.until(r"live from a file: .*--server (\S+) .*--zone (\d+)", 90)
        base, zone = hint.group(1), int(hint.group(2))
        lines.until(r"13/13 devices online", 90)
        password = lines.until(r"sign in as: admin / (\S+)", 30).group(1)
        time.sleep(3)  # the agents' first clock probes
        done = subprocess.run(
            [sys.executable, "-m", "server", "live", "--server", base, "--username", "trucphat",
             "--zone", str(zone), "--input", str(wav_path)],
            env={**env, "LOA_PASSWORD": password}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        token = _sign_in(base, "admin", password)
        expected = len(_get(base, f"/api/v1/zones/{zone}", token)["device_ids"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            [session] = _get(base, "/api/v1/live", token)
            if session["state"] == "ended" and all(
                d["status"] in ("joined", "left") for d in session["devices"]
            ):
                break
            time.sleep(0.5)
        assert session["state"] == "ended", session
        members = {d["uid"] for d in session["devices"]}
        assert len(members) == expected >= 2, session
        time.sleep(1.5)  # the last frames play out after the leave
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
    heard = [heard_by_device(tmp_path / "var" / "agents" / uid, marker) for uid in sorted(members)]
    assert all(len(h) >= 5 for h in heard), heard  # 7 markers; a starved process may lose one
    skews = matched_skews(heard)
    assert len(skews) >= 4, heard
    # Separate processes, one machine clock: every cluster plays the same sample at once.
    median_ms, max_ms = statistics.median(skews) * 1000, max(skews) * 1000
    print(f"skew over {len(skews)} markers: median {median_ms:.3f} ms, max {max_ms:.3f} ms")
    assert statistics.median(skews) < 0.002, skews
