"""An emergency broadcast to a whole province: audible on every simulated device within 2 s?

A province org unit with --communes communes, each with one zone of its share of --devices
devices. The server runs as its own process (`python -m server serve`) beside a local
Mosquitto; the devices are real simulated agents (`python -m edge_agent fleet`, split over
--fleets processes, each its own event loop). Once every device is online and has reported a
clock estimate, a 3 s clip is uploaded through the API and t0 is taken just before
`POST /api/v1/live` (source file, priority emergency, the province org unit, default 500 ms
playout delay). Each agent's proof of play (`GET /api/v1/plays`, item live:SESSION) carries
`actual_start`, the server-clock instant its first frame was heard.

Prints one JSON line: devices, how many reported, audible latency (actual_start - t0)
p50/p95/max, how many within 2 s, frames played per device (from the proofs' reasons; a
starved fleet loop plays frames late, i.e. conceals them), seconds of sound in a few devices'
recordings (DATA_DIR/sim/output.wav), server and fleet CPU seconds, load average, machine.
Exits 1 if a device sent no proof within --timeout.
Usage: python bench/emergency.py [--devices 100] [--communes 4] [--fleets 2]
"""

from __future__ import annotations

import argparse
import array
import io
import json
import math
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import wave
from datetime import datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._http import proc_cpu_s, request, sign_in  # noqa: E402
from server.broker.process import free_port, start_broker, stop_broker  # noqa: E402
from server.broker.service import apply_broker_config  # noqa: E402
from server.db import make_engine, make_session_factory, session_scope  # noqa: E402
from server.devices.service import register_device  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from server.orgs.models import Zone  # noqa: E402
from server.orgs.rules import create_org_unit, set_zone_devices  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

TARGET_S = 2.0
CLIP_S = 3.0
RATE = 48000
# Telemetry carries each agent's clock estimate: report it sooner than the 30 s default so
# the wait for "every clock synced" is short.
TELEMETRY_S = 5


def _setup(devices: int, communes: int, creds_paths: list[Path]) -> tuple[ServerSettings, int]:
    """Database, devices, zones and broker config; credentials dealt over the fleet files."""
    settings = ServerSettings()
    engine = make_engine(settings.db_url)
    upgrade(engine)
    files = [p.open("w") for p in creds_paths]
    try:
        with session_scope(make_session_factory(engine)) as db:
            province = create_org_unit(
                db, name="Tỉnh thử", kind="province", parent_id=None, code=None
            )
            for c in range(communes):
                commune = create_org_unit(
                    db, name=f"Xã {c + 1}", kind="commune", parent_id=province.id, code=None
                )
                ids = []
                for i in range(c, devices, communes):
                    device, password = register_device(
                        db, uid=f"em-{i:05d}", name=f"loa {i}", org_unit_id=commune.id,
                        firmware_profile="sim",
                    )  # fmt: skip
                    ids.append(device.id)
                    line = json.dumps({"device_id": device.uid, "password": password})
                    files[i % len(files)].write(line + "\n")
                zone = Zone(org_unit_id=commune.id, name=f"Cụm loa xã {c + 1}")
                db.add(zone)
                db.flush()
                set_zone_devices(db, zone=zone, device_ids=ids)
            province_id = province.id
        with session_scope(make_session_factory(engine)) as db:
            apply_broker_config(db, settings=settings)
    finally:
        for f in files:
            f.close()
    engine.dispose()
    return settings, province_id


def _tone_wav() -> bytes:
    """A 3 s, 1 kHz warning tone, mono 16-bit WAV."""
    samples = array.array(
        "h",
        (int(12000 * math.sin(2 * math.pi * 1000 * n / RATE)) for n in range(int(CLIP_S * RATE))),
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def _upload(base: str, token: str) -> tuple[int, float]:
    """Upload the tone through the API (checked, normalised, encoded); its id and duration."""
    boundary = secrets.token_hex(12)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nCảnh báo thử\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="warning.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + _tone_wav()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(f"{base}/api/v1/clips", data=body, method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    with urllib.request.urlopen(req, timeout=120) as resp:
        clip = json.loads(resp.read())
        return int(clip["id"]), float(clip["duration_s"])


def _all_devices(base: str, token: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = request(base, f"/api/v1/devices?limit=1000&offset={len(found)}", token)
        found += page["items"]
        if not page["items"] or len(found) >= page["total"]:
            return found


def _wait_ready(base: str, token: str, devices: int, timeout: float) -> tuple[float, float]:
    """Seconds until all are online, then until all have reported a clock estimate."""
    started = time.monotonic()
    deadline = started + timeout
    online_s = -1.0
    while time.monotonic() < deadline:
        if online_s < 0:
            page = request(base, "/api/v1/devices?online=true&limit=1", token)
            if page["total"] >= devices:
                online_s = time.monotonic() - started
        else:
            synced = sum(
                isinstance((d.get("telemetry") or {}).get("clock_error_ms"), (int, float))
                for d in _all_devices(base, token)
            )
            if synced >= devices:
                return online_s, time.monotonic() - started
        time.sleep(0.5)
    what = "reported a clock estimate" if online_s >= 0 else "came online"
    raise RuntimeError(f"not every device {what} within {timeout:g} s")


def _live_plays(base: str, token: str, item_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = request(base, f"/api/v1/plays?limit=1000&offset={offset}", token)
        found += [p for p in page["items"] if p["item_id"] == item_id]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return found


def _sound_s(path: Path) -> float:
    """Seconds of a 16-bit mono recording whose 20 ms windows are not silent; 0 if none."""
    try:
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            samples = array.array("h", w.readframes(w.getnframes()))
    except (OSError, wave.Error, EOFError):
        return 0.0
    window = rate // 50
    loud = 0
    for start in range(0, len(samples), window):
        part = samples[start : start + window]
        if math.sqrt(sum(x * x for x in part) / len(part)) > 0.01 * 32768:
            loud += 1
    return loud / 50


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _frames(play: dict[str, Any], what: str) -> int:
    """A count from the proof's reason ("frames played 150, concealed 0, ...")."""
    match = re.search(rf"{what} (\d+)", play["reason"] or "")
    return int(match.group(1)) if match else 0


def _measure(
    args: argparse.Namespace, base: str, token: str, pids: list[int], data_root: Path, org: int
) -> dict[str, Any]:
    online_s, synced_s = _wait_ready(base, token, args.devices, args.ready_timeout)
    clip_id, clip_s = _upload(base, token)
    time.sleep(1.0)  # let the upload's work settle: measure the emergency alone
    load_before = os.getloadavg()[0]
    cpu_before = [proc_cpu_s(pid) for pid in pids]
    body = {"source": "file", "clip_id": clip_id, "org_unit_id": org, "priority": "emergency"}
    t0 = time.time()
    session = request(base, "/api/v1/live", token, body, "POST")
    api_s = time.time() - t0
    item_id = f"live:{session['id']}"
    deadline = time.monotonic() + args.timeout
    plays = _live_plays(base, token, item_id)
    while len(plays) < args.devices and time.monotonic() < deadline:
        time.sleep(0.5)
        plays = _live_plays(base, token, item_id)
    reported_s = time.time() - t0
    cpu_after = [proc_cpu_s(pid) for pid in pids]
    load_after = os.getloadavg()[0]
    [ended] = [s for s in request(base, "/api/v1/live", token) if s["id"] == session["id"]]
    played = [_frames(p, "played") for p in plays]
    heard = [
        datetime.fromisoformat(p["actual_start"]).timestamp() - t0
        for p in plays
        if p["actual_start"] is not None
    ]
    # A few recordings, spread over the communes: how much of the 3 s tone each holds.
    uids = sorted(p["device_uid"] for p in plays)[:: max(1, len(plays) // args.check_wavs)]
    sound = [_sound_s(data_root / uid / "sim" / "output.wav") for uid in uids[: args.check_wavs]]
    first_mid = (
        [round(h, 3) for h in (min(heard), statistics.median(heard))] if heard else [None, None]
    )
    return {
        "bench": "emergency",
        "devices": args.devices,
        "communes": args.communes,
        "fleet_processes": args.fleets,
        "targeted": session["targeted"],
        "reported": len(plays),
        "played": sum(p["outcome"] == "played" for p in plays),
        "audible_s_min": first_mid[0],
        "audible_s_p50": first_mid[1],
        "audible_s_p95": round(_percentile(heard, 0.95), 3) if heard else None,
        "audible_s_max": round(max(heard), 3) if heard else None,
        "within_2s": sum(h <= TARGET_S for h in heard),
        "api_call_s": round(api_s, 3),
        "seconds_to_all_reported": round(reported_s, 2),
        "frames_sent": ended["frames_sent"],
        "frames_played_min": min(played, default=None),
        "frames_played_p50": statistics.median(played) if played else None,
        "devices_whole_clip": sum(
            n >= ended["frames_sent"] - ended["silent_frames"] for n in played
        ),
        "frames_concealed": sum(_frames(p, "concealed") for p in plays),
        "frames_late": sum(_frames(p, "late") for p in plays),
        "frames_dropped": sum(_frames(p, "dropped") for p in plays),
        "wavs_checked": len(sound),
        "wavs_with_sound": sum(s > 0 for s in sound),
        "wav_sound_s": sorted(sound),
        "clip_s": round(clip_s, 2),
        "seconds_to_all_online": round(online_s, 1),
        "seconds_to_all_synced": round(synced_s, 1),
        "server_cpu_s": round(cpu_after[0] - cpu_before[0], 2),
        "fleet_cpu_s": round(sum(cpu_after[1:]) - sum(cpu_before[1:]), 2),
        "load1_before": round(load_before, 2),
        "load1_after": round(load_after, 2),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }


def _start_fleet(
    creds: Path, count: int, port: int, root: Path, log: IO[bytes], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """One `python -m edge_agent fleet` process running `count` simulated agents."""
    cmd = [sys.executable, "-m", "edge_agent", "fleet", "--count", str(count),
           "--credentials", str(creds), "--mqtt-port", str(port),
           "--data-root", str(root)]  # fmt: skip
    agent_env = {**env, "LOA_AGENT_TELEMETRY_INTERVAL_S": str(TELEMETRY_S)}
    return subprocess.Popen(cmd, env=agent_env, stdout=subprocess.DEVNULL, stderr=log)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--communes", type=int, default=4)
    parser.add_argument("--fleets", type=int, default=2, help="agent processes")
    parser.add_argument("--timeout", type=float, default=60, help="s to wait for every proof")
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument("--check-wavs", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.communes <= args.devices or not 1 <= args.fleets <= args.devices:
        parser.error("need 1 <= --communes, --fleets <= --devices")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "server").mkdir()
        http_port, mqtt_port = free_port(), free_port()
        env = {
            **os.environ,
            "LOA_DATA_DIR": str(data / "server"),
            "LOA_HTTP_PORT": str(http_port),
            "LOA_MQTT_PORT": str(mqtt_port),
            "LOA_MQTT_PASSWORD": secrets.token_urlsafe(12),
            "LOA_ADMIN_PASSWORD": "bench-admin-password",
        }
        os.environ.update(env)
        creds = [data / f"fleet-{n}.jsonl" for n in range(args.fleets)]
        settings, org = _setup(args.devices, args.communes, creds)
        broker = start_broker(
            settings.broker_dir / "mosquitto.conf", host="127.0.0.1", port=mqtt_port
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--no-migrate"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        fleets: list[subprocess.Popen[bytes]] = []
        logs = [data / f"fleet-{n}.log" for n in range(args.fleets)]
        try:
            base = f"http://127.0.0.1:{http_port}"
            token = sign_in(base, env["LOA_ADMIN_PASSWORD"])
            for n, path in enumerate(creds):
                count = len(path.read_text().splitlines())
                with logs[n].open("wb") as log:
                    fleets.append(_start_fleet(path, count, mqtt_port, data / "agents", log, env))
            pids = [server.pid] + [f.pid for f in fleets]
            result = _measure(args, base, token, pids, data / "agents", org)
            print(json.dumps(result, ensure_ascii=False), flush=True)
            if result["reported"] < args.devices:
                sys.exit(1)
        except BaseException:
            for log_path in logs:  # the agents' warnings say why, if anything went wrong
                if log_path.exists():
                    sys.stderr.write(log_path.read_text(errors="replace")[-3000:])
            raise
        finally:
            for proc in [*fleets, server]:
                _stop(proc)
            stop_broker(broker)


if __name__ == "__main__":
    main()
