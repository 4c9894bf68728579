"""A CAP 1.2 emergency alert, text only, to a province: audible on every cluster within 3 s?

The same stage as bench/emergency.py (its setup, fleets and readiness wait are reused): a
province with --communes communes holding --devices simulated agents in real
`python -m edge_agent fleet` processes, the server as its own process beside a local
Mosquitto. The province gets the administrative code 01 and a source key (the disaster
office: emergency, trusted). Once every agent is online with a clock estimate, t0 is taken
just before `POST /api/v1/cap` with an Immediate/Extreme alert geocoded 01 and no audio, so
the figure includes parsing, TTS (espeak-ng), normalising, the bulletin's emergency
programmes, planning, the clip's fan-out and the schedule documents. Each agent's proof of
play (`GET /api/v1/plays`, the programmes made from the bulletin) carries `actual_start`,
the server-clock instant it started playing.

Prints one JSON line: devices, how many reported, audible latency (actual_start - t0)
p50/p95/max, how many within 3 s, the API call's own time, server and fleet CPU, machine.
Exits 1 if a device sent no proof within --timeout.
Usage: python bench/cap.py [--devices 100] [--communes 4] [--fleets 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._http import proc_cpu_s, request, sign_in  # noqa: E402
from bench.emergency import _percentile, _setup, _start_fleet, _stop, _wait_ready  # noqa: E402
from server.broker.process import free_port, start_broker, stop_broker  # noqa: E402

TARGET_S = 3.0
PROVINCE_CODE = "01"


def _alert(identifier: str) -> bytes:
    """An Immediate/Extreme CAP alert for the province, text only (Loa speaks it)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        f"<identifier>{identifier}</identifier><sender>pctt@bench.loa</sender>"
        f"<sent>{now.isoformat()}</sent><status>Actual</status><msgType>Alert</msgType>"
        "<scope>Public</scope><info><language>vi-VN</language><category>Met</category>"
        "<event>Lũ quét</event><urgency>Immediate</urgency><severity>Extreme</severity>"
        f"<certainty>Observed</certainty><expires>{(now + timedelta(hours=2)).isoformat()}"
        "</expires><headline>Cảnh báo lũ quét khẩn cấp</headline>"
        "<instruction>Người dân sơ tán ngay lên vùng cao.</instruction>"
        f"<area><areaDesc>Toàn tỉnh</areaDesc><geocode><valueName>MA_DVHC</valueName>"
        f"<value>{PROVINCE_CODE}</value></geocode></area></info></alert>"
    ).encode()


def _post_cap(base: str, key: str, document: bytes) -> dict[str, Any]:
    req = urllib.request.Request(f"{base}/api/v1/cap", data=document, method="POST")
    req.add_header("Authorization", f"Bearer {key}")
    req.add_header("Content-Type", "application/cap+xml")
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def _plays(base: str, token: str, programme_ids: set[int], since: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = request(base, f"/api/v1/plays?limit=1000&offset={offset}&since={since}", token)
        found += [p for p in page["items"] if p["programme_id"] in programme_ids]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return found


def _measure(
    args: argparse.Namespace, base: str, token: str, pids: list[int], org: int
) -> dict[str, Any]:
    online_s, synced_s = _wait_ready(base, token, args.devices, args.ready_timeout)
    request(base, f"/api/v1/org-units/{org}", token, {"code": PROVINCE_CODE}, "PATCH")
    body = {"name": "Ban chỉ huy PCTT", "org_unit_id": org, "max_level": "emergency"}
    key = request(base, "/api/v1/sources", token, body | {"trusted_levels": ["emergency"]}, "POST")
    time.sleep(1.0)
    since = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    load_before = os.getloadavg()[0]
    cpu_before = [proc_cpu_s(pid) for pid in pids]
    t0 = time.time()
    receipt = _post_cap(base, key["key"], _alert(f"bench-{secrets.token_hex(4)}"))
    api_s = time.time() - t0
    bulletin = request(base, f"/api/v1/bulletins/{receipt['bulletin_id']}", token)
    programmes = {d["programme_id"] for d in bulletin["deliveries"] if d.get("programme_id")}
    deadline = time.monotonic() + args.timeout
    plays = _plays(base, token, programmes, since)
    while len(plays) < args.devices and time.monotonic() < deadline:
        time.sleep(0.5)
        plays = _plays(base, token, programmes, since)
    reported_s = time.time() - t0
    cpu_after = [proc_cpu_s(pid) for pid in pids]
    heard = [
        datetime.fromisoformat(p["actual_start"]).timestamp() - t0
        for p in plays
        if p["actual_start"] is not None
    ]
    return {
        "bench": "cap",
        "devices": args.devices,
        "communes": args.communes,
        "fleet_processes": args.fleets,
        "bulletin_status": receipt["bulletin_status"],
        "programmes": len(programmes),
        "reported": len(plays),
        "played": sum(p["outcome"] == "played" for p in plays),
        "audible_s_min": round(min(heard), 3) if heard else None,
        "audible_s_p50": round(statistics.median(heard), 3) if heard else None,
        "audible_s_p95": round(_percentile(heard, 0.95), 3) if heard else None,
        "audible_s_max": round(max(heard), 3) if heard else None,
        "within_3s": sum(h <= TARGET_S for h in heard),
        "api_call_s": round(api_s, 3),
        "seconds_to_all_reported": round(reported_s, 2),
        "seconds_to_all_online": round(online_s, 1),
        "seconds_to_all_synced": round(synced_s, 1),
        "server_cpu_s": round(cpu_after[0] - cpu_before[0], 2),
        "fleet_cpu_s": round(sum(cpu_after[1:]) - sum(cpu_before[1:]), 2),
        "load1_before": round(load_before, 2),
        "load1_after": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--communes", type=int, default=4)
    parser.add_argument("--fleets", type=int, default=2, help="agent processes")
    parser.add_argument("--timeout", type=float, default=60, help="s to wait for every proof")
    parser.add_argument("--ready-timeout", type=float, default=180)
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
            result = _measure(args, base, token, pids, org)
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
