"""The battery's state of charge from an I2C fuel gauge (MAX17040/17043/17048), via i2c-dev.

The gauge answers at a 7-bit address on /dev/i2c-<bus>; its SOC register (0x04) is a
big-endian word whose high byte is whole percent and whose low byte is 1/256 percent. Only
`open_bus` touches the bus file, so tests replace it with a fake bus.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from typing import Protocol

from firmware_profiles.schema import FuelGaugeConfig

log = logging.getLogger(__name__)

I2C_SLAVE = 0x0703  # linux/i2c-dev.h: the address later reads and writes go to
SOC_REGISTER = 0x04


class I2cBus(Protocol):
    """One I2C device on an open bus: plain writes and reads go to its address."""

    def write(self, data: bytes) -> None:
        """Send bytes (raises OSError when the device does not answer)."""

    def read(self, n: int) -> bytes:
        """Receive n bytes (raises OSError when the device does not answer)."""

    def close(self) -> None:
        """Release the bus."""


OpenBus = Callable[[int, int], I2cBus]  # (bus, address) -> the device; raises OSError


class DevI2cBus:
    """A device on /dev/i2c-<bus>, addressed with the I2C_SLAVE ioctl."""

    def __init__(self, bus: int, address: int) -> None:
        self._fd = os.open(f"/dev/i2c-{bus}", os.O_RDWR)
        try:
            fcntl.ioctl(self._fd, I2C_SLAVE, address)
        except OSError:
            os.close(self._fd)
            raise

    def write(self, data: bytes) -> None:
        if os.write(self._fd, data) != len(data):
            raise OSError("short write")

    def read(self, n: int) -> bytes:
        return os.read(self._fd, n)

    def close(self) -> None:
        os.close(self._fd)


def soc_pct(raw: bytes) -> float:
    """The SOC register's word as percent (a full cell can read a little over 100)."""
    if len(raw) != 2:
        raise OSError(f"expected 2 bytes from the SOC register, got {len(raw)}")
    return raw[0] + raw[1] / 256


class FuelGauge:
    """Reads the state of charge; a missing bus or a silent chip is logged once, never raised."""

    def __init__(self, *, config: FuelGaugeConfig, open_bus: OpenBus = DevI2cBus) -> None:
        self.config = config
        self._open_bus = open_bus
        self._bus: I2cBus | None = None
        self._failing = False

    @property
    def where(self) -> str:
        """The bus and address, as people look them up with i2cdetect."""
        return f"/dev/i2c-{self.config.bus} address {self.config.address:#04x}"

    def read_pct(self) -> float | None:
        """The state of charge (%), or None when the gauge cannot be read (logged once)."""
        try:
            if self._bus is None:
                self._bus = self._open_bus(self.config.bus, self.config.address)
            self._bus.write(bytes([SOC_REGISTER]))
            pct = soc_pct(self._bus.read(2))
        except OSError as exc:
            self._fail(exc)
            return None
        if self._failing:
            self._failing = False
            log.info("power: the fuel gauge on %s reads again", self.where)
        return pct

    def _fail(self, exc: OSError) -> None:
        self.close()  # reopened on the next poll: the HAT may be reseated or i2c enabled
        if not self._failing:
            self._failing = True
            log.error(
                "power: cannot read the %s fuel gauge on %s (%s); check that I2C is enabled "
                "(raspi-config, Interface Options, I2C), that the UPS HAT is seated and that "
                "`i2cdetect -y %d` shows the address; until then battery low comes only "
                "from battery_low_pin, if the profile sets one",
                self.config.chip,
                self.where,
                exc,
                self.config.bus,
            )

    def close(self) -> None:
        """Release the bus (it is opened again on the next read)."""
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.close()
            except OSError as exc:
                log.debug("power: closing %s: %s", self.where, exc)
