"""`loa-server live` from a pipe: the start of an announcement is never dropped (issue 12)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from server.live.client import AHEAD_S, FRAME_BYTES, FRAME_S, START_AHEAD_S, Pacer, PipeSource, pump


class _Ws:
    """Records when each chunk went."""

    def __init__(self) -> None:
        self.sent_at: list[float] = []
        self.texts: list[str] = []

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            self.texts.append(data)
        else:
            self.sent_at.append(time.monotonic())

    def most_ahead_s(self) -> float:
        """How far the audio sent ran ahead of the wall clock, from the first chunk on."""
        t0 = self.sent_at[0]
        return max((i + 1) * FRAME_S - (t - t0) for i, t in enumerate(self.sent_at))


def _run(plan: list[tuple[float, int]]) -> tuple[Pacer, _Ws]:
    """Feed a real pipe by `plan` ((pause before, 20 ms chunks written at once), ...)."""
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        due = time.monotonic()
        with os.fdopen(write_fd, "wb") as out:
            for pause, chunks in plan:
                due += pause  # due times, not sleeps: a slow wake-up is not a hiccup
                time.sleep(max(0.0, due - time.monotonic()))
                out.write(bytes(FRAME_BYTES * chunks))
                out.flush()

    async def scenario() -> tuple[Pacer, _Ws]:
        with os.fdopen(read_fd, "rb") as stream:
            source = PipeSource(stream=stream, rate=48000)
            pacer, ws = Pacer(may_drop=True), _Ws()
            threading.Thread(target=writer, daemon=True).start()
            await pump(ws=ws, source=source, pacer=pacer, stop=asyncio.Event())  # type: ignore[arg-type]
            return pacer, ws

    return asyncio.run(scenario())


def test_words_already_in_the_pipe_when_sending_starts_are_sent_whole_at_their_pace() -> None:
    # The producer started speaking 0.4 s before the client read the pipe (a slow connect
    # under load), then goes on in real time: all of it is the announcement.
    pacer, ws = _run([(0.0, 20)] + [(FRAME_S, 1)] * 60)
    assert pacer.live is True and ws.texts == []
    assert pacer.dropped_s == 0.0 and len(ws.sent_at) == 80
    # Not handed over AHEAD_S at once: the server would take that burst's age for the
    # session's latency and stamp every frame too late for the devices.
    assert ws.most_ahead_s() <= START_AHEAD_S + FRAME_S + 0.01


def test_a_hiccup_during_the_probe_is_not_dropped_as_stale_backlog() -> None:
    # 0.2 s in real time, 0.4 s of nothing then that backlog at once, then real time.
    pacer, ws = _run([(FRAME_S, 1)] * 10 + [(0.4, 20)] + [(FRAME_S, 1)] * 50)
    assert pacer.live is True and ws.texts == []
    assert pacer.dropped_s == 0.0 and len(ws.sent_at) == 80


def test_until_a_pipe_is_known_paced_it_goes_at_most_start_ahead_s_ahead() -> None:
    t = [50.0]
    probing = Pacer(may_drop=True, clock=lambda: t[0])
    frames = round(START_AHEAD_S / FRAME_S)
    for _ in range(frames):
        probing.sent(FRAME_BYTES)
    assert probing.hold_s() == pytest.approx(0.0)
    probing.sent(FRAME_BYTES)  # one more at the same instant: it waits one frame
    assert probing.hold_s() == pytest.approx(FRAME_S)
    t[0] += FRAME_S
    assert probing.hold_s() == pytest.approx(0.0)
    paced = Pacer(may_drop=True, clock=lambda: t[0])
    paced.live = False  # a producer faster than real time: AHEAD_S of slack for jitter
    for _ in range(round(AHEAD_S / FRAME_S)):
        paced.sent(FRAME_BYTES)
    assert paced.hold_s() == pytest.approx(0.0)
    paced.sent(FRAME_BYTES)
    assert paced.hold_s() == pytest.approx(FRAME_S)
