"""Peak RSS growth of the server while it receives and normalises a 200 MB upload.

The upload is streamed to a running `loa-server serve` process; RSS is sampled from
/proc while it runs. Prints one JSON line. Target: growth under 100 MB (streaming, not
buffering).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.broker.process import free_port, start_broker, stop_broker  # noqa: E402
from server.broker.service import apply_broker_config  # noqa: E402
from server.db import make_engine, make_session_factory, session_scope  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

TARGET_BYTES = 200 * 1024 * 1024


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _body(path: Path, boundary: str) -> tuple[Iterator[bytes], int]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nbench\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head
        with path.open("rb") as f:
            while block := f.read(1024 * 1024):
                yield block
        yield tail

    return chunks(), len(head) + path.stat().st_size + len(tail)


def main() -> None:
    """Run the benchmark and print its JSON line."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        wav = data / "big.wav"
        seconds = TARGET_BYTES // (48000 * 2)  # 48 kHz mono s16: about 36 minutes
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"aevalsrc='0.3*sin(2*PI*(200+50*sin(2*PI*3*t))*t)':s=48000:d={seconds}",
                "-ac",
                "1",
                "-c:a",
                "pcm_s16le",
                str(wav),
            ],
            check=True,
        )
        http_port, mqtt_port = free_port(), free_port()
        env = {
            **os.environ,
            "LOA_DATA_DIR": str(data / "var"),
            "LOA_HTTP_PORT": str(http_port),
            "LOA_MQTT_PORT": str(mqtt_port),
            "LOA_MQTT_PASSWORD": secrets.token_urlsafe(12),
            "LOA_ADMIN_PASSWORD": "bench-admin-password",
            "LOA_CLIP_MAX_BYTES": str(TARGET_BYTES + 10 * 1024 * 1024),
        }
        os.environ.update(env)
        settings = ServerSettings()
        settings.data_dir.mkdir(parents=True)
        engine = make_engine(settings.db_url)
        upgrade(engine)
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
        try:
            token = ""
            form = urllib.parse.urlencode(
                {"username": "admin", "password": env["LOA_ADMIN_PASSWORD"]}
            ).encode()
            deadline = time.monotonic() + 60
            while not token and time.monotonic() < deadline:
                try:
                    url = f"http://127.0.0.1:{http_port}/api/v1/auth/token"
                    with urllib.request.urlopen(url, form, timeout=5) as r:
                        token = json.loads(r.read())["access_token"]
                except OSError:
                    time.sleep(0.2)
            time.sleep(1.0)  # let the server settle before the baseline
            baseline = _rss_mb(server.pid)
            peak = baseline
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, _rss_mb(server.pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            boundary = secrets.token_hex(12)
            body, length = _body(wav, boundary)
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=600)
            started = time.monotonic()
            conn.request(
                "POST",
                "/api/v1/clips",
                body=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "Content-Length": str(length),
                },
            )
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            elapsed = time.monotonic() - started
            done.set()
            sampler.join()
            print(
                json.dumps(
                    {
                        "bench": "clip_upload",
                        "upload_mb": round(length / 1024 / 1024, 1),
                        "status": resp.status,
                        "audio_seconds": round(float(answer.get("duration_s", 0)), 1),
                        "seconds": round(elapsed, 1),
                        "server_rss_baseline_mb": round(baseline, 1),
                        "server_rss_peak_mb": round(peak, 1),
                        "server_rss_growth_mb": round(peak - baseline, 1),
                        "machine": f"{platform.machine()} {os.cpu_count()} cores",
                    }
                ),
                flush=True,
            )
            if resp.status not in (200, 201):
                sys.exit(1)
        finally:
            server.terminate()
            server.wait(30)
            stop_broker(broker)


if __name__ == "__main__":
    main()
