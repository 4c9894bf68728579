"""`loa-server broker --foreground` as systemd runs it (deploy/loa-broker.service)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from server.broker.process import free_port, port_open


def test_foreground_broker_execs_mosquitto_and_ignores_a_stale_pid(tmp_path: Path) -> None:
    """After a power cut the pid file names whatever process has that pid now: it must not
    get a SIGHUP, and the broker must start (the process systemd watches is Mosquitto)."""
    port = free_port()
    env = {
        **os.environ,
        "LOA_DATA_DIR": str(tmp_path),
        "LOA_MQTT_PORT": str(port),
        "LOA_MQTT_SERVER_PORT": str(free_port()),
        "LOA_MQTT_PASSWORD": secrets.token_urlsafe(12),
    }
    cli = [sys.executable, "-m", "server"]
    migrated = subprocess.run([*cli, "migrate"], env=env, capture_output=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr
    bystander = subprocess.Popen(["sleep", "60"])  # SIGHUP would end it
    (tmp_path / "mosquitto").mkdir()
    (tmp_path / "mosquitto" / "mosquitto.pid").write_text(f"{bystander.pid}\n")
    proc = subprocess.Popen([*cli, "broker", "--foreground"], env=env)
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None, f"broker exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the broker never listened"
            time.sleep(0.05)
        assert bystander.poll() is None, "the stale pid got a signal"
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "mosquitto"
        pid_file = tmp_path / "mosquitto" / "mosquitto.pid"
        assert pid_file.read_text().strip() == str(proc.pid)
        # A second foreground start while this one runs is refused, naming the pid.
        again = subprocess.run(
            [*cli, "broker", "--foreground"], env=env, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 2 and f"(pid {proc.pid}) already runs" in again.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        for p in (proc, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()
