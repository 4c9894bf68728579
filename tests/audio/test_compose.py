"""compose(): an announcement built from chime, pauses, spoken text and existing clips."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest

from audio import (
    AudioError,
    ChimePart,
    ClipPart,
    EspeakEngine,
    Part,
    SilencePart,
    TextPart,
    TooLong,
    TtsError,
    UnreadableAudio,
    compose,
    measure_loudness,
    normalize,
    probe,
)
from audio.chime import DURATION_S as CHIME_S
from audio.chime import NOTES_HZ
from tests.audio.conftest import SENTENCE


def _samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


def test_announcement_in_order(tmp_path: Path, flac_file: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    dst = tmp_path / "announcement.wav"
    parts: list[Part] = [
        ChimePart(),
        SilencePart(ms=300),
        TextPart(text=SENTENCE, voice="vi-vn-x-south"),
        SilencePart(ms=500),
        ClipPart(path=flac_file),
    ]
    compose(parts=parts, dst=dst, work_dir=work, tts=EspeakEngine())
    spoken = tmp_path / "spoken.wav"
    EspeakEngine().synthesize(text=SENTENCE, voice="vi-vn-x-south", dst=spoken)
    expected_s = CHIME_S + 0.3 + probe(spoken).duration_s + 0.5 + probe(flac_file).duration_s
    info = probe(dst)
    assert (info.codec, info.sample_rate, info.channels) == ("pcm_s16le", 48000, 1)
    assert info.duration_s == pytest.approx(expected_s, abs=0.05)

    pcm, rate = _samples(dst)
    first_note = pcm[int(0.02 * rate) : int(0.32 * rate)].astype(float)
    spectrum = np.abs(np.fft.rfft(first_note))
    assert np.fft.rfftfreq(first_note.size, 1 / rate)[spectrum.argmax()] == pytest.approx(
        NOTES_HZ[0], abs=5
    )
    pause = pcm[int((CHIME_S + 0.01) * rate) : int((CHIME_S + 0.29) * rate)]
    assert np.abs(pause).max() == 0
    speech = pcm[int((CHIME_S + 0.3) * rate) : int((CHIME_S + 2.3) * rate)]
    assert np.abs(speech).max() > 3000
    assert np.abs(pcm).max() < 32767  # levelling left headroom: nothing clipped
    assert os.listdir(work) == []  # the spoken text's temp WAV is gone
    assert sorted(os.listdir(tmp_path)) == ["announcement.wav", "spoken.wav", "work"]


def test_composed_announcement_normalises_like_an_upload(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    compose(
        parts=[ChimePart(), SilencePart(ms=200), TextPart(text=SENTENCE)],
        dst=wav,
        work_dir=tmp_path,
        tts=EspeakEngine(),
    )
    normalize(src=wav, dst=tmp_path / "a.opus")
    assert measure_loudness(tmp_path / "a.opus").integrated_lufs == pytest.approx(-16, abs=1)


def test_text_without_an_engine(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="not available"):
        compose(
            parts=[TextPart(text=SENTENCE)], dst=tmp_path / "x.wav", work_dir=tmp_path, tts=None
        )
    assert os.listdir(tmp_path) == []


def test_unreadable_clip(tmp_path: Path, text_as_mp3: Path) -> None:
    with pytest.raises(UnreadableAudio):
        compose(
            parts=[ChimePart(), ClipPart(path=text_as_mp3)],
            dst=tmp_path / "x.wav",
            work_dir=tmp_path,
            tts=None,
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("parts", "error", "message"),
    [
        ([], AudioError, "no parts"),
        ([SilencePart(ms=0)], AudioError, "pause must last"),
        ([SilencePart(ms=60_000)] * 3, TooLong, "limit is 2 min"),
    ],
)
def test_bad_requests(
    tmp_path: Path, parts: list[Part], error: type[AudioError], message: str
) -> None:
    with pytest.raises(error, match=message):
        compose(
            parts=parts, dst=tmp_path / "x.wav", work_dir=tmp_path, tts=None, max_duration_s=120
        )
    assert os.listdir(tmp_path) == []
