"""Text-to-speech: espeak-ng for real, Piper's failure modes (Piper is not installed here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audio import EspeakEngine, PiperEngine, TtsEngine, TtsError, probe
from tests.audio.conftest import SENTENCE

VIETNAMESE_VOICES = ["vi", "vi-vn-x-central", "vi-vn-x-south"]


def test_espeak_lists_the_three_vietnamese_voices() -> None:
    assert EspeakEngine().voices() == VIETNAMESE_VOICES


@pytest.mark.parametrize("voice", VIETNAMESE_VOICES)
def test_espeak_reads_vietnamese(tmp_path: Path, voice: str) -> None:
    engine: TtsEngine = EspeakEngine()
    dst = tmp_path / "tts.wav"
    engine.synthesize(text=SENTENCE, voice=voice, dst=dst)
    info = probe(dst)
    assert (info.codec, info.channels) == ("pcm_s16le", 1)
    # 12 words at 150 wpm read as Vietnamese take about 4 s. Read as raw UTF-8 bytes or
    # letter by letter it would take far longer; an empty read far less.
    assert 2.5 < info.duration_s < 7.0
    assert os.listdir(tmp_path) == ["tts.wav"]


def test_the_voice_matters(tmp_path: Path) -> None:
    engine = EspeakEngine()
    north, south = tmp_path / "north.wav", tmp_path / "south.wav"
    engine.synthesize(text=SENTENCE, voice="vi", dst=north)
    engine.synthesize(text=SENTENCE, voice="vi-vn-x-south", dst=south)
    assert north.read_bytes() != south.read_bytes()


def test_text_starting_with_a_dash_is_read_not_taken_as_an_option(tmp_path: Path) -> None:
    dst = tmp_path / "dash.wav"
    EspeakEngine().synthesize(text="-w /tmp/x --version", voice="vi", dst=dst)
    assert probe(dst).duration_s > 0.5


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text(tmp_path: Path, text: str) -> None:
    with pytest.raises(TtsError, match="no text"):
        EspeakEngine().synthesize(text=text, voice="vi", dst=tmp_path / "x.wav")
    assert os.listdir(tmp_path) == []


def test_unknown_voice_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(TtsError) as caught:
        EspeakEngine().synthesize(text=SENTENCE, voice="klingon", dst=tmp_path / "x.wav")
    assert str(caught.value) == (
        "The voice 'klingon' is not available; choose one of: vi, vi-vn-x-central, vi-vn-x-south."
    )
    assert os.listdir(tmp_path) == []


def test_missing_espeak_binary(tmp_path: Path) -> None:
    engine = EspeakEngine(binary=str(tmp_path / "no-such-espeak"))
    with pytest.raises(TtsError, match="espeak-ng text-to-speech program is not installed"):
        engine.synthesize(text=SENTENCE, voice="vi", dst=tmp_path / "x.wav")


def test_piper_without_its_model(tmp_path: Path) -> None:
    engine = PiperEngine(tmp_path / "vi_VN-vais1000-medium.onnx")
    assert engine.voices() == ["vi_VN-vais1000-medium"]
    with pytest.raises(TtsError, match=r"model vi_VN-vais1000-medium\.onnx was not found"):
        engine.synthesize(text=SENTENCE, voice="vi", dst=tmp_path / "x.wav")


def test_piper_model_without_its_config(tmp_path: Path) -> None:
    model = tmp_path / "vi_VN-vais1000-medium.onnx"
    model.write_bytes(b"\0" * 16)
    with pytest.raises(TtsError, match=r"has no vi_VN-vais1000-medium\.onnx\.json"):
        PiperEngine(model).synthesize(text=SENTENCE, voice="vi", dst=tmp_path / "x.wav")


def test_piper_program_missing(tmp_path: Path) -> None:
    # A program path that cannot exist, so the test means the same where Piper is installed.
    model = tmp_path / "vi_VN-vais1000-medium.onnx"
    model.write_bytes(b"\0" * 16)
    model.with_name(model.name + ".json").write_text("{}")
    engine: TtsEngine = PiperEngine(model, binary=str(tmp_path / "no-such-piper"))
    with pytest.raises(TtsError, match="Piper text-to-speech program is not installed"):
        engine.synthesize(text=SENTENCE, voice="vi_VN", dst=tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_piper_checks_text_and_voice_first(tmp_path: Path) -> None:
    engine = PiperEngine(tmp_path / "vi_VN-vais1000-medium.onnx")
    with pytest.raises(TtsError, match="no text"):
        engine.synthesize(text=" ", voice="vi", dst=tmp_path / "x.wav")
    with pytest.raises(TtsError, match="choose one of: vi_VN-vais1000-medium"):
        engine.synthesize(text=SENTENCE, voice="en", dst=tmp_path / "x.wav")
