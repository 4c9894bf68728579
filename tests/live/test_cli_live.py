"""`loa-server live` against a real server (uvicorn in a thread), its Mosquitto and ffmpeg."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from loa_testkit.brokerfix import has_mosquitto
from loa_testkit.stack import ADMIN_PASSWORD, prepared, serve, stack_settings
from protocol import PREFIX, SERVER_USERNAME
from protocol.liveframe import LiveFrame, decode_frame
from server.app import create_app
from server.broker.process import free_port
from server.cli import app as cli
from server.live import client as live_client
from server.settings import ServerSettings

LOA_SERVER = Path(sys.executable).with_name("loa-server")


@dataclass
class Served:
    """The running server, an admin API client and the zone (with one device) to target."""

    base_url: str
    settings: ServerSettings
    admin: httpx.Client
    token: str
    zone: int = 0
    org: int = 0
    frames: dict[str, list[LiveFrame]] = field(default_factory=dict)

    def sessions(self) -> list[dict[str, Any]]:
        """GET /api/v1/live."""
        r = self.admin.get("/api/v1/live")
        assert r.status_code == 200, r.text
        return list(r.json())

    def session(self, sid: str) -> dict[str, Any]:
        """One session as listed."""
        return next(s for s in self.sessions() if s["id"] == sid)

    def running(self) -> list[str]:
        """Ids of the sessions still running."""
        return [s["id"] for s in self.sessions() if s["state"] == "running"]


def _subscribe(served: Served) -> mqtt.Client:
    """A plain paho client (the server's account) that keeps every live frame of the zone."""
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-live-{secrets.token_hex(4)}")
    sub.username_pw_set(SERVER_USERNAME, served.settings.mqtt_secret())
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        sid = msg.topic.rsplit("/", 1)[1]
        served.frames.setdefault(sid, []).append(decode_frame(bytes(msg.payload)))

    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect("127.0.0.1", served.settings.mqtt_port)
    sub.loop_start()
    sub.subscribe(f"{PREFIX}/zone/{served.zone}/live/+", qos=0)
    assert subscribed.wait(10), "the test subscriber could not subscribe"
    return sub


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """SQLite, Mosquitto, the app served on a free port, a zone with one device."""
    if not has_mosquitto():
        pytest.fail("mosquitto is not installed (make test installs it with apt-get)")
    tmp = tmp_path_factory.mktemp("cli-live")
    settings = stack_settings(tmp / "data", f"sqlite:///{tmp / 'loa.db'}", planner_enabled=False)
    stack = ExitStack()
    stack.enter_context(prepared(settings))
    server, thread = serve(create_app(settings), port := free_port())
    base = f"http://127.0.0.1:{port}"
    try:
        r = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
        )
        token = r.json()["access_token"]
        admin = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        s = Served(base_url=base, settings=settings, admin=admin, token=token)
        s.org = admin.post(
            "/api/v1/org-units", json={"name": "Xã Hải Ninh", "kind": "commune"}
        ).json()["id"]
        body = {
            "uid": "cli-live-1",
            "name": "Cụm loa 1",
            "org_unit_id": s.org,
            "firmware_profile": "sim",
        }
        device = admin.post("/api/v1/devices", json=body).json()["device"]["id"]
        zone = {"org_unit_id": s.org, "name": "Loa chợ", "device_ids": [device]}
        s.zone = admin.post("/api/v1/zones", json=zone).json()["id"]
        sub = _subscribe(s)
        yield s
        sub.loop_stop()
        sub.disconnect()
        admin.close()
    finally:
        server.should_exit = True
        thread.join(15)
        stack.close()


def _wav(path: Path, *, seconds: float, rate: int = 44100, channels: int = 2) -> Path:
    """A sine tone WAV (44.1 kHz stereo: the client must resample and downmix it)."""
    t = np.arange(round(seconds * rate)) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(tone, channels).tobytes())
    return path


def _invoke(served: Served, *args: str, env: dict[str, str | None] | None = None) -> Any:
    """Run the command in-process (typer's CliRunner; stdin is not a terminal there)."""
    full: dict[str, str | None] = {
        "LOA_SERVER": served.base_url,
        "LOA_TOKEN": served.token,
        **(env or {}),
    }
    return CliRunner().invoke(cli, ["live", *args], env=full)


def _session_id(stdout: str) -> str:
    found = re.search(r"live session (\w+) started", stdout)
    assert found, stdout
    return found.group(1)


def _audio_ms(view: dict[str, Any]) -> int:
    """Milliseconds of frames that carried the source's audio (not fill-in silence)."""
    return (int(view["frames_sent"]) - int(view["silent_frames"])) * int(view["frame_ms"])


def _wait_frames(served: Served, sid: str, count: int) -> list[LiveFrame]:
    """The frames the subscriber got, once `count` arrived (QoS 0 on localhost: all of them)."""
    deadline = time.monotonic() + 5
    while len(served.frames.get(sid, [])) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return served.frames.get(sid, [])


def test_a_file_streams_in_real_time_and_ends_the_session(served: Served, tmp_path: Path) -> None:
    clip = _wav(tmp_path / "thong-bao.wav", seconds=2.0)
    started = time.monotonic()
    result = _invoke(served, "--input", str(clip), "--zone", str(served.zone), "--yes")
    took = time.monotonic() - started
    assert result.exit_code == 0, (result.stdout, result.stderr)
    sid = _session_id(result.stdout)
    assert f"ws://127.0.0.1:{served.base_url.rsplit(':', 1)[1]}/api/v1/live/{sid}/ingest" in (
        result.stdout
    )
    assert served.token not in result.stdout + result.stderr  # never echo the credentials
    assert took >= 1.8  # paced in real time, not pushed as fast as the socket takes it
    view = served.session(sid)
    assert view["state"] == "ended", view
    assert view["end_reason"] == "the file ended"  # not "the microphone" (issue 11)
    assert view["label"] == "thong-bao.wav"
    assert 1900 <= _audio_ms(view) <= 2060, view  # 2 s, none dropped
    assert view["frames_sent"] < 400, view
    frames = _wait_frames(served, sid, view["frames_sent"])
    assert len(frames) == view["frames_sent"]
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert frames[-1].last and not any(f.last for f in frames[:-1])


def test_raw_pcm_on_stdin_at_another_rate_is_resampled(served: Served, tmp_path: Path) -> None:
    t = np.arange(32000) / 16000  # 2 s at 16 kHz
    pcm = (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()
    env = {**os.environ, "LOA_SERVER": served.base_url, "LOA_TOKEN": served.token}
    done = subprocess.run(
        [str(LOA_SERVER), "live", "--input", "-", "--rate", "16000", "--zone", str(served.zone)],
        input=pcm, capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, (out, err)
    view = served.session(_session_id(out))
    assert view["state"] == "ended" and view["label"] == "line-in"
    assert view["end_reason"] == "the piped audio ended"
    assert 1900 <= _audio_ms(view) <= 2060, view
    assert "2.0 s of audio sent" in err


def test_ctrl_c_stops_a_pipe_cleanly(served: Served) -> None:
    env = {**os.environ, "LOA_SERVER": served.base_url, "LOA_TOKEN": served.token}
    proc = subprocess.Popen(
        [str(LOA_SERVER), "live", "-i", "-", "--zone", str(served.zone)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    chunk = bytes(1920)  # 20 ms of silence, written faster than real time: the client paces

    def produce() -> None:
        try:
            while proc.poll() is None:
                proc.stdin.write(chunk)  # type: ignore[union-attr]
        except (BrokenPipeError, ValueError, OSError):
            pass

    feeder = threading.Thread(target=produce, daemon=True)
    feeder.start()
    sid = _session_id(proc.stdout.readline().decode())
    deadline = time.monotonic() + 10
    while served.session(sid)["frames_sent"] - served.session(sid)["silent_frames"] < 25:
        assert time.monotonic() < deadline, "no audio reached the session"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(20)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 0, err
    assert "Traceback" not in err and "Exception" not in err, err
    assert "stopping the broadcast" in err and "s of audio sent" in err
    view = served.session(sid)
    assert view["state"] == "ended"
    assert view["end_reason"] == "the sender stopped the broadcast"


def test_a_session_the_server_ends_stops_the_client(served: Served, tmp_path: Path) -> None:
    clip = _wav(tmp_path / "long.wav", seconds=4.0, rate=48000, channels=1)
    args = ["--input", str(clip), "--zone", str(served.zone), "--duration", "1"]
    result = _invoke(served, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    view = served.session(_session_id(result.stdout))
    assert view["end_reason"] == "the duration limit of 1 s was reached"
    assert "ended: the duration limit" in result.stdout


def test_a_file_that_is_not_audio_starts_nothing(served: Served, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("Đây không phải âm thanh.\n" * 50)
    before = set(served.running())
    result = _invoke(served, "--input", str(bogus), "--zone", str(served.zone))
    assert result.exit_code == 1
    assert "could not be read as audio" in result.stderr and "Traceback" not in result.stderr
    assert set(served.running()) == before
    result = _invoke(served, "--input", str(tmp_path / "missing.mp3"), "--zone", "1")
    assert result.exit_code == 1 and "could not be found" in result.stderr


def test_bad_credentials_and_targets_get_the_servers_reason(served: Served, tmp_path: Path) -> None:
    clip = _wav(tmp_path / "a.wav", seconds=0.5)
    before = set(served.running())
    result = _invoke(
        served, "--input", str(clip), "--zone", str(served.zone), "--username", "admin",
        env={"LOA_TOKEN": None, "LOA_PASSWORD": "sai-mat-khau"},
    )  # fmt: skip
    assert result.exit_code == 1
    assert "error:" in result.stderr and "HTTP 401" in result.stderr, result.stderr
    result = _invoke(served, "--input", str(clip), "--zone", "987654")
    assert result.exit_code == 1 and "Unknown zone id(s): 987654." in result.stderr
    result = _invoke(served, "--input", str(clip))
    assert result.exit_code == 1 and "--zone" in result.stderr
    result = _invoke(served, "--input", str(clip), "--zone", "1", "--server", "ftp://x")
    assert result.exit_code == 1 and "http://" in result.stderr
    assert set(served.running()) == before


def test_emergency_needs_confirmation_it_cannot_ask_for(served: Served, tmp_path: Path) -> None:
    clip = _wav(tmp_path / "khan-cap.wav", seconds=0.5)
    before = set(served.running())
    args = ["--input", str(clip), "--zone", str(served.zone), "--priority", "emergency"]
    result = _invoke(served, *args)
    assert result.exit_code == 1 and "--yes" in result.stderr
    result = _invoke(served, "--input", "-", "--zone", "1", "--priority", "emergency")
    assert result.exit_code == 1 and "--yes" in result.stderr
    assert set(served.running()) == before


class _Lines(logging.Handler):
    """Every formatted log line, as a log file would hold it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_no_token_reaches_a_log_line_and_a_token_in_the_url_is_refused(
    served: Served, tmp_path: Path
) -> None:
    names = ("uvicorn.error", "uvicorn.access", "")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    handler = _Lines()
    for lg in loggers:  # what `loa-server serve` logs at its default level, info
        lg.setLevel(logging.INFO)
        lg.addHandler(handler)
    try:
        clip = _wav(tmp_path / "a.wav", seconds=0.5)
        result = _invoke(served, "--input", str(clip), "--zone", str(served.zone))
        assert result.exit_code == 0, (result.stdout, result.stderr)
        # An old client still putting the token in the URL is refused, and not logged.
        sid = served.admin.post(
            "/api/v1/live", json={"source": "mic", "zone_ids": [served.zone]}
        ).json()["id"]
        url = f"{served.base_url.replace('http', 'ws')}/api/v1/live/{sid}/ingest"
        with (
            ws_connect(f"{url}?token={served.token}") as ws,
            pytest.raises(ConnectionClosed) as closed,
        ):
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "not in the URL" in closed.value.rcvd.reason
        served.admin.delete(f"/api/v1/live/{sid}")
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert any("WebSocket" in line and "ingest" in line for line in handler.lines), handler.lines
    leaked = [line for line in handler.lines if served.token in line]
    assert not leaked, leaked


def test_the_client_says_how_many_devices_are_ready_before_words_are_heard_everywhere(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device answers its join once it can decode; this one never runs, so never answers."""
    monkeypatch.setattr(live_client, "READY_WAIT_S", 0.6)
    body = {"source": "mic", "zone_ids": [served.zone], "playout_delay_ms": 500}
    session = served.admin.post("/api/v1/live", json=body).json()
    said: list[str] = []
    broadcast = live_client.Broadcast(
        server=served.base_url, token=served.token, session=session, say=said.append
    )
    try:
        started = time.monotonic()
        asyncio.run(broadcast.readiness())
        assert 0.6 <= time.monotonic() - started < 5
        assert said == [
            f"live {session['id']}: 0/1 devices ready after 0.6 s;"
            " the others start hearing it when they join"
        ]
    finally:
        served.admin.delete(f"/api/v1/live/{session['id']}")
