"""Mains power: whether the cluster runs on mains, on its battery, or on a nearly empty battery.

The profile's `power` section names where to read it: GPIO inputs of a UPS HAT or of a relay
on the mains side ("gpio", libgpiod), or the simulated cluster's state file
`<data_dir>/sim_power.json` ("sim": `{"mains": true, "battery_low": false}`, optionally
`"soc_pct": 18`; no file means mains). A gpio profile's `fuel_gauge` adds the battery's state
of charge over I2C: on battery below `low_pct` is battery low, and the percent goes in the
event's detail. The monitor polls every `poll_s` on an injected clock and believes a new state only
once it held for two polls in a row, so a relay bouncing as the generator starts is not a
power cut. A change is one log line and one `power` device event in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from audio.clock import Clock
from edge_agent.hardware import GPIO_CONSUMER, HardwareError
from edge_agent.i2cgauge import DevI2cBus, FuelGauge, OpenBus
from edge_agent.localdb import LocalDbError
from firmware_profiles.schema import PowerConfig
from protocol import PowerState

log = logging.getLogger(__name__)

SIM_POWER_FILE = "sim_power.json"
ON_BATTERY: frozenset[PowerState] = frozenset({"battery", "battery_low"})
# The device event's detail, for the people reading the device page.
DETAILS: dict[PowerState, str] = {
    "mains": "Đã có điện lưới trở lại",
    "battery": "Mất điện lưới, đang chạy bằng ắc quy",
    "battery_low": "Ắc quy sắp cạn",
}
_SAYS: dict[PowerState, str] = {
    "mains": "mains power present",
    "battery": "mains power lost, running on the battery",
    "battery_low": "on battery and the battery is nearly empty; restore mains before it runs out",
}


class InputLine(Protocol):
    """One GPIO input line."""

    def read(self) -> bool:
        """True while the line is at its active level (raises HardwareError)."""

    def close(self) -> None:
        """Release the line."""


OpenLine = Callable[[str, int, bool], InputLine]  # (chip, pin, active_high) -> line


class PowerInputs(Protocol):
    """Where the monitor reads (mains present, battery low) and the state of charge, if known."""

    soc_pct: float | None  # as of the last read; None when nothing reports it

    def read(self) -> tuple[bool, bool] | None:
        """The inputs now, or None when they cannot be read (already logged)."""

    def close(self) -> None:
        """Release them."""


def state_of(mains: bool, battery_low: bool) -> PowerState:
    """The power state the inputs mean (a low-battery signal while on mains is charging)."""
    if mains:
        return "mains"
    return "battery_low" if battery_low else "battery"


class SimInputs:
    """The simulated cluster's power: `<data_dir>/sim_power.json`, absent meaning mains."""

    def __init__(self, *, path: Path) -> None:
        self.path = path
        self.soc_pct: float | None = None
        self._bad = False  # a bad file is logged once, until it is good again

    def read(self) -> tuple[bool, bool] | None:
        """(mains, battery_low) from the file; None (state unchanged) when it is unreadable."""
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self._bad = False
            self.soc_pct = None
            return True, False
        except (OSError, ValueError) as exc:
            self._refuse(f"cannot read it ({exc})")
            return None
        mains = data.get("mains", True) if isinstance(data, dict) else None
        low = data.get("battery_low", False) if isinstance(data, dict) else None
        soc = data.get("soc_pct") if isinstance(data, dict) else None
        if not isinstance(mains, bool) or not isinstance(low, bool):
            self._refuse('it must be a JSON object whose "mains" and "battery_low" are booleans')
            return None
        if soc is not None and (
            isinstance(soc, bool) or not isinstance(soc, int | float) or not 0 <= soc <= 100
        ):
            self._refuse('its "soc_pct", if present, must be a number from 0 to 100')
            return None
        self._bad = False
        self.soc_pct = None if soc is None else float(soc)
        return mains, low

    def _refuse(self, why: str) -> None:
        if not self._bad:
            self._bad = True
            log.error(
                'power: ignoring %s: %s; write {"mains": true, "battery_low": false} '
                "(the power state stays as it was)",
                self.path,
                why,
            )

    def close(self) -> None:
        """Nothing to release."""


class GpioInputs:
    """A UPS HAT's (or mains relay's) inputs: `mains_pin`, optionally `battery_low_pin` and
    a fuel gauge (battery low when on battery below its `low_pct`)."""

    def __init__(
        self,
        *,
        config: PowerConfig,
        chip: str,
        open_line: OpenLine,
        open_bus: OpenBus = DevI2cBus,
    ) -> None:
        if config.mains_pin is None:
            raise HardwareError("power.mains_pin is not set")
        self._failing = False
        self.soc_pct: float | None = None
        gauge = config.fuel_gauge
        self.gauge = None if gauge is None else FuelGauge(config=gauge, open_bus=open_bus)
        self.mains = open_line(chip, config.mains_pin, config.active_high)
        self.low: InputLine | None = None
        if config.battery_low_pin is not None:
            try:
                self.low = open_line(chip, config.battery_low_pin, config.active_high)
            except HardwareError:
                self.mains.close()
                raise

    def read(self) -> tuple[bool, bool] | None:
        """(mains, battery_low) from the lines; None (logged once per failure) on an error."""
        try:
            mains, low = self.mains.read(), self.low is not None and self.low.read()
        except HardwareError as exc:
            if not self._failing:
                self._failing = True
                log.error("power: %s; the power state stays as it was", exc)
            return None
        if self._failing:
            self._failing = False
            log.info("power: the GPIO inputs read again")
        if self.gauge is not None:
            self.soc_pct = self.gauge.read_pct()
            if self.soc_pct is not None and self.soc_pct < self.gauge.config.low_pct:
                low = True
        return mains, low

    def close(self) -> None:
        """Release the lines."""
        for line in (self.mains, self.low):
            if line is not None:
                with contextlib.suppress(HardwareError, OSError):
                    line.close()
        if self.gauge is not None:
            self.gauge.close()


class PowerMonitor:
    """Polls the profile's power inputs, debounces them, and reports each change."""

    def __init__(
        self,
        *,
        config: PowerConfig | None,
        device_id: str,
        data_dir: Path,
        gpio_chip: str | None,
        clock: Clock,
        server_time: Callable[[], float],
        record: Callable[[dict[str, Any]], Awaitable[int]],
        on_change: Callable[[PowerState], Awaitable[None]] | None = None,
        sim: bool = False,
        open_line: OpenLine | None = None,
        open_bus: OpenBus | None = None,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.data_dir = data_dir
        self.gpio_chip = gpio_chip
        self.clock = clock
        self._server_time = server_time
        self._record = record
        self._on_change = on_change
        self._sim = sim  # --sim: the state file even for a gpio profile (no hardware)
        self._open_line = open_line or _GpioInputLine
        self._open_bus: OpenBus = open_bus or DevI2cBus
        self.soc_pct: float | None = None  # the battery's state of charge, when reported
        self.state: PowerState | None = None
        self._candidate: PowerState | None = None
        self.changes = 0
        self.polls = 0

    @property
    def volume_cap(self) -> int | None:
        """The profile's battery volume cap while on battery, else None."""
        if self.config is None or self.state not in ON_BATTERY:
            return None
        return self.config.battery_volume_max

    def telemetry_fields(self) -> dict[str, Any]:
        """The Telemetry fields: the state (null when unknown) and the profile's battery cap."""
        cap = None if self.config is None else self.config.battery_volume_max
        return {"power": self.state, "battery_volume_cap": cap}

    def open_inputs(self) -> PowerInputs | None:
        """The inputs the profile names; None (logged) when it names none or they cannot open."""
        config = self.config
        if config is None:
            return None
        if config.kind == "sim" or self._sim:
            return SimInputs(path=self.data_dir / SIM_POWER_FILE)
        try:
            if self.gpio_chip is None:
                raise HardwareError("the profile's gpio_chip is not set")
            return GpioInputs(
                config=config,
                chip=self.gpio_chip,
                open_line=self._open_line,
                open_bus=self._open_bus,
            )
        except HardwareError as exc:
            log.error(
                "%s: power: cannot read the mains/battery inputs: %s; the power state is "
                "reported as unknown and the agent keeps playing",
                self.device_id,
                exc,
            )
            return None

    async def run(self) -> None:
        """Poll until cancelled (returns at once when there is nothing to read)."""
        inputs = await asyncio.to_thread(self.open_inputs)
        if inputs is None or self.config is None:
            return
        try:
            deadline = self.clock.monotonic()
            while True:
                await self.poll(inputs)
                deadline = max(deadline + self.config.poll_s, self.clock.monotonic())
                await self.clock.sleep_until(deadline)
        finally:
            await asyncio.to_thread(inputs.close)

    async def poll(self, inputs: PowerInputs) -> None:
        """One reading: the first sets the state, a different one must be read twice."""
        reading = await asyncio.to_thread(inputs.read)
        self.polls += 1
        if reading is None:
            return
        self.soc_pct = inputs.soc_pct
        seen = state_of(*reading)
        if self.state is None:
            self._candidate = None
            await self._changed(seen, first=True)
        elif seen == self.state:
            self._candidate = None
        elif seen == self._candidate:
            self._candidate = None
            await self._changed(seen, first=False)
        else:
            self._candidate = seen

    async def _changed(self, state: PowerState, *, first: bool) -> None:
        before, self.state = self.state, state
        cap = self.volume_cap
        capped = f"; volume capped at {cap}% while on battery" if cap is not None else ""
        log.log(
            logging.INFO if state == "mains" else logging.WARNING,
            "%s: power: %s%s%s",
            self.device_id,
            _SAYS[state],
            f" (was {before})" if before is not None else " at start",
            capped,
        )
        if first and state == "mains":
            return  # starting on mains is the normal case: no event, nothing to change
        self.changes += 1
        at = self._server_time()
        event = {"kind": "power", "at": at, "code": state, "detail": self._detail(state)}
        try:
            await self._record(event)
        except LocalDbError as exc:
            log.error("%s: power: cannot record the %s event: %s", self.device_id, state, exc)
        if self._on_change is not None:
            await self._on_change(state)

    def _detail(self, state: PowerState) -> str:
        if self.soc_pct is None:
            return DETAILS[state]
        pct = min(round(self.soc_pct), 100)  # a full MAX1704x cell can read 100.5
        if state == "battery_low":
            return f"{DETAILS[state]}, chỉ còn {pct}%"
        return f"{DETAILS[state]}. Ắc quy còn {pct}%"


def _import_gpiod() -> Any:
    try:
        return importlib.import_module("gpiod")
    except ImportError:
        raise HardwareError(
            "the gpiod Python package is missing: sudo apt-get install -y python3-libgpiod "
            "(or pip install gpiod), needed to read the mains/battery inputs"
        ) from None


class _GpioInputLine:
    """One input line on the GPIO character device; libgpiod 1.x and 2.x bindings."""

    def __init__(self, chip: str, pin: int, active_high: bool) -> None:
        gpiod = _import_gpiod()
        self.pin = pin
        path = chip if chip.startswith("/") else f"/dev/{chip}"
        try:
            if hasattr(gpiod, "request_lines"):  # libgpiod 2.x (pip gpiod >= 2)
                from gpiod.line import Direction, Value

                self._active: Any = Value.ACTIVE
                settings = gpiod.LineSettings(direction=Direction.INPUT, active_low=not active_high)
                self._request: Any = gpiod.request_lines(
                    path, consumer=GPIO_CONSUMER, config={pin: settings}
                )
                self._v2 = True
            else:  # libgpiod 1.x (Debian/Raspberry Pi OS python3-libgpiod)
                self._active = 1
                line = gpiod.Chip(path).get_line(pin)
                flags = 0 if active_high else gpiod.LINE_REQ_FLAG_ACTIVE_LOW
                line.request(consumer=GPIO_CONSUMER, type=gpiod.LINE_REQ_DIR_IN, flags=flags)
                self._request = line
                self._v2 = False
        except OSError as exc:
            raise HardwareError(
                f"cannot claim GPIO {pin} on {path} ({exc}); is another program using it, and may "
                "this user open the chip (group gpio)?"
            ) from None

    def read(self) -> bool:
        try:
            value = self._request.get_value(self.pin) if self._v2 else self._request.get_value()
        except OSError as exc:
            raise HardwareError(f"cannot read GPIO {self.pin}: {exc}") from None
        return bool(value == self._active)

    def close(self) -> None:
        self._request.release()
