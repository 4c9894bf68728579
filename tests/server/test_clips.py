"""Clip library over HTTP: real uploads, real ffmpeg, every bad input gets a clear 4xx."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from loa_testkit.stack import Stack

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

SPEECHLIKE = (
    "aevalsrc='0.4*sin(2*PI*(180+40*sin(2*PI*3*t))*t)*(0.6+0.4*sin(2*PI*4*t))':s=44100:d={d}"
)


def _ff(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Test files made here with ffmpeg (no binary audio in the repository)."""
    d = tmp_path_factory.mktemp("media")
    src = ["-f", "lavfi", "-i", SPEECHLIKE.format(d=6)]
    out = {
        "ulaw": d / "mixer.wav",
        "mp3": d / "station.mp3",
        "m4a": d / "phone.m4a",
        "mp4": d / "news.mp4",
        "video_only": d / "silent-video.mp4",
        "long": d / "long.mp3",
    }
    _ff(*src, "-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw", str(out["ulaw"]))
    _ff(*src, "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k", str(out["mp3"]))
    _ff(*src, "-c:a", "aac", "-b:a", "64k", str(out["m4a"]))
    _ff(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10:duration=6",
        *src,
        "-c:v",
        "mpeg4",
        "-c:a",
        "aac",
        "-shortest",
        str(out["mp4"]),
    )
    _ff(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10:duration=3",
        "-c:v",
        "mpeg4",
        str(out["video_only"]),
    )
    _ff(
        "-f",
        "lavfi",
        "-i",
        SPEECHLIKE.format(d=40),
        "-ac",
        "1",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "32k",
        str(out["long"]),
    )
    data = out["mp3"].read_bytes()
    out["truncated"] = d / "truncated.mp3"
    out["truncated"].write_bytes(data[:2000])
    out["random"] = d / "random.mp3"
    out["random"].write_bytes(random.Random(7).randbytes(50_000))
    out["text"] = d / "notes.mp3"
    out["text"].write_text("Đây là một tệp văn bản, không phải âm thanh.\n" * 200)
    out["png"] = d / "picture.wav"
    _ff(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:duration=1",
        "-frames:v",
        "1",
        "-f",
        "image2",
        "-c:v",
        "png",
        str(out["png"]),
    )
    out["empty"] = d / "empty.wav"
    out["empty"].write_bytes(b"")
    return out


def _upload(api: Stack, path: Path, **fields: str):  # type: ignore[no-untyped-def]
    data = {"title": "Bản tin sáng", **fields}
    with path.open("rb") as f:
        return api.client.post(
            "/api/v1/clips",
            headers=api.headers,
            data=data,
            files={"file": (path.name, f, "application/octet-stream")},
        )


def _temp_files(api: Stack) -> list[Path]:
    tmp = api.settings.data_dir / "clips" / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


@pytest.mark.parametrize("kind", ["ulaw", "mp3", "m4a", "mp4"])
def test_upload_any_audio_is_normalised(api: Stack, media: dict[str, Path], kind: str) -> None:
    r = _upload(api, media[kind], topic="news")
    assert r.status_code == 201, r.text
    clip = r.json()
    assert clip["duration_s"] == pytest.approx(6, abs=0.3)
    assert clip["loudness_after_lufs"] == pytest.approx(-16, abs=1)
    assert clip["original_channels"] in (1, 2)
    audio = api.client.get(f"/api/v1/clips/{clip['id']}/audio", headers=api.headers)
    assert audio.status_code == 200
    assert audio.content[:4] == b"OggS"
    assert hashlib.sha256(audio.content).hexdigest() == clip["sha256"]
    assert _temp_files(api) == []


def test_same_audio_twice_returns_the_same_clip(api: Stack, media: dict[str, Path]) -> None:
    first = _upload(api, media["mp3"])
    second = _upload(api, media["mp3"])
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert api.client.get("/api/v1/clips", headers=api.headers).json()["total"] == 1


def test_range_etag_and_original(api: Stack, media: dict[str, Path]) -> None:
    clip = _upload(api, media["m4a"]).json()
    url = f"/api/v1/clips/{clip['id']}/audio"
    full = api.client.get(url, headers=api.headers)
    assert full.headers["etag"] == f'"{clip["sha256"]}"'
    part = api.client.get(url, headers={**api.headers, "Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == full.content[10:20]
    again = api.client.get(url, headers={**api.headers, "If-None-Match": full.headers["etag"]})
    assert again.status_code == 304
    original = api.client.get(f"/api/v1/clips/{clip['id']}/original", headers=api.headers)
    assert original.content == media["m4a"].read_bytes()
    detail = api.client.get(f"/api/v1/clips/{clip['id']}", headers=api.headers).json()
    assert len(detail["peaks"]) == 1000
    assert all(-1 <= lo <= hi <= 1 for lo, hi in detail["peaks"])


def test_list_search_and_delete(api: Stack, media: dict[str, Path]) -> None:
    a = _upload(api, media["mp3"], title="Lịch tiêm phòng", topic="health").json()
    _upload(api, media["m4a"], title="Giá lúa hôm nay", topic="agriculture")
    found = api.client.get("/api/v1/clips?q=tiêm", headers=api.headers).json()
    assert [c["id"] for c in found["items"]] == [a["id"]]
    by_topic = api.client.get("/api/v1/clips?topic=agriculture", headers=api.headers).json()
    assert by_topic["total"] == 1
    assert api.client.delete(f"/api/v1/clips/{a['id']}", headers=api.headers).status_code == 204
    assert api.client.get(f"/api/v1/clips/{a['id']}", headers=api.headers).status_code == 404


BAD = [
    ("empty", "empty"),
    ("random", "could not be read"),
    ("text", "could not be read"),
    ("png", "not audio"),
    ("truncated", ""),
    ("video_only", "no audio"),
]


@pytest.mark.parametrize(("kind", "says"), BAD)
def test_bad_files_get_a_clear_4xx_and_leave_nothing(
    api: Stack, media: dict[str, Path], kind: str, says: str
) -> None:
    r = _upload(api, media[kind])
    if kind == "truncated" and r.status_code == 201:
        # A cut-off MP3 is still audio: accepted with its real, shorter duration.
        assert r.json()["duration_s"] < 1.0
        return
    assert 400 <= r.status_code < 500, r.text
    detail = r.json()["detail"]
    assert says.lower() in detail.lower(), detail
    assert "Traceback" not in detail and "ffmpeg" not in detail.lower()
    assert _temp_files(api) == []
    assert api.client.get("/api/v1/clips", headers=api.headers).json()["total"] == 0
    assert api.client.get("/healthz").status_code == 200


def test_limits_on_size_and_duration(api: Stack, media: dict[str, Path]) -> None:
    api.settings.clip_max_bytes = 50_000
    r = _upload(api, media["long"])
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]
    api.settings.clip_max_bytes = 200 * 1024 * 1024
    api.settings.clip_max_duration_s = 30
    r = _upload(api, media["long"])
    assert r.status_code == 422 and "limit" in r.json()["detail"], r.text
    assert _temp_files(api) == []


def test_unknown_topic_missing_file_and_title(api: Stack, media: dict[str, Path]) -> None:
    r = _upload(api, media["mp3"], topic="gossip")
    assert r.status_code == 422 and "Unknown topic 'gossip'" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/clips",
        headers=api.headers,
        data={"title": "x"},
        files={"other": ("a.txt", b"abc")},
    )
    assert r.status_code == 422 and "'file' field is missing" in r.json()["detail"]
    r = _upload(api, media["mp3"], title="  ")
    assert r.status_code == 422 and "title" in r.json()["detail"]
    r = api.client.post("/api/v1/clips", headers=api.headers, json={"title": "x"})
    assert r.status_code == 415
    assert _temp_files(api) == []


def test_upload_cut_off_midway_leaves_nothing(api: Stack, media: dict[str, Path]) -> None:
    """A body that ends before the multipart closing boundary is refused and cleaned up."""
    boundary = "loa-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nx\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
        "Content-Type: audio/mpeg\r\n\r\n"
    ).encode()
    body = head + media["mp3"].read_bytes()[:30_000]  # no closing boundary
    r = api.client.post(
        "/api/v1/clips",
        content=body,
        headers={**api.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert 400 <= r.status_code < 500
    assert _temp_files(api) == []
    assert api.client.get("/api/v1/clips", headers=api.headers).json()["total"] == 0


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_tts_and_compose(api: Stack, media: dict[str, Path]) -> None:
    r = api.client.post(
        "/api/v1/clips/tts",
        headers=api.headers,
        json={"text": "Thông báo: ngày mai xã tổ chức tiêm phòng cho trẻ em.", "voice": "vi"},
    )
    assert r.status_code == 201, r.text
    spoken = r.json()
    assert spoken["source"] == "tts" and spoken["duration_s"] > 1
    assert spoken["loudness_after_lufs"] == pytest.approx(-16, abs=1)
    for bad in ({"text": "   "}, {"text": "a" * 5000}, {"text": "xin chào", "voice": "klingon"}):
        r = api.client.post("/api/v1/clips/tts", headers=api.headers, json=bad)
        assert r.status_code == 422, (bad, r.text)
    base = _upload(api, media["mp3"]).json()
    r = api.client.post(
        "/api/v1/clips/compose",
        headers=api.headers,
        json={
            "title": "Thông báo có chuông",
            "topic": "announcement",
            "parts": [
                {"type": "chime"},
                {"type": "silence", "ms": 500},
                {"type": "text", "text": "Kính thưa bà con."},
                {"type": "clip", "clip_id": base["id"]},
            ],
        },
    )
    assert r.status_code == 201, r.text
    composed = r.json()
    assert composed["duration_s"] > base["duration_s"] + 1.5
    r = api.client.post(
        "/api/v1/clips/compose",
        headers=api.headers,
        json={"title": "x", "parts": [{"type": "clip", "clip_id": 99999}]},
    )
    assert r.status_code == 422 and "99999" in r.json()["detail"]
