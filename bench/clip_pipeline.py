"""Benchmark: loudness-normalise one hour of 44.1 kHz stereo MP3 speech-like audio.

Prints one JSON line: {"bench": "clip_normalize", "audio_seconds": ..., "seconds": ...,
"x_realtime": ...}. Generating the MP3 is not timed; normalize() (probe, measuring pass,
Opus encoding, and the measurement of the written file) is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audio import normalize  # after the path fix so `python bench/...` works

# Speech-like: noise and a gliding voiced buzz, shaped into ~4.4 syllables/s and phrases
# with pauses, band-limited like a voice. Deterministic (aevalsrc's random() is seeded).
SPEECH_LIKE = (
    "aevalsrc=exprs='(0.6*(random(0)*2-1)+0.4*sin(2*PI*(130+20*sin(2*PI*0.7*t))*t))"
    "*pow(sin(2*PI*2.2*t),2)*gt(sin(2*PI*0.23*t)+0.2*sin(2*PI*1.3*t),-0.4)'"
    ":s=44100:d={seconds}"
)
CHUNK_S = 300  # encode 5 minutes once, then join copies without re-encoding
# --source espeak: synthetic Vietnamese speech, peakier than the default signal (its
# glottal pulses need limiting), so it takes the slower "limited" path with a gain search.
VOCABULARY = (
    "thông báo ngày mai xã tổ chức tiêm phòng cho trẻ em các gia đình có con nhỏ dưới năm "
    "tuổi xin mang theo sổ tiêm chủng đến trạm y tế lúc bảy giờ sáng bà con nông dân chú ý "
    "thời tiết mưa lớn kéo dài nước sông dâng cao"
)


def make_speech_mp3(dst: Path, *, seconds: int, work: Path, source: str) -> None:
    """Write `seconds` of 44.1 kHz stereo 128 kb/s MP3 speech-like audio to dst."""
    chunk = work / "chunk.mp3"
    chunk_s = min(CHUNK_S, seconds)
    if source == "espeak":
        spoken = work / "spoken.wav"
        words = random.Random(1)
        text = " ".join(
            " ".join(words.choices(VOCABULARY.split(), k=words.randint(6, 16))) + "."
            for _ in range(120)
        )
        subprocess.run(
            ["espeak-ng", "-v", "vi", "-s", "150", "-b", "1", "-w", str(spoken), "--stdin"],
            input=text.encode("utf-8"),
            check=True,
        )
        source_args = ["-stream_loop", "-1", "-i", str(spoken), "-t", str(chunk_s)]
        shaping = "aresample=44100,pan=stereo|c0=c0|c1=c0"
    else:
        source_args = ["-f", "lavfi", "-i", SPEECH_LIKE.format(seconds=chunk_s)]
        shaping = "lowpass=f=3500,highpass=f=120,volume=0.5,pan=stereo|c0=c0|c1=c0"
    _ffmpeg(*source_args, "-af", shaping, "-c:a", "libmp3lame", "-b:a", "128k", str(chunk))
    copies = -(-seconds // chunk_s)
    listing = work / "list.txt"
    listing.write_text("".join(f"file '{chunk}'\n" for _ in range(copies)))
    _ffmpeg(
        "-f", "concat", "-safe", "0", "-i", str(listing), "-t", str(seconds),
        "-c", "copy", str(dst),
    )  # fmt: skip


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-y", *args], check=True)


def main(argv: list[str] | None = None) -> None:
    """Generate the input, time normalize() on it, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3600, help="length of the test audio")
    parser.add_argument("--source", choices=["speech-like", "espeak"], default="speech-like")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loa-bench-") as tmp:
        work = Path(tmp)
        src = work / "speech.mp3"
        make_speech_mp3(src, seconds=args.seconds, work=work, source=args.source)
        started = time.perf_counter()
        result = normalize(src=src, dst=work / "clip.ogg")
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "bench": "clip_normalize",
                "source": args.source,
                "audio_seconds": round(result.duration_s),
                "seconds": round(elapsed, 2),
                "x_realtime": round(result.duration_s / elapsed, 1),
                "mode": result.mode,
                "lufs_before": result.before.integrated_lufs,
                "lufs_after": result.after.integrated_lufs,
                "true_peak_after": result.after.true_peak_dbtp,
                "cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
