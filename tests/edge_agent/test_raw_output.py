"""`audio_output = "raw:<path>"`: the agent hands raw PCM to a FIFO as its sample clock plays it."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio.clock import SystemClock
from audio.pcm import SAMPLE_RATE
from audio.signals import make_marker
from audio.sinks import RawSink
from edge_agent.output import OutputError, make_sink_factory, parse_output
from edge_agent.settings import SettingsError, load_settings
from firmware_profiles import load_profile


def _factory(tmp_path: Path, output: str) -> RawSink:
    sink = make_sink_factory(
        profile=load_profile("sim"), data_dir=tmp_path, sim=True, clock=SystemClock(),
        output=output,
    )()  # fmt: skip
    assert isinstance(sink, RawSink)
    return sink


def test_a_fifo_without_a_reader_never_blocks_and_a_late_reader_gets_audio(tmp_path: Path) -> None:
    fifo = tmp_path / "out.pcm"
    os.mkfifo(fifo)
    sink = _factory(tmp_path, f"raw:{fifo}")
    marker = make_marker(seed=5)
    received = bytearray()
    arrivals: list[tuple[float, int]] = []
    opened = threading.Event()

    def reader() -> None:
        with open(fifo, "rb", buffering=0) as pipe:
            opened.set()
            while chunk := pipe.read(65536):
                received.extend(chunk)
                arrivals.append((time.monotonic(), len(received)))

    async def scenario() -> float:
        await sink.start()
        started = time.monotonic()
        # Nobody reads: the agent plays on in real time, dropping (and counting) the audio.
        await sink.play_at(np.zeros(SAMPLE_RATE // 5, np.int16), sink.next_sample_monotonic())
        await asyncio.sleep(0.3)
        assert time.monotonic() - started < 1.0
        assert sink.dropped_bytes > 0
        threading.Thread(target=reader, daemon=True).start()
        await asyncio.to_thread(opened.wait, 5)
        at = time.monotonic() + 0.2
        placed = await sink.play_at(marker, at)
        await sink.close()
        return placed.start_monotonic

    marker_at = asyncio.run(scenario())
    deadline = time.monotonic() + 5
    while not arrivals and time.monotonic() < deadline:
        time.sleep(0.05)
    samples = np.frombuffer(bytes(received[: len(received) // 2 * 2]), dtype="<i2")
    loud = np.flatnonzero(np.abs(samples) > 1000)
    assert len(loud), "the reader got no audio"
    arrival = next(t for t, total in arrivals if total > 2 * int(loud[0]))
    # Handed on as it plays, block by block (20 ms for a raw output); generous under load.
    assert -0.002 <= arrival - marker_at <= 0.1


def test_the_output_setting_is_checked() -> None:
    assert parse_output("raw:/run/loa/out.pcm") == ("raw", "/run/loa/out.pcm")
    assert parse_output("alsa:hw:1,0") == ("alsa", "hw:1,0")
    assert parse_output("sim") == ("sim", "")
    with pytest.raises(OutputError):
        parse_output("raw:")
    values: dict[str, Any] = {"device_id": "dev-1", "mqtt_host": "h", "mqtt_password": "p"}
    assert load_settings(sim=True, audio_output="raw:/tmp/x", **values).audio_output == "raw:/tmp/x"
    with pytest.raises(SettingsError, match="audio_output"):
        load_settings(sim=True, audio_output="speaker", **values)
