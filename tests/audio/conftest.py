"""Test audio made on the spot with FFmpeg, espeak-ng and PyAV (nothing binary is committed).

Session-scoped: every file is generated once per run in one temp dir. Clips are short
(5-20 s) so the whole audio suite stays well under a minute on two cores.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import av
import pytest

SENTENCE = "Thông báo: ngày mai xã tổ chức tiêm phòng cho trẻ em."
LONGER_TEXT = (
    SENTENCE + " Các gia đình có con nhỏ dưới năm tuổi xin mang theo sổ tiêm chủng "
    "đến trạm y tế xã lúc bảy giờ sáng."
)
# A speech-like signal: noise plus a gliding voiced buzz, in ~4.4 syllables/s and phrases
# with pauses, band-limited like a voice. aevalsrc's random() is seeded: deterministic.
SPEECH_LIKE = (
    "aevalsrc=exprs='(0.6*(random(0)*2-1)+0.4*sin(2*PI*(130+20*sin(2*PI*0.7*t))*t))"
    "*pow(sin(2*PI*2.2*t),2)*gt(sin(2*PI*0.23*t)+0.2*sin(2*PI*1.3*t),-0.4)'"
    ":s=44100:d={seconds}"
)
VOICE_BAND = "lowpass=f=3500,highpass=f=120"


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; fail the test run loudly if a fixture cannot be made."""
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session", autouse=True)
def _tools_present() -> None:
    missing = [t for t in ("ffmpeg", "ffprobe", "espeak-ng") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"audio tests need {', '.join(missing)} (make setup installs them)")


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory every generated test file lives in."""
    return tmp_path_factory.mktemp("audio-media")


def _once(media: Path, name: str, make: Callable[[Path], object]) -> Path:
    path = media / name
    if not path.exists():
        make(path)
    return path


# --- sources -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def speech_wav(media: Path) -> Path:
    """About 10 s of Vietnamese from espeak-ng, 22.05 kHz mono 16-bit WAV."""

    def make(path: Path) -> None:
        subprocess.run(
            ["espeak-ng", "-v", "vi", "-s", "150", "-b", "1", "-w", str(path), "--stdin"],
            input=LONGER_TEXT.encode("utf-8"),
            check=True,
        )

    return _once(media, "speech.wav", make)


@pytest.fixture(scope="session")
def speech_seconds(speech_wav: Path) -> float:
    """Length of the spoken text, read from the WAV header (exact for PCM)."""
    with wave.open(str(speech_wav), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


@pytest.fixture(scope="session")
def speech_like_noise(media: Path) -> Path:
    """12 s of modulated noise with a voiced buzz, 44.1 kHz mono WAV."""
    return _once(
        media,
        "speech_like.wav",
        lambda p: ffmpeg(
            "-f", "lavfi", "-i", SPEECH_LIKE.format(seconds=12), "-af", VOICE_BAND, str(p)
        ),
    )


@pytest.fixture(scope="session")
def cover_png(media: Path) -> Path:
    """A small generated picture (cover art, and a 'PNG named .wav')."""
    return _once(
        media,
        "cover.png",
        lambda p: ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:d=1", "-frames:v", "1", str(p)),
    )


# --- formats operators bring -----------------------------------------------------------


@pytest.fixture(scope="session")
def mulaw_wav(media: Path, speech_wav: Path) -> Path:
    """8 kHz mu-law WAV, like a telephone system's recording."""
    return _once(
        media,
        "mulaw.wav",
        lambda p: ffmpeg("-i", str(speech_wav), "-ar", "8000", "-c:a", "pcm_mulaw", str(p)),
    )


@pytest.fixture(scope="session")
def adpcm_wav(media: Path, speech_wav: Path) -> Path:
    """Microsoft ADPCM WAV, as old mixers and recorders write."""
    return _once(
        media, "adpcm.wav", lambda p: ffmpeg("-i", str(speech_wav), "-c:a", "adpcm_ms", str(p))
    )


@pytest.fixture(scope="session")
def mp3_with_cover(media: Path, speech_like_noise: Path, cover_png: Path) -> Path:
    """44.1 kHz stereo MP3 with an embedded cover picture (attached_pic)."""
    return _once(
        media,
        "station.mp3",
        lambda p: ffmpeg(
            "-i",
            str(speech_like_noise),
            "-i",
            str(cover_png),
            "-map",
            "0:a",
            "-map",
            "1:v",
            "-ac",
            "2",
            "-ar",
            "44100",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
            "-c:v",
            "copy",
            "-id3v2_version",
            "3",
            "-disposition:v",
            "attached_pic",
            str(p),
        ),
    )


@pytest.fixture(scope="session")
def m4a(media: Path, speech_wav: Path) -> Path:
    """AAC in an M4A container, as phones record."""
    return _once(media, "phone.m4a", lambda p: ffmpeg("-i", str(speech_wav), "-c:a", "aac", str(p)))


@pytest.fixture(scope="session")
def ogg_vorbis(media: Path, speech_wav: Path) -> Path:
    """Vorbis in Ogg."""
    return _once(
        media, "vorbis.ogg", lambda p: ffmpeg("-i", str(speech_wav), "-c:a", "libvorbis", str(p))
    )


@pytest.fixture(scope="session")
def opus_file(media: Path, speech_wav: Path) -> Path:
    """Opus in Ogg."""
    return _once(
        media, "voice.opus", lambda p: ffmpeg("-i", str(speech_wav), "-c:a", "libopus", str(p))
    )


@pytest.fixture(scope="session")
def flac_file(media: Path, speech_wav: Path) -> Path:
    """FLAC."""
    return _once(
        media, "voice.flac", lambda p: ffmpeg("-i", str(speech_wav), "-c:a", "flac", str(p))
    )


@pytest.fixture(scope="session")
def amr_file(media: Path, speech_wav: Path) -> Path:
    """AMR-NB 12.2 kb/s, like a phone's voice memo.

    The system ffmpeg here has no AMR encoder (`ffmpeg -encoders` lists no
    libopencore_amrnb; it only decodes AMR), so the file is encoded with PyAV, whose
    bundled FFmpeg has libopencore_amrnb. The code under test decodes it with the system
    ffmpeg like any upload.
    """

    def make(path: Path) -> None:
        with av.open(str(speech_wav)) as src, av.open(str(path), "w", format="amr") as out:
            stream = out.add_stream("libopencore_amrnb", rate=8000, layout="mono")
            stream.bit_rate = 12200
            resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
            frames = [f for frame in src.decode(audio=0) for f in resampler.resample(frame)]
            for frame in [*frames, *resampler.resample(None), None]:
                for packet in stream.encode(frame):
                    out.mux(packet)

    return _once(media, "memo.amr", make)


@pytest.fixture(scope="session")
def mp4_video(media: Path, speech_wav: Path) -> Path:
    """An MP4 video (testsrc, H.264) whose sound is the spoken text (AAC)."""
    return _once(
        media,
        "meeting.mp4",
        lambda p: ffmpeg(
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=160x120:r=10",
            "-i",
            str(speech_wav),
            "-shortest",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            str(p),
        ),
    )


# --- levels ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def silence_wav(media: Path) -> Path:
    """6 s of digital silence."""
    return _once(
        media,
        "silence.wav",
        lambda p: ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "6", str(p)),
    )


@pytest.fixture(scope="session")
def loud_clipped_tone(media: Path) -> Path:
    """8 s of a 440 Hz tone pushed 30 dB into 16-bit clipping (a square-ish wave)."""
    return _once(
        media,
        "clipped_tone.wav",
        lambda p: ffmpeg(
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=8:r=44100",
            "-af",
            "volume=30dB",
            "-c:a",
            "pcm_s16le",
            str(p),
        ),
    )


@pytest.fixture(scope="session")
def loud_clipped_voice(media: Path, speech_wav: Path) -> Path:
    """The spoken text 20 dB too hot, clipped hard in 16 bits."""
    return _once(
        media,
        "clipped_voice.wav",
        lambda p: ffmpeg("-i", str(speech_wav), "-af", "volume=20dB", "-c:a", "pcm_s16le", str(p)),
    )


@pytest.fixture(scope="session")
def quiet_voice(media: Path, speech_wav: Path) -> Path:
    """The spoken text 40 dB down (a distant phone recording)."""
    return _once(
        media,
        "quiet_voice.wav",
        lambda p: ffmpeg("-i", str(speech_wav), "-af", "volume=-40dB", "-c:a", "pcm_s16le", str(p)),
    )


@pytest.fixture(scope="session")
def wide_range_voice(media: Path, speech_wav: Path) -> Path:
    """The text twice: once loud, once 22 dB quieter (loudness range far over 11 LU)."""
    return _once(
        media,
        "wide_range.wav",
        lambda p: ffmpeg(
            "-i",
            str(speech_wav),
            "-i",
            str(speech_wav),
            "-filter_complex",
            "[1:a]volume=-22dB[q];[0:a][q]concat=n=2:v=0:a=1",
            "-c:a",
            "pcm_s16le",
            str(p),
        ),
    )


# --- bad inputs --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def empty_file(media: Path) -> Path:
    """A zero-byte upload named like audio."""
    return _once(media, "empty.mp3", lambda p: p.write_bytes(b""))


@pytest.fixture(scope="session")
def random_bytes(media: Path) -> Path:
    """200 kB of (seeded) random bytes named .mp3."""
    rng = random.Random(20240501)
    return _once(media, "random.mp3", lambda p: p.write_bytes(rng.randbytes(200_000)))


@pytest.fixture(scope="session")
def text_as_mp3(media: Path) -> Path:
    """A text file named .mp3."""
    text = "\n".join(f"Dòng {i}: đây là văn bản, không phải âm thanh." for i in range(60))
    return _once(media, "notes.mp3", lambda p: p.write_text(text, encoding="utf-8"))


@pytest.fixture(scope="session")
def png_as_wav(media: Path, cover_png: Path) -> Path:
    """A PNG picture named .wav."""
    return _once(media, "picture.wav", lambda p: p.write_bytes(cover_png.read_bytes()))


@pytest.fixture(scope="session")
def full_mp3(media: Path, speech_like_noise: Path) -> Path:
    """A 20 s MP3 (LAME writes a header with the full frame count)."""
    return _once(
        media,
        "full.mp3",
        lambda p: ffmpeg(
            "-i",
            str(speech_like_noise),
            "-i",
            str(speech_like_noise),
            "-filter_complex",
            "[0:a][1:a]concat=n=2:v=0:a=1,atrim=0:20",
            "-c:a",
            "libmp3lame",
            str(p),
        ),
    )


@pytest.fixture(scope="session")
def truncated_mp3(media: Path, full_mp3: Path) -> Path:
    """The first half of the 20 s MP3's bytes: its header still says 20 s."""
    data = full_mp3.read_bytes()
    return _once(media, "truncated.mp3", lambda p: p.write_bytes(data[: len(data) // 2]))


@pytest.fixture(scope="session")
def garbage_aac(media: Path, speech_wav: Path) -> Path:
    """A real M4A header (ffprobe sees AAC, 10 s) over random packet data: nothing decodes."""

    def make(path: Path) -> None:
        good = media / "faststart.m4a"
        ffmpeg("-i", str(speech_wav), "-c:a", "aac", "-movflags", "+faststart", str(good))
        data = bytearray(good.read_bytes())
        start = data.index(b"mdat") + 4
        data[start:] = random.Random(7).randbytes(len(data) - start)
        path.write_bytes(bytes(data))

    return _once(media, "garbage.m4a", make)


@pytest.fixture(scope="session")
def video_without_audio(media: Path) -> Path:
    """An MP4 with a picture track and no sound."""
    return _once(
        media,
        "silent_film.mp4",
        lambda p: ffmpeg(
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=160x120:r=10:d=3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(p),
        ),
    )


# --- short and sparse clips (issue 11: short announcements came out 10-20 dB quieter) ----


def _espeak(path: Path, text: str, *, speed: int = 150) -> None:
    subprocess.run(
        ["espeak-ng", "-v", "vi", "-s", str(speed), "-w", str(path), "--stdin"],
        input=text.encode("utf-8"),
        check=True,
    )


@pytest.fixture(scope="session")
def short_word_m4a(media: Path) -> Path:
    """One spoken syllable ("Họp", about 0.7 s) in M4A: very peaky, under loudnorm's 3 s."""

    def make(path: Path) -> None:
        _espeak(media / "word.wav", "Họp")
        ffmpeg("-i", str(media / "word.wav"), "-c:a", "aac", str(path))

    return _once(media, "word.m4a", make)


@pytest.fixture(scope="session")
def short_phrase_m4a(media: Path) -> Path:
    """A 1.4-1.9 s spoken announcement in M4A, as a phone records it."""

    def make(path: Path) -> None:
        _espeak(media / "phrase.wav", "Mời bà con ra đình họp", speed=175)
        ffmpeg("-i", str(media / "phrase.wav"), "-c:a", "aac", str(path))

    return _once(media, "phrase.m4a", make)


@pytest.fixture(scope="session")
def chime_then_phrase(media: Path, short_phrase_m4a: Path) -> Path:
    """A 0.6 s two-tone chime, then the short announcement (about 2.5 s in all)."""
    chime = "sine=f=880:d=0.3:r=44100[a];sine=f=660:d=0.3:r=44100[b]"
    return _once(
        media,
        "chime_phrase.wav",
        lambda p: ffmpeg(
            "-i",
            str(short_phrase_m4a),
            "-filter_complex",
            f"{chime};[a][b]concat=n=2:v=0:a=1,aresample=44100[c];"
            "[0:a]aresample=44100,aformat=channel_layouts=mono[s];[c][s]concat=n=2:v=0:a=1",
            str(p),
        ),
    )


def _tone(path: Path, seconds: float, volume_db: float, pad_to: float | None = None) -> None:
    pad = f",apad=whole_dur={pad_to}" if pad_to else ""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"sine=f=880:d={seconds}:r=44100",
        "-af",
        f"volume={volume_db}dB{pad}",
        str(path),
    )


@pytest.fixture(scope="session")
def short_quiet_tone(media: Path) -> Path:
    """A 0.5 s tone at about -41 LUFS."""
    return _once(media, "tone05.wav", lambda p: _tone(p, 0.5, -20))


@pytest.fixture(scope="session")
def short_loud_tone(media: Path) -> Path:
    """A 0.8 s tone at about -6 LUFS (must come down)."""
    return _once(media, "tone08.wav", lambda p: _tone(p, 0.8, 15))


@pytest.fixture(scope="session")
def word_in_silence(media: Path, short_word_m4a: Path) -> Path:
    """One spoken word, then 8 s of silence: mostly silence, peaky speech."""
    return _once(
        media,
        "word_silence.wav",
        lambda p: ffmpeg("-i", str(short_word_m4a), "-af", "apad=whole_dur=9", str(p)),
    )


@pytest.fixture(scope="session")
def beep_in_silence(media: Path) -> Path:
    """A 0.2 s beep in 10 s of silence."""
    return _once(media, "beep_silence.wav", lambda p: _tone(p, 0.2, -20, pad_to=10))


@pytest.fixture(scope="session")
def sparse_clicks(media: Path) -> Path:
    """1.5 s of 2 ms bursts every 250 ms: a crest factor no limiter budget can reach -16 with."""
    expr = "0.5*lt(mod(t\\,0.25)\\,0.002)*sin(2*PI*2000*t)"
    return _once(
        media,
        "clicks.wav",
        lambda p: ffmpeg("-f", "lavfi", "-i", f"aevalsrc=exprs='{expr}':s=48000:d=1.5", str(p)),
    )


@pytest.fixture(scope="session")
def gated_tone(media: Path) -> Path:
    """0.7 s of a tone at about -71 LUFS: every block is under the absolute gate."""
    return _once(media, "gated.wav", lambda p: _tone(p, 0.7, -50))
