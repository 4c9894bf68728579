"""`loa-server demo` brings 12 simulated clusters and an e-board online and leaves nothing
running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from server.broker.process import free_port
from tests.stack import requires_mosquitto


@requires_mosquitto
def test_demo_brings_all_devices_online_and_stops_cleanly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LOA_DATA_DIR": str(tmp_path / "var"),
        "LOA_HTTP_PORT": str(free_port()),
        "LOA_MQTT_PORT": str(free_port()),
    }
    env.pop("LOA_ADMIN_PASSWORD", None)
    env.pop("LOA_MQTT_PASSWORD", None)
    done = subprocess.run(
        [sys.executable, "-m", "server", "demo", "--until-online"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "13/13 devices online" in out
    # Over TLS, verified against the demo's CA (issue 13): the plain port is loopback only.
    assert "agents connect over TLS to 127.0.0.1:" in out
    configs = list((tmp_path / "var" / "agents").glob("*.toml"))
    assert len(configs) == 13 and all("tls = true" in c.read_text() for c in configs)
    # The e-board (issue 16) runs the eboard-sim profile and shows its page on a port it prints.
    [board] = [c for c in configs if 'firmware_profile = "eboard-sim"' in c.read_text()]
    port = re.search(r"display_port = (\d+)", board.read_text())
    assert port is not None
    assert f"bảng tin điện tử ({board.stem}): http://127.0.0.1:{port.group(1)}/" in out
    assert "sign in as: admin / " in out
    assert "stopped." in out
    # Nothing the demo started survives it.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps
