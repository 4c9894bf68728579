"""One sound card shared by the scheduled player and live audio, one writer at a time.

A device has one output, and the recording sink of a simulated device is one WAV: both
players must write into the same open sink, in turn, rather than each opening its own. The
player and the live receiver each take a `SinkLease`; closing a lease leaves the device open
(what is queued plays out), and only a failing device is closed and reopened on next use.
Who writes when is decided by the player's arbitration (edge_agent.player, request_live).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from audio.clock import Clock
from audio.pcmformat import SAMPLE_RATE
from audio.sinks import AudioSink, Playout, SinkError

if TYPE_CHECKING:  # numpy loads with the first audio, not at idle
    from audio.pcm import Pcm

log = logging.getLogger(__name__)


class SoundCard:
    """Opens the device on first use and keeps it open until close()."""

    def __init__(self, *, open_device: Callable[[], AudioSink], clock: Clock) -> None:
        self._open_device = open_device
        self.clock = clock
        self._device: AudioSink | None = None
        self.opened = 0  # how many times the device was opened (diagnostics, tests)

    def lease(self) -> AudioSink:
        """A handle on the device for one player (use as an `open_sink` factory)."""
        return SinkLease(self)

    async def device(self) -> AudioSink:
        """The open device, opening it when needed."""
        if self._device is None or getattr(self._device, "closed", False):
            device = self._open_device()
            await device.start()
            self._device = device
            self.opened += 1
        return self._device

    async def reset(self) -> None:
        """The device failed: close it; the next writer opens it again."""
        device, self._device = self._device, None
        if device is not None:
            with contextlib.suppress(Exception):
                await device.close(drain=False)

    async def close(self, *, drain: bool = False) -> None:
        """Release the device (the agent is stopping); with drain, play out what is queued."""
        device, self._device = self._device, None
        if device is not None:
            try:
                await device.close(drain=drain)
            except SinkError as exc:
                log.warning("closing the audio output: %s", exc)


class SinkLease:
    """An AudioSink that writes to the shared device and never closes it."""

    def __init__(self, card: SoundCard) -> None:
        self._card = card
        self._device: AudioSink | None = None
        self.sample_rate = SAMPLE_RATE

    def _open(self) -> AudioSink:
        if self._device is None:
            raise SinkError("the lease was not started or is closed")
        return self._device

    @property
    def output_latency_s(self) -> float:
        """The device's output latency."""
        return self._open().output_latency_s

    @property
    def frames_written(self) -> int:
        """Samples the device accepted so far (from every lease)."""
        return self._open().frames_written

    @property
    def restarts(self) -> int:
        """The device's restarts so far (from every lease)."""
        return self._open().restarts

    async def start(self) -> None:
        """Take the shared device (opening it on first use)."""
        self._device = await self._card.device()
        self.sample_rate = self._device.sample_rate

    async def write(self, pcm: Pcm) -> None:
        """Queue samples on the device."""
        try:
            await self._open().write(pcm)
        except SinkError:
            await self._failed()
            raise

    async def play_at(self, pcm: Pcm, start_monotonic: float, *, label: str = "") -> Playout:
        """Place the first sample at an instant (see audio.sinks)."""
        try:
            return await self._open().play_at(pcm, start_monotonic, label=label)
        except SinkError:
            await self._failed()
            raise

    def next_sample_monotonic(self) -> float:
        """When the device consumes the next written sample."""
        return self._open().next_sample_monotonic()

    async def close(self, *, drain: bool = True) -> None:
        """Give the device back; with drain, wait until what this lease queued has played."""
        device, self._device = self._device, None
        if device is not None and drain:
            await self._card.clock.sleep_until(device.next_sample_monotonic())

    async def _failed(self) -> None:
        self._device = None
        await self._card.reset()
