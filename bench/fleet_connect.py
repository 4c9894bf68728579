"""N simulated agents connect to a local Mosquitto; time until the API shows all online.

Prints one JSON line: seconds until all online, the server's CPU seconds and peak RSS.
Usage: python bench/fleet_connect.py [--count 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.broker.process import free_port, start_broker, stop_broker  # noqa: E402
from server.broker.service import apply_broker_config  # noqa: E402
from server.db import make_engine, make_session_factory, session_scope  # noqa: E402
from server.devices.service import register_device  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from server.orgs.rules import create_org_unit  # noqa: E402
from server.settings import ServerSettings  # noqa: E402


def _proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return cpu, hwm


def _get(url: str, token: str) -> dict[str, object]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        http_port, mqtt_port = free_port(), free_port()
        env = {
            **os.environ,
            "LOA_DATA_DIR": str(data),
            "LOA_HTTP_PORT": str(http_port),
            "LOA_MQTT_PORT": str(mqtt_port),
            "LOA_MQTT_PASSWORD": secrets.token_urlsafe(12),
            "LOA_ADMIN_PASSWORD": "bench-admin-password",
        }
        os.environ.update(env)
        settings = ServerSettings()
        engine = make_engine(settings.db_url)
        upgrade(engine)
        creds_path = data / "fleet.jsonl"
        with session_scope(make_session_factory(engine)) as db, creds_path.open("w") as f:
            unit = create_org_unit(db, name="Bench", kind="commune", parent_id=None, code=None)
            for i in range(args.count):
                device, password = register_device(
                    db,
                    uid=f"bench-{i:05d}",
                    name=f"bench {i}",
                    org_unit_id=unit.id,
                    firmware_profile="sim",
                )
                f.write(json.dumps({"device_id": device.uid, "password": password}) + "\n")
        with session_scope(make_session_factory(engine)) as db:
            conf = apply_broker_config(db, settings=settings)
        engine.dispose()
        broker = start_broker(conf, host="127.0.0.1", port=mqtt_port)
        server = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--no-migrate"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        fleet = None
        try:
            base = f"http://127.0.0.1:{http_port}"
            token = ""
            deadline = time.monotonic() + 60
            while not token and time.monotonic() < deadline:
                try:
                    body = urllib.parse.urlencode(
                        {"username": "admin", "password": env["LOA_ADMIN_PASSWORD"]}
                    ).encode()
                    with urllib.request.urlopen(f"{base}/api/v1/auth/token", body, timeout=5) as r:
                        token = json.loads(r.read())["access_token"]
                except OSError:
                    time.sleep(0.2)
            cpu_before, _ = _proc_stats(server.pid)
            started = time.monotonic()
            fleet = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edge_agent",
                    "fleet",
                    "--count",
                    str(args.count),
                    "--credentials",
                    str(creds_path),
                    "--mqtt-host",
                    "127.0.0.1",
                    "--mqtt-port",
                    str(mqtt_port),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            online = 0
            while time.monotonic() - started < args.timeout:
                online = int(_get(f"{base}/api/v1/devices?online=true&limit=1", token)["total"])  # type: ignore[call-overload]
                if online >= args.count:
                    break
                time.sleep(0.1)
            elapsed = time.monotonic() - started
            cpu_after, peak_rss = _proc_stats(server.pid)
            print(
                json.dumps(
                    {
                        "bench": "fleet_connect",
                        "agents": args.count,
                        "online": online,
                        "seconds_to_all_online": round(elapsed, 2),
                        "server_cpu_s": round(cpu_after - cpu_before, 2),
                        "server_peak_rss_mb": round(peak_rss, 1),
                        "machine": f"{platform.machine()} {os.cpu_count()} cores",
                        "python": platform.python_version(),
                    }
                ),
                flush=True,
            )
            if online < args.count:
                sys.exit(1)
        finally:
            for proc in (fleet, server):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            stop_broker(broker)


if __name__ == "__main__":
    main()
