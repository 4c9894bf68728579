"""AlsaSink specifics: the aplay process, its failures in plain words."""

from __future__ import annotations

import shutil

import pytest

from audio.clock import FakeClock, SystemClock
from audio.sinks import AlsaSink, SinkError
from tests.audio_rt.helpers import run, tone


def test_missing_aplay_names_the_package_to_install() -> None:
    sink = AlsaSink("null", aplay="aplay-not-installed-here", clock=FakeClock())
    with pytest.raises(SinkError, match="alsa-utils"):
        run(sink.start())


def test_an_unknown_device_is_refused_at_start_with_aplay_s_reason() -> None:
    assert shutil.which("aplay"), "aplay is missing: apt-get install alsa-utils"
    sink = AlsaSink("no_such_pcm_device", clock=FakeClock())
    with pytest.raises(SinkError, match="could not be opened") as caught:
        run(sink.start())
    assert "no_such_pcm_device" in caught.value.detail


def test_aplay_gets_every_sample_and_exits_cleanly() -> None:
    clock = FakeClock()
    sink = AlsaSink("null", clock=clock, period_frames=480, buffer_frames=2400)

    async def scenario() -> int | None:
        await sink.start()
        for _ in range(20):
            await sink.write(tone(960))
        await sink.close()
        assert sink._process is not None
        return sink._process.returncode

    assert run(clock.run(scenario())) == 0
    assert sink.frames_written == 20 * 960


def test_aplay_dying_mid_stream_is_a_clear_error() -> None:
    clock = SystemClock()
    sink = AlsaSink("null", clock=clock)

    async def scenario() -> None:
        await sink.start()
        await sink.write(tone(960))
        assert sink._process is not None
        sink._process.kill()  # what a crashing driver or an unplugged USB card looks like
        await sink._process.wait()
        with pytest.raises(SinkError, match="stopped accepting audio"):
            for _ in range(50):
                await sink.write(tone(960))
        await sink.close()  # closing a failed sink still works

    run(scenario())
    assert sink.closed
