"""`loa-server broker` writes the files from the database, starts Mosquitto, then reloads it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.broker.process import free_port, port_open, running_pid
from server.settings import ServerSettings, SettingsError


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_broker_command_starts_then_reloads(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LOA_DATA_DIR": str(tmp_path),
        "LOA_MQTT_PORT": str(port),
        "LOA_MQTT_PASSWORD": secrets.token_urlsafe(12),
    }
    assert _cli("migrate", env=env).returncode == 0
    first = _cli("broker", env=env)
    assert first.returncode == 0, first.stderr
    assert "Mosquitto started" in first.stdout
    pid = None
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_open("127.0.0.1", port)
        pid = running_pid(tmp_path / "mosquitto")
        assert pid is not None
        acl = (tmp_path / "mosquitto" / "acl").read_text()
        assert "pattern write loa/v1/dev/%u/status" in acl
        assert "allow_anonymous false" in (tmp_path / "mosquitto" / "mosquitto.conf").read_text()
        again = _cli("broker", env=env)
        assert again.returncode == 0 and f"(pid {pid}) reloaded" in again.stdout
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


def test_broker_command_names_the_missing_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOA_")}
    env["LOA_DATA_DIR"] = str(tmp_path)
    done = _cli("broker", env=env)
    assert done.returncode == 2
    assert "LOA_MQTT_PASSWORD is not set" in done.stderr


def test_secrets_have_no_defaults_outside_demo(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path, demo=False)
    with pytest.raises(SettingsError, match="LOA_ADMIN_PASSWORD"):
        settings.admin_secret()
    demo = ServerSettings(data_dir=tmp_path, demo=True)
    generated = demo.admin_secret()
    assert len(generated) >= 12
    assert ServerSettings(data_dir=tmp_path, demo=True).admin_secret() == generated  # kept
    assert (tmp_path / "demo-secrets.json").stat().st_mode & 0o077 == 0
