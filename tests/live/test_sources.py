"""Relay and clip sources: real HTTP streams (MP3 by ffmpeg), a silent server, a clip upload."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loa_testkit.stack import Stack, live_stack
from server.live.service import UNREGISTERED
from tests.live.test_api import _fleet, _get, _post


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The server with live audio and its own broker; relays may reach this machine."""
    monkeypatch.setenv("LOA_RELAY_ALLOWED_HOSTS", "127.0.0.1")  # the test radios are local
    with live_stack(tmp_path) as stack:
        yield stack


@pytest.fixture
def radio(tmp_path: Path) -> Iterator[str]:
    """An HTTP server: /radio.mp3 (2 s of tone, then the connection ends), /page (HTML)."""
    mp3 = tmp_path / "radio.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=2", "-ac", "1", str(mp3)],
        check=True,
    )
    body = mp3.read_bytes()
    hits = {"radio": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/radio.mp3":
                hits["radio"] += 1
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>" + b"not audio " * 500 + b"</body></html>")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A TCP server that accepts and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/stream"
    sock.close()


def _source(api: Stack, unit: int, url: str, **fields: Any) -> int:
    """Register url as a relay source of unit (this machine's address: allowed on purpose)."""
    body = {"name": f"Đài {url[-24:]}", "url": url, "org_unit_id": unit, "allow_private": True}
    return int(_post(api, "/api/v1/relay-sources", body | fields)["id"])


def _wait(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_relay_plays_and_reconnects_after_the_stream_drops(api: Stack, radio: str) -> None:
    unit, zones, _ = _fleet(api, {"r": ["dev-r1"]})
    source = _source(api, unit, f"{radio}/radio.mp3")
    body = {"source": "relay", "relay_source_id": source, "zone_ids": [zones["r"]]}
    sid = _post(api, "/api/v1/live", body)["id"]
    # 2 s of stream, then the server hangs up: the relay reconnects and keeps sending frames.
    _wait(lambda: _get(api, sid)["source_status"]["reconnects"] >= 1)
    view = _get(api, sid)
    assert view["state"] == "running"
    assert view["source_status"]["error"] == "the stream ended"
    _wait(lambda: _get(api, sid)["frames_sent"] * _get(api, sid)["frame_ms"] > 3000)
    view = _get(api, sid)
    relayed_ms = (view["frames_sent"] - view["silent_frames"]) * view["frame_ms"]
    assert relayed_ms >= 1900  # the 2 s of tone were relayed
    assert view["silent_frames"] > 0  # silence, not garbage, while reconnecting
    r = api.client.delete(f"/api/v1/live/{sid}", headers=api.headers)
    assert r.json()["state"] == "ended" and "stopped by admin" in r.json()["end_reason"]


def test_relay_that_is_not_audio_is_refused_at_once(api: Stack, radio: str) -> None:
    unit, zones, _ = _fleet(api, {"n": ["dev-n1"]})
    source = _source(api, unit, f"{radio}/page")
    body = {"source": "relay", "relay_source_id": source, "zone_ids": [zones["n"]]}
    started = time.monotonic()
    r = api.client.post("/api/v1/live", json=body, headers=api.headers)
    assert r.status_code == 422, r.text
    assert "relay address" in r.json()["detail"] and time.monotonic() - started < 6


def test_relay_that_never_answers_runs_silent_with_an_error(api: Stack, silent_url: str) -> None:
    unit, zones, _ = _fleet(api, {"s": ["dev-s1"]})
    body = {"source": "url", "url": silent_url, "zone_ids": [zones["s"]]}  # the older name
    _source(api, unit, silent_url)  # a raw URL is accepted when it is a registered source's
    sid = _post(api, "/api/v1/live", body)["id"]
    _wait(lambda: _get(api, sid)["source_status"]["reconnects"] >= 1, timeout=20)
    view = _get(api, sid)
    assert view["state"] == "running" and view["source_status"]["error"]
    assert view["frames_sent"] == view["silent_frames"] > 0
    api.client.delete(f"/api/v1/live/{sid}", headers=api.headers)


def test_only_registered_enabled_sources_of_the_targets_are_relayed(api: Stack, radio: str) -> None:
    unit, zones, _ = _fleet(api, {"g": ["dev-g1"]})
    province = _post(api, "/api/v1/org-units", {"name": "Tỉnh Quảng Bình", "kind": "province"})
    other = _post(api, "/api/v1/org-units", {"name": "Xã Khác", "kind": "commune"})["id"]
    stream = f"{radio}/radio.mp3"
    theirs = _source(api, other, stream)  # another commune's: not usable here
    disabled = _source(api, unit, f"{radio}/radio.mp3?off", enabled=False)

    def relay(**fields: Any) -> Any:
        body = {"source": "relay", "zone_ids": [zones["g"]]} | fields
        return api.client.post("/api/v1/live", json=body, headers=api.headers)

    for fields in ({"relay_source_id": theirs}, {"relay_source_id": disabled},
                   {"relay_source_id": 987654}, {"url": stream},
                   {"url": f"{radio}/radio.mp3?off"}):  # fmt: skip
        r = relay(**fields)
        assert r.status_code == 422, (fields, r.text)
        # One answer for every case: a foreign or disabled source looks like a missing one.
        named = fields.get("relay_source_id")
        detail = r.json()["detail"].removeprefix(f"Relay source {named}: " if named else "")
        assert detail == UNREGISTERED, fields
    assert relay().status_code == 422  # neither a source nor a URL
    assert api.client.get("/api/v1/live", headers=api.headers).json() == []
    # A source of a unit above the commune serves it; a URL equal to its URL names it.
    moved = api.client.patch(
        f"/api/v1/org-units/{unit}", json={"parent_id": province["id"]}, headers=api.headers
    )
    assert moved.status_code == 200, moved.text
    _source(api, province["id"], stream, name="VOV1")
    got = relay(url=stream)
    assert got.status_code == 201, got.text
    assert got.json()["label"] == "VOV1"  # an unlabelled relay is named after its source
    api.client.delete(f"/api/v1/live/{got.json()['id']}", headers=api.headers)


def test_a_clip_played_as_live_ends_with_the_clip(api: Stack, tmp_path: Path) -> None:
    _, zones, _ = _fleet(api, {"c": ["dev-c1"]})
    wav = tmp_path / "notice.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=500:d=1.5", str(wav)], check=True
    )
    with wav.open("rb") as f:
        r = api.client.post(
            "/api/v1/clips", headers=api.headers, data={"title": "Thông báo"},
            files={"file": ("notice.wav", f, "audio/wav")},
        )  # fmt: skip
    assert r.status_code == 201, r.text
    body = {"source": "file", "clip_id": r.json()["id"], "zone_ids": [zones["c"]]}
    sid = _post(api, "/api/v1/live", body)["id"]
    _wait(lambda: _get(api, sid)["state"] == "ended", timeout=10)
    view = _get(api, sid)
    assert view["end_reason"] == "the clip finished"
    assert 1400 <= view["frames_sent"] * view["frame_ms"] <= 2200  # about 1.5 s of frames
