"""What a clock probe's answer costs the server and the broker, measured from outside.

A real `loa-server serve` (SQLite, its own Mosquitto) and N registered devices, each a paho
client with its own credentials, as a cluster connects. Two windows of the same length:
idle (connected, silent), then probing (every device sends `TimeRequest`s at a fixed rate
and counts the answers). The CPU seconds of the server and of the broker come from /proc
for each window; the cost of an answer is the difference over the answers counted. It
decides how often devices on a jittery cell can afford to probe while live
(docs/benchmarks.md, "Eighth pass": the probes held at a session's start set the skew).

Usage: python bench/probe_cost.py [--devices 50] [--rate 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._http import proc_cpu_s, request, sign_in  # noqa: E402
from bench._speed import reference_cpu_ms  # noqa: E402
from protocol import TimeRequest, encode  # noqa: E402
from protocol.topics import TopicKind, device_topic  # noqa: E402
from server.broker.process import free_port, start_broker, stop_broker  # noqa: E402
from server.broker.service import apply_broker_config  # noqa: E402
from server.db import make_engine, make_session_factory, session_scope  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"
BIN = Path(sys.executable).parent


class Device:
    """One registered device's MQTT connection: sends probes, counts the answers."""

    def __init__(self, uid: str, password: str, port: int) -> None:
        self.uid = uid
        self.answers = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(uid, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(device_topic(self.uid, TopicKind.TIME_RESPONSE), qos=0)

    def _on_message(self, *_args: Any) -> None:
        self.answers += 1

    def probe(self) -> None:
        """Send one probe, as ClockSync does."""
        request = TimeRequest(id=uuid.uuid4().hex[:16], t0=time.time())
        topic = device_topic(self.uid, TopicKind.TIME_REQUEST)
        self.client.publish(topic, encode(request), qos=0)

    def close(self) -> None:
        """Disconnect and stop the client's thread."""
        self.client.disconnect()
        self.client.loop_stop()


def window(pids: list[int], seconds: float, work: Any = None) -> list[float]:
    """CPU seconds each process spent over `seconds`, calling `work()` meanwhile if given."""
    before = [proc_cpu_s(p) for p in pids]
    if work is None:
        time.sleep(seconds)
    else:
        work(seconds)
    return [proc_cpu_s(p) - b for p, b in zip(pids, before, strict=True)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, measure both windows, tear down; the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="loa-probe-cost-"))
    http_port, mqtt_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOA_")},
        "LOA_DATA_DIR": str(tmp / "data"),
        "LOA_DATABASE_URL": f"sqlite:///{tmp / 'loa.db'}",
        "LOA_HTTP_HOST": "127.0.0.1",
        "LOA_HTTP_PORT": str(http_port),
        "LOA_MQTT_PORT": str(mqtt_port),
        "LOA_MQTT_PASSWORD": secrets.token_urlsafe(12),
        "LOA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LOA_PLANNER_ENABLED": "false",
        "LOA_MQTT_TLS_PORT": "0",
        "PYTHONPATH": str(ROOT),
    }
    settings = ServerSettings(
        data_dir=tmp / "data", database_url=env["LOA_DATABASE_URL"], mqtt_port=mqtt_port,
        mqtt_password=env["LOA_MQTT_PASSWORD"], admin_password=ADMIN_PASSWORD,
        planner_enabled=False, mqtt_tls_port=0,
    )  # fmt: skip
    engine = make_engine(settings.db_url)
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as db:
        conf = apply_broker_config(db, settings=settings)
    engine.dispose()
    broker = start_broker(conf, host="127.0.0.1", port=mqtt_port)
    devices: list[Device] = []
    with (tmp / "server.log").open("ab") as log:
        server = subprocess.Popen(
            [str(BIN / "loa-server"), "serve", "--no-migrate"], env=env, stdout=log, stderr=log
        )
        try:
            base = f"http://127.0.0.1:{http_port}"
            token = sign_in(base, ADMIN_PASSWORD)
            org = request(base, "/api/v1/org-units", token,
                          {"name": "Xã Đo", "kind": "commune"}, "POST")["id"]  # fmt: skip
            for i in range(args.devices):
                uid = f"probe-{i:03d}"
                made = request(base, "/api/v1/devices", token, {"uid": uid, "name": uid,
                               "org_unit_id": org, "firmware_profile": "sim"}, "POST")  # fmt: skip
                devices.append(Device(uid, made["credentials"]["password"], mqtt_port))
            for device in devices:
                if not device.subscribed.wait(30):
                    raise RuntimeError(f"{device.uid} did not subscribe (log: {tmp})")
            time.sleep(2)  # the server's own work for the connects settles
            pids = [server.pid, broker.pid]
            idle = window(pids, args.seconds)

            def probing(seconds: float) -> None:
                gap, start = 1 / args.rate, time.monotonic()
                tick = 0
                while time.monotonic() - start < seconds:
                    for device in devices:
                        device.probe()
                    tick += 1
                    time.sleep(max(0.0, start + tick * gap - time.monotonic()))

            sent_before = sum(d.answers for d in devices)
            busy = window(pids, args.seconds, probing)
            time.sleep(1)  # answers still on their way
            answers = sum(d.answers for d in devices) - sent_before
        finally:
            for device in devices:
                device.close()
            server.terminate()
            server.wait(15)
            stop_broker(broker)
    shutil.rmtree(tmp, ignore_errors=True)
    per = [round((b - i) / max(answers, 1) * 1e6, 1) for b, i in zip(busy, idle, strict=True)]
    return {
        "bench": "probe_cost", "devices": args.devices, "rate_per_device": args.rate,
        "seconds": args.seconds, "answers": answers,
        "answers_expected": round(args.devices * args.rate * args.seconds),
        "server_cpu_s": {"idle": round(idle[0], 3), "probing": round(busy[0], 3)},
        "broker_cpu_s": {"idle": round(idle[1], 3), "probing": round(busy[1], 3)},
        "server_us_per_answer": per[0], "broker_us_per_answer": per[1],
        "machine": f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}",
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def main() -> None:
    """Parse the options, run once, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50, help="registered devices (50)")
    parser.add_argument("--rate", type=float, default=10.0, help="probes a second each (10)")
    parser.add_argument("--seconds", type=float, default=10.0, help="each window's length (10)")
    args = parser.parse_args()
    before = reference_cpu_ms()
    result = run(args)
    result["reference_cpu_ms"] = [before, reference_cpu_ms()]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
