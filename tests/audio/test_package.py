"""The `audio` package's public names load on first use, and keep meaning what they meant."""

from __future__ import annotations

import json
import subprocess
import sys

import audio
from loa_testkit.harness import ROOT

LIGHT = """
import json, sys
from audio.clock import Clock
from audio.sinks import ClockedFileSink
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def test_the_clock_and_the_sinks_load_no_ffmpeg_numpy_or_pydub() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LIGHT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert "audio" in loaded
    assert not {"ffmpeg", "past", "future", "numpy", "pydub", "av"} & loaded


SHADOWED = """
import json
import audio.compose, audio.normalize, audio.probe  # the submodules first
from audio import compose, normalize, probe
import audio
print(json.dumps([callable(f) and f.__module__ for f in (compose, normalize, probe)]
                 + [type(audio.probe).__name__]))
"""


def test_probe_compose_and_normalize_are_the_functions_even_after_their_modules() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SHADOWED], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == ["audio.compose", "audio.normalize", "audio.probe", "function"]


def test_every_public_name_resolves() -> None:
    for name in audio.__all__:
        assert getattr(audio, name) is not None, name
    assert set(audio.__all__) <= set(dir(audio))
