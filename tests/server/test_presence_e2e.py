"""A real `loa-agent run --sim` process against a real server: online and offline via the API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loa_testkit.bridgefix import register_device
from loa_testkit.stack import Stack

KEEPALIVE_S = 4


def _online(live: Stack, device_id: int) -> bool:
    return bool(
        live.client.get(f"/api/v1/devices/{device_id}", headers=live.headers).json()["online"]
    )


def _until(pred: object, timeout: float) -> float | None:
    """Seconds until pred() is true, or None after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def test_agent_shows_online_then_offline_after_sigkill(live: Stack, tmp_path: Path) -> None:
    device_id, password = register_device(live, "e2e-01")
    env = {
        **os.environ,
        "LOA_AGENT_DEVICE_ID": "e2e-01",
        "LOA_AGENT_MQTT_HOST": "127.0.0.1",
        "LOA_AGENT_MQTT_PORT": str(live.settings.mqtt_port),
        "LOA_AGENT_MQTT_PASSWORD": password,
        "LOA_AGENT_DATA_DIR": str(tmp_path / "agent"),
        "LOA_AGENT_KEEPALIVE_S": str(KEEPALIVE_S),
    }
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--sim"], env=env)
    try:
        # Issue target: online through the API within 2 s of the agent starting
        # (Python start-up included; 0.6 s measured on the development machine).
        took = _until(lambda: _online(live, device_id), timeout=10)
        assert took is not None, "the agent never showed online"
        print(f"online after {took:.2f}s")
        assert took < 2.0
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        # Offline within 1.5 x keepalive (the broker publishes the will).
        gone = _until(lambda: not _online(live, device_id), timeout=1.5 * KEEPALIVE_S)
        assert gone is not None, "the device still shows online after 1.5 x keepalive"
        print(f"offline {gone:.2f}s after SIGKILL")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
