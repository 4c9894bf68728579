"""One clip to every device of a zone over a local Mosquitto, published once by the server.

The server runs as its own process (`python -m server serve`); this process holds N raw
device connections (protocol.mqtt_client.MqttLink, all on one asyncio loop), each
reassembling the chunks it reads on its zone's clip topic and checking the sha256. A
programme using the clip is approved through the API; the planner then publishes the
clip's chunks once on the zone topic and the broker fans them out.

Prints one JSON line: seconds from the approval request until every device holds a verified
copy, and the clip bytes the server sent (its Prometheus counter), also as a number of copies.
The clip is random bytes stored directly (the audio pipeline is not what is measured).
Usage: python bench/clip_fanout.py [--devices 200] [--mb 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._http import request, sign_in  # noqa: E402
from protocol import SERVER_USERNAME, zone_clip_filter, zone_clip_topic  # noqa: E402
from protocol.clipchunk import ChunkError, chunk_count, decode_chunk  # noqa: E402
from protocol.mqtt_client import MqttLink, Outgoing  # noqa: E402
from server.broker.process import free_port, start_broker, stop_broker  # noqa: E402
from server.broker.service import apply_broker_config  # noqa: E402
from server.clips.models import Clip  # noqa: E402
from server.clips.storage import ClipStorage  # noqa: E402
from server.db import make_engine, make_session_factory, session_scope  # noqa: E402
from server.devices.service import register_device  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from server.orgs.models import Zone  # noqa: E402
from server.orgs.rules import create_org_unit, set_zone_devices  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

PROBE_SHA = "0" * 64  # a topic below the zone's clip filter that no clip will ever use


class Receiver:
    """One device: hashes chunks in order as they arrive, buffering any that come early."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        self.hasher = hashlib.sha256()
        self.next_index = 0
        self.early: dict[int, bytes] = {}
        self.verified_at: float | None = None
        self.corrupt = False
        self.probed = asyncio.Event()
        self.done = asyncio.Event()

    def on_message(self, topic: str, payload: bytes) -> None:
        """MqttLink callback."""
        if topic.endswith(PROBE_SHA):
            self.probed.set()
            return
        try:
            chunk = decode_chunk(payload)
        except ChunkError:
            self.corrupt = True
            return
        if chunk.sha256 != self.sha256 or self.verified_at is not None:
            return
        self.early[chunk.index] = chunk.data
        while self.next_index in self.early:
            self.hasher.update(self.early.pop(self.next_index))
            self.next_index += 1
        if self.next_index == chunk.count:
            if self.hasher.hexdigest() == self.sha256:
                self.verified_at = time.monotonic()
            else:
                self.corrupt = True
            self.done.set()


def _metric(text: str, name: str, target: str) -> float:
    match = re.search(rf'^{name}\{{target="{target}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _setup(
    devices: int, size: int
) -> tuple[ServerSettings, list[tuple[str, str]], tuple[int, int, int], str]:
    settings = ServerSettings()
    engine = make_engine(settings.db_url)
    upgrade(engine)
    clip_data = os.urandom(size)
    sha = hashlib.sha256(clip_data).hexdigest()
    storage = ClipStorage(settings.data_dir / "clips")
    path = storage.dist_path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(clip_data)
    creds: list[tuple[str, str]] = []
    with session_scope(make_session_factory(engine)) as db:
        unit = create_org_unit(db, name="Bench", kind="commune", parent_id=None, code=None)
        ids = []
        for i in range(devices):
            device, password = register_device(
                db, uid=f"fan-{i:04d}", name=f"fan {i}", org_unit_id=unit.id,
                firmware_profile="sim",
            )  # fmt: skip
            creds.append((device.uid, password))
            ids.append(device.id)
        zone = Zone(org_unit_id=unit.id, name="Bench zone")
        db.add(zone)
        db.flush()
        set_zone_devices(db, zone=zone, device_ids=ids)
        clip = Clip(
            sha256=sha, original_sha256=sha, title="bench clip", original_duration_s=600,
            original_sample_rate=48000, original_channels=1, original_size_bytes=size,
            duration_s=600, size_bytes=size, peaks=[], org_unit_id=unit.id,
        )  # fmt: skip
        db.add(clip)
        db.flush()
        zone_id, clip_id, org_id = zone.id, clip.id, unit.id
    with session_scope(make_session_factory(engine)) as db:
        apply_broker_config(db, settings=settings)
    engine.dispose()
    return settings, creds, (org_id, zone_id, clip_id), sha


async def _connect_all(
    creds: list[tuple[str, str]],
    port: int,
    zone_id: int,
    sha: str,
    server_password: str,
    server_port: int,
) -> tuple[list[MqttLink], list[Receiver], list[asyncio.Task[None]]]:
    links, receivers, tasks = [], [], []
    for uid, password in creds:
        receiver = Receiver(sha)
        link = MqttLink(
            client_id=uid,
            host="127.0.0.1",
            port=port,
            username=uid,
            password=password,
            on_message=receiver.on_message,
            keepalive=60,
        )
        link.subscribe(zone_clip_filter(zone_id), 1)
        links.append(link)
        receivers.append(receiver)
        tasks.append(asyncio.create_task(link.run()))
    await asyncio.wait_for(asyncio.gather(*(lk.connected.wait() for lk in links)), 120)
    # Proof that every subscription is in place: a probe on the zone reaches everyone.
    prober = MqttLink(
        client_id="bench-probe",
        host="127.0.0.1",
        port=server_port,
        username=SERVER_USERNAME,
        password=server_password,
        on_message=lambda *_: None,
    )
    probe_task = asyncio.create_task(prober.run())
    await asyncio.wait_for(prober.connected.wait(), 30)
    for _ in range(50):
        await prober.publish_wait(Outgoing(zone_clip_topic(zone_id, PROBE_SHA), b"probe", qos=1))
        await asyncio.sleep(0.2)
        if all(r.probed.is_set() for r in receivers):
            break
    await prober.close()
    probe_task.cancel()
    if not all(r.probed.is_set() for r in receivers):
        raise RuntimeError("not every device subscribed to its zone within 10 s")
    return links, receivers, tasks


async def _measure(
    args: argparse.Namespace,
    base: str,
    token: str,
    settings: ServerSettings,
    creds: list[tuple[str, str]],
    ids: tuple[int, int, int],
    sha: str,
) -> dict[str, Any]:
    org_id, zone_id, clip_id = ids
    links, receivers, tasks = await _connect_all(
        creds, settings.mqtt_port, zone_id, sha, settings.mqtt_secret(), settings.server_mqtt_port
    )
    try:
        start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        body = {
            "title": "Bench",
            "clip_ids": [clip_id],
            "zone_ids": [zone_id],
            "start": start,
            "org_unit_id": org_id,
        }
        programme = await asyncio.to_thread(
            request, base, "/api/v1/programmes", token, body, "POST"
        )
        path = f"/api/v1/programmes/{programme['id']}"
        await asyncio.to_thread(request, base, f"{path}/submit", token, {}, "POST")
        began = time.monotonic()
        await asyncio.to_thread(request, base, f"{path}/approve", token, {}, "POST")
        everyone = asyncio.gather(*(r.done.wait() for r in receivers))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone, args.timeout)
        verified = [r.verified_at for r in receivers if r.verified_at is not None]
        await asyncio.sleep(1.0)  # let late duplicates, if any, show in the counter
        metrics = await asyncio.to_thread(request, base, "/metrics", token)
        zone_bytes = _metric(metrics, "loa_clip_bytes_sent_total", "zone")
        device_bytes = _metric(metrics, "loa_clip_bytes_sent_total", "device")
        return {
            "bench": "clip_fanout",
            "devices": len(receivers),
            "clip_bytes": args.mb * 1024 * 1024,
            "chunks": chunk_count(args.mb * 1024 * 1024),
            "verified": len(verified),
            "corrupt": sum(r.corrupt for r in receivers),
            "seconds_to_all_verified": round(max(verified) - began, 2) if verified else None,
            "seconds_to_first_verified": round(min(verified) - began, 2) if verified else None,
            "server_bytes_sent": int(zone_bytes + device_bytes),
            "server_bytes_sent_zone": int(zone_bytes),
            "server_bytes_sent_on_request": int(device_bytes),
            "copies_sent": round((zone_bytes + device_bytes) / (args.mb * 1024 * 1024), 3),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
        }
    finally:
        await asyncio.gather(*(lk.close(timeout=2) for lk in links))
        for task in tasks:
            task.cancel()


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--mb", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    # 200 clean disconnects at the end would each log a warning; only the JSON line matters.
    logging.getLogger("protocol.mqtt_client").setLevel(logging.ERROR)
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
        settings, creds, ids, sha = _setup(args.devices, args.mb * 1024 * 1024)
        broker = start_broker(
            settings.broker_dir / "mosquitto.conf", host="127.0.0.1", port=mqtt_port
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--no-migrate"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{http_port}"
            token = sign_in(base, env["LOA_ADMIN_PASSWORD"])
            result = asyncio.run(_measure(args, base, token, settings, creds, ids, sha))
            print(json.dumps(result), flush=True)
            if result["verified"] < args.devices:
                sys.exit(1)
        finally:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    server.kill()
            stop_broker(broker)


if __name__ == "__main__":
    main()
