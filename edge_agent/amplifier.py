"""Amplifier power around playout: on warm-up before audio, off cool-down after the last.

Between items closer together than cool-down + warm-up the amplifier simply stays on, so
a PA never thumps between back-to-back items.
"""

from __future__ import annotations

import logging
import math

from edge_agent.hardware import Hardware, HardwareError
from edge_agent.playback import Offload
from firmware_profiles import AmplifierConfig

log = logging.getLogger(__name__)


class AmplifierControl:
    """Switches the profile's amplifier from the player's view of upcoming audio."""

    def __init__(self, *, config: AmplifierConfig, hardware: Hardware, offload: Offload) -> None:
        self.switched = config.kind != "none"
        self.warmup_s = config.warmup_ms / 1000
        self.cooldown_s = config.cooldown_ms / 1000
        self.hardware = hardware
        self._offload = offload
        self.on = False
        self._ready_at = -math.inf

    async def ready_by(self, at: float, *, now: float) -> float:
        """When audio wanted at `at` can start: later than `at` only if warm-up was missed."""
        if not self.switched:
            return at
        if not self.on and at - self.warmup_s < now:
            await self._switch(True, now)
        return max(at, self._ready_at) if self.on else at

    async def drive(self, *, now: float, upcoming: float, busy_until: float) -> None:
        """Switch on `warmup` before `upcoming` audio, off `cooldown` after `busy_until`."""
        if not self.switched:
            return
        if not self.on and upcoming - self.warmup_s <= now:
            await self._switch(True, now)
        elif self.on and now >= busy_until + self.cooldown_s and upcoming - self.warmup_s > now:
            await self._switch(False, now)

    def next_change(self, *, upcoming: float, busy_until: float) -> float:
        """The next instant drive() may have something to do."""
        if not self.switched:
            return math.inf
        return busy_until + self.cooldown_s if self.on else upcoming - self.warmup_s

    async def off(self) -> None:
        """Leave the amplifier off (the player is stopping)."""
        if self.on:
            await self._switch(False, -math.inf)

    async def _switch(self, on: bool, now: float) -> None:
        try:
            await self._offload(self.hardware.set_amplifier, on)
        except HardwareError as exc:
            log.error("cannot switch the amplifier %s: %s", "on" if on else "off", exc)
            return
        self.on = on
        if on:
            self._ready_at = now + self.warmup_s
