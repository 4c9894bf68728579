"""Mains power: the monitor (sim file, GPIO at the seam) and an agent on battery."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from audio.clock import FakeClock
from edge_agent.hardware import HardwareError, SimHardware
from edge_agent.i2cgauge import FuelGauge, soc_pct
from edge_agent.power import SIM_POWER_FILE, GpioInputs, PowerInputs, PowerMonitor
from firmware_profiles import FirmwareProfile, load_profile
from firmware_profiles.schema import FuelGaugeConfig, PowerConfig
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import (
    Observer,
    eventually,
    make_agent,
    new_device_id,
    observing,
    run,
    running,
)
from loa_testkit.playfix import FAST, at, document, item, join_zone, make_clip, serving
from protocol import Command, DesiredState, DeviceEvent, TopicKind, encode
from schedules import Priority

SIM = PowerConfig(kind="sim", battery_volume_max=40, poll_s=1.0)
LOST = {"kind": "power", "code": "battery", "detail": "Mất điện lưới, đang chạy bằng ắc quy"}


@dataclass
class Rig:
    """A monitor with what it recorded and reported."""

    monitor: PowerMonitor
    events: list[dict[str, Any]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


def rig(
    tmp_path: Path,
    config: PowerConfig | None = SIM,
    *,
    clock: FakeClock | None = None,
    gpio_chip: str | None = None,
    open_line: Any = None,
    open_bus: Any = None,
) -> Rig:
    r = Rig(monitor=None)  # type: ignore[arg-type]

    async def record(event: dict[str, Any]) -> int:
        r.events.append(event)
        return len(r.events)

    async def on_change(state: str) -> None:
        r.changes.append(state)

    r.monitor = PowerMonitor(
        config=config,
        device_id="t-power",
        data_dir=tmp_path,
        gpio_chip=gpio_chip,
        clock=clock or FakeClock(),
        server_time=lambda: 1.8e9,
        record=record,
        on_change=on_change,
        open_line=open_line,
        open_bus=open_bus,
    )
    return r


def state(monitor: PowerMonitor) -> str | None:
    """The monitor's state now (a call, so that mypy does not narrow it between polls)."""
    return monitor.state


def write(tmp_path: Path, content: object) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_path / SIM_POWER_FILE).write_text(text, encoding="utf-8")


def inputs_of(r: Rig) -> PowerInputs:
    inputs = r.monitor.open_inputs()
    assert inputs is not None
    return inputs


async def polls(r: Rig, inputs: PowerInputs, n: int) -> None:
    for _ in range(n):
        await r.monitor.poll(inputs)


def power_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        rec.getMessage()
        for rec in caplog.records
        if rec.name == "edge_agent.power" and rec.levelno == logging.ERROR
    ]


def test_the_sim_file_is_debounced_and_each_change_is_one_event(tmp_path: Path) -> None:
    r = rig(tmp_path)
    mon = r.monitor

    async def scenario() -> None:
        inputs = inputs_of(r)
        await polls(r, inputs, 1)  # no file: mains, the normal start, no event
        assert (state(mon), r.events, r.changes) == ("mains", [], [])
        assert mon.telemetry_fields() == {"power": "mains", "battery_volume_cap": 40}
        assert mon.volume_cap is None

        write(tmp_path, {"mains": False, "battery_low": False})
        await polls(r, inputs, 1)
        assert state(mon) == "mains"  # seen once: not believed yet
        await polls(r, inputs, 1)
        assert state(mon) == "battery" and mon.volume_cap == 40
        assert r.events == [{**LOST, "at": 1.8e9}]
        assert r.changes == ["battery"]
        DeviceEvent.model_validate({**r.events[0], "seq": 1})  # what the server accepts

        write(tmp_path, {"mains": True})  # a blip of one poll is no change
        await polls(r, inputs, 1)
        write(tmp_path, {"mains": False})
        await polls(r, inputs, 3)
        assert state(mon) == "battery" and len(r.events) == 1

        write(tmp_path, {"mains": False, "battery_low": True})
        await polls(r, inputs, 2)
        assert state(mon) == "battery_low" and mon.volume_cap == 40
        assert r.events[-1]["detail"] == "Ắc quy sắp cạn"

        (tmp_path / SIM_POWER_FILE).unlink()  # no file: mains again
        await polls(r, inputs, 2)
        assert state(mon) == "mains" and mon.volume_cap is None
        assert [e["code"] for e in r.events] == ["battery", "battery_low", "mains"]
        assert r.events[-1]["detail"] == "Đã có điện lưới trở lại"
        assert r.changes == ["battery", "battery_low", "mains"]
        assert mon.telemetry_fields() == {"power": "mains", "battery_volume_cap": 40}

    run(scenario())


def test_a_bad_file_is_one_logged_error_and_the_state_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = rig(tmp_path)
    caplog.set_level(logging.INFO, logger="edge_agent.power")

    async def scenario() -> None:
        inputs = inputs_of(r)
        await polls(r, inputs, 1)
        for bad in ("{not json", '{"mains": "no"}', "[1, 2]"):
            write(tmp_path, bad)
            await polls(r, inputs, 2)
        assert state(r.monitor) == "mains" and r.events == []
        errors = power_errors(caplog)
        assert len(errors) == 1 and SIM_POWER_FILE in errors[0]
        write(tmp_path, {"mains": False})
        await polls(r, inputs, 2)
        assert state(r.monitor) == "battery"
        write(tmp_path, "")  # bad again: logged again, still on battery
        await polls(r, inputs, 3)
        assert state(r.monitor) == "battery" and len(power_errors(caplog)) == 2

    run(scenario())


def test_starting_on_battery_is_an_event_at_once(tmp_path: Path) -> None:
    r = rig(tmp_path)
    write(tmp_path, {"mains": False, "battery_low": True})

    async def scenario() -> None:
        await polls(r, inputs_of(r), 1)

    run(scenario())
    assert state(r.monitor) == "battery_low"
    assert [e["code"] for e in r.events] == ["battery_low"] and r.changes == ["battery_low"]


def test_run_polls_every_poll_s_on_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    r = rig(tmp_path, clock=clock)
    mon = r.monitor

    async def scenario() -> None:
        task = asyncio.create_task(mon.run())
        await eventually(lambda: mon.polls == 1, what="the first poll")
        write(tmp_path, {"mains": False})
        await asyncio.sleep(0.2)
        assert mon.polls == 1  # nothing until the clock moves
        clock.advance(0.9)
        await asyncio.sleep(0.2)
        assert mon.polls == 1
        clock.advance(0.1)
        await eventually(lambda: mon.polls == 2, what="the second poll")
        assert state(mon) == "mains"
        clock.advance(1.0)
        await eventually(lambda: mon.state == "battery", what="battery after two polls")
        assert mon.polls == 3
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(scenario())


class FakeLine:
    """A GPIO input at the hardware seam."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.fail = False
        self.closed = False

    def read(self) -> bool:
        if self.fail:
            raise HardwareError("cannot read GPIO 6: [Errno 5] Input/output error")
        return self.active

    def close(self) -> None:
        self.closed = True


UPS = PowerConfig(
    kind="gpio", mains_pin=6, battery_low_pin=13, active_high=False, battery_volume_max=30
)


def test_gpio_inputs_give_the_state_and_survive_read_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines: dict[int, FakeLine] = {}
    opened: list[tuple[str, int, bool]] = []

    def open_line(chip: str, pin: int, active_high: bool) -> FakeLine:
        opened.append((chip, pin, active_high))
        lines[pin] = FakeLine(active=pin == 6)
        return lines[pin]

    r = rig(tmp_path, UPS, gpio_chip="gpiochip0", open_line=open_line)
    caplog.set_level(logging.INFO, logger="edge_agent.power")

    async def scenario() -> None:
        inputs = inputs_of(r)
        assert isinstance(inputs, GpioInputs)
        assert opened == [("gpiochip0", 6, False), ("gpiochip0", 13, False)]
        await polls(r, inputs, 1)
        assert state(r.monitor) == "mains"
        lines[6].active = False
        await polls(r, inputs, 2)
        assert state(r.monitor) == "battery" and r.monitor.volume_cap == 30
        lines[13].active = True
        await polls(r, inputs, 2)
        assert state(r.monitor) == "battery_low"
        lines[6].fail = True
        await polls(r, inputs, 3)
        assert state(r.monitor) == "battery_low"
        assert len(power_errors(caplog)) == 1
        lines[6].fail, lines[6].active = False, True
        await polls(r, inputs, 2)
        assert state(r.monitor) == "mains"
        assert [e["code"] for e in r.events] == ["battery", "battery_low", "mains"]
        inputs.close()
        assert lines[6].closed and lines[13].closed

    run(scenario())


def test_inputs_that_cannot_open_leave_the_state_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    mains = FakeLine(True)

    def open_line(chip: str, pin: int, active_high: bool) -> FakeLine:
        if pin == 13:
            raise HardwareError("cannot claim GPIO 13 on /dev/gpiochip0 (busy)")
        return mains

    r = rig(tmp_path, UPS, gpio_chip="gpiochip0", open_line=open_line)
    run(asyncio.wait_for(r.monitor.run(), 5))  # returns: nothing to poll
    assert mains.closed  # the line it did claim is released
    assert state(r.monitor) is None and r.monitor.telemetry_fields()["power"] is None
    assert len(power_errors(caplog)) == 1 and "GPIO 13" in power_errors(caplog)[0]

    caplog.clear()
    monkeypatch.setitem(sys.modules, "gpiod", None)  # the real seam, without libgpiod
    r = rig(tmp_path, UPS, gpio_chip="gpiochip0")
    run(asyncio.wait_for(r.monitor.run(), 5))
    assert state(r.monitor) is None
    assert len(power_errors(caplog)) == 1 and "python3-libgpiod" in power_errors(caplog)[0]


def test_the_gpiod_input_line_reads_through_libgpiod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: dict[int, dict[str, Any]] = {}
    levels = {6: 0}  # physical levels

    class Line:
        def __init__(self, pin: int) -> None:
            self.pin = pin

        def request(self, **kwargs: Any) -> None:
            requested[self.pin] = kwargs

        def get_value(self) -> int:  # the logical value: libgpiod applies active-low
            return levels[self.pin] ^ bool(requested[self.pin]["flags"] & 4)

        def release(self) -> None:
            requested.pop(self.pin)

    fake = types.SimpleNamespace(
        Chip=lambda path: types.SimpleNamespace(get_line=Line),
        LINE_REQ_DIR_IN=1,
        LINE_REQ_FLAG_ACTIVE_LOW=4,
    )
    monkeypatch.setitem(sys.modules, "gpiod", fake)  # libgpiod 1.x bindings' API
    config = PowerConfig(kind="gpio", mains_pin=6, active_high=False)
    r = rig(tmp_path, config, gpio_chip="gpiochip0")

    async def scenario() -> None:
        inputs = inputs_of(r)
        assert requested[6] == {"consumer": "loa-agent", "type": 1, "flags": 4}
        await polls(r, inputs, 1)
        assert state(r.monitor) == "mains"  # active low: a low pin is "mains present"
        levels[6] = 1
        await polls(r, inputs, 2)
        assert state(r.monitor) == "battery"
        inputs.close()
        assert requested == {}

    run(scenario())


# -- an agent on battery, against the real broker ------------------------------------------


def sim_profile(poll_s: float = 0.2) -> FirmwareProfile:
    power = PowerConfig(kind="sim", battery_volume_max=40, poll_s=poll_s)
    return load_profile("sim").model_copy(update={"power": power})


def unique(events: list[DeviceEvent]) -> list[DeviceEvent]:
    """Events by seq, as the server stores them (idempotent by (device, seq)), in seq order."""
    return [e for _, e in sorted({e.seq: e for e in events}.items())]


def power_events(events: list[Any]) -> list[DeviceEvent]:
    return [e for e in events if isinstance(e, DeviceEvent) and e.kind == "power"]


async def telemetry_says(obs: Observer, power: str, *, after: int = 0) -> None:
    """Wait for a telemetry sample (past the first `after`) whose power is `power`."""
    await eventually(
        lambda: any(m.power == power for m in obs.of(TopicKind.TELEMETRY)[after:]),
        what=f"telemetry saying {power}",
    )


def test_an_agent_on_battery_reports_it_and_caps_its_volume(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid)
    hw = SimHardware()
    data_dir = tmp_path / "agent"
    agent = make_agent(
        broker,
        uid,
        data_dir,
        password=password,
        profile=sim_profile(),
        hardware=hw,
        telemetry_interval_s=1,
    )

    async def scenario() -> None:
        async with serving(broker, uid) as server, observing(broker, uid) as obs, running(agent):
            await obs.send(TopicKind.STATE, encode(DesiredState(version=1, volume=60)))
            await eventually(lambda: hw.volume == 60, what="the desired volume")
            sample = await obs.wait_for(TopicKind.TELEMETRY, lambda m: m.power == "mains")
            assert sample.battery_volume_cap == 40

            seen = len(obs.of(TopicKind.TELEMETRY))
            await asyncio.to_thread(write, data_dir, {"mains": False})
            await eventually(lambda: hw.volume == 40, what="the battery cap")
            await eventually(
                lambda: bool(power_events(server.device_events(uid))), what="the event"
            )
            (event,) = power_events(unique(server.device_events(uid)))
            assert (event.code, event.detail) == (LOST["code"], LOST["detail"])
            assert abs(event.at - time.time()) < 30
            await telemetry_says(obs, "battery", after=seen)

            command = Command(
                id="c1", name="set_volume", args={"volume": 80}, expires_at=time.time() + 60
            )
            await obs.send(TopicKind.COMMAND, encode(command))
            ack = await obs.wait_for(TopicKind.ACK, lambda m: m.id == "c1")
            assert ack.ok and ack.detail == "volume set to 40% (capped at 40%: on battery)"

            seen = len(obs.of(TopicKind.TELEMETRY))
            await asyncio.to_thread(write, data_dir, {"mains": True})
            await eventually(lambda: agent.power.state == "mains", what="mains again")
            await eventually(lambda: hw.volume == 60, what="the normal volume back")
            await telemetry_says(obs, "mains", after=seen)  # sent at once, not in 30 s
            await eventually(lambda: len(power_events(server.device_events(uid))) >= 2)
            assert [e.code for e in power_events(unique(server.device_events(uid)))] == [
                "battery",
                "mains",
            ]
            await eventually(lambda: agent.runtime.outbox.acknowledged >= 2, what="the acks")
        # Never an uncapped volume while on battery: start, desired, cap, command, mains.
        assert hw.actions("volume") == [70, 60, 40, 40, 60]

    run(scenario(), timeout=40)
    assert agent.rejected == {}


def test_on_battery_items_are_capped_and_an_emergency_is_not(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    clip = make_clip(tmp_path / "clips", seconds=1.0)
    hw = SimHardware()
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    write(data_dir, {"mains": False})  # the cluster starts on its battery
    agent = make_agent(
        broker, uid, data_dir, password=password, profile=sim_profile(), hardware=hw, **FAST
    )

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            await eventually(lambda: agent.power.state == "battery", what="on battery")
            await join_zone(server, agent, 7)  # desired volume 60
            items = [
                item("p1@n", at(4.0), [clip], volume=90),
                item("p2@e", at(6.0), [clip], priority=Priority.EMERGENCY),
            ]
            await server.publish_schedule(document(uid, 1, items))
            await server.publish_zone_clip(7, clip)

            def plays() -> list[Any]:
                return [e for e in server.events(uid) if not isinstance(e, DeviceEvent)]

            await eventually(lambda: len(plays()) == 2, timeout=20, what="both played")
            assert {e.outcome for e in plays()} == {"played"}
            assert [e.code for e in power_events(server.device_events(uid))] == ["battery"]

            await asyncio.to_thread(write, data_dir, {"mains": True})
            await eventually(lambda: hw.volume == 60, what="the normal volume back")
        # Start (state unknown yet), battery, desired 60 capped, the item's 90 capped, the
        # emergency at the profile's emergency volume, mains: the desired volume again.
        assert hw.actions("volume") == [70, 40, 40, 40, 100, 60]

    run(scenario(), timeout=60)
    assert agent.rejected == {}


# -- the I2C fuel gauge (MAX17040 family), a fake bus at the seam ------------------------------


class FakeBus:
    """The gauge's /dev/i2c-N file: the SOC register's word, or an I/O error."""

    def __init__(self, pct: float) -> None:
        self.pct = pct
        self.fail = False
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.fail:
            raise OSError(121, "Remote I/O error")
        self.writes.append(data)

    def read(self, n: int) -> bytes:
        whole = int(self.pct)
        return bytes([whole, round((self.pct - whole) * 256)])[:n]

    def close(self) -> None:
        self.closed = True


GAUGE = PowerConfig(
    kind="gpio",
    mains_pin=6,
    active_high=False,
    fuel_gauge=FuelGaugeConfig(chip="max17040", low_pct=20),
)


def gauge_rig(
    tmp_path: Path, config: PowerConfig, buses: list[FakeBus], opened: list[tuple[int, int]]
) -> tuple[Rig, dict[int, FakeLine]]:
    """A gpio rig whose I2C bus opens `buses[0]` once the list has one, else is missing."""
    lines: dict[int, FakeLine] = {}

    def open_line(chip: str, pin: int, active_high: bool) -> FakeLine:
        lines[pin] = FakeLine(active=pin == 6)
        return lines[pin]

    def open_bus(bus: int, address: int) -> FakeBus:
        opened.append((bus, address))
        if not buses:
            raise FileNotFoundError(2, "No such file or directory", f"/dev/i2c-{bus}")
        return buses[0]

    r = rig(tmp_path, config, gpio_chip="gpiochip0", open_line=open_line, open_bus=open_bus)
    return r, lines


def test_the_fuel_gauge_makes_a_low_battery_and_its_percent_goes_in_the_detail(
    tmp_path: Path,
) -> None:
    bus = FakeBus(85.0)
    opened: list[tuple[int, int]] = []
    r, lines = gauge_rig(tmp_path, GAUGE, [bus], opened)

    async def scenario() -> None:
        inputs = inputs_of(r)
        bus.pct = 10.0  # on mains a low charge is charging, not a low battery
        await polls(r, inputs, 2)
        assert state(r.monitor) == "mains" and r.events == []
        bus.pct = 85.5
        lines[6].active = False
        await polls(r, inputs, 2)
        assert state(r.monitor) == "battery"
        assert r.events[-1]["detail"] == "Mất điện lưới, đang chạy bằng ắc quy. Ắc quy còn 86%"
        bus.pct = 19.75  # below low_pct (20): believed after two polls like any change
        await polls(r, inputs, 1)
        assert state(r.monitor) == "battery"
        await polls(r, inputs, 1)
        assert state(r.monitor) == "battery_low"
        assert r.events[-1]["detail"] == "Ắc quy sắp cạn, chỉ còn 20%"
        assert r.monitor.soc_pct == 19.75
        DeviceEvent.model_validate({**r.events[-1], "seq": 2})
        lines[6].active, bus.pct = True, 19.0
        await polls(r, inputs, 2)
        assert r.events[-1]["detail"] == "Đã có điện lưới trở lại. Ắc quy còn 19%"
        assert opened == [(1, 0x36)] and set(bus.writes) == {bytes([0x04])}
        inputs.close()
        assert bus.closed

    run(scenario())


def test_a_missing_or_silent_gauge_is_one_log_line_and_the_pin_still_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = GAUGE.model_copy(update={"battery_low_pin": 13})
    buses: list[FakeBus] = []
    opened: list[tuple[int, int]] = []
    r, lines = gauge_rig(tmp_path, config, buses, opened)
    caplog.set_level(logging.INFO, logger="edge_agent")

    def errors() -> list[str]:
        return [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]

    async def scenario() -> None:
        inputs = inputs_of(r)  # no /dev/i2c-1: the pins still open
        lines[6].active = False
        await polls(r, inputs, 3)
        assert state(r.monitor) == "battery" and r.monitor.soc_pct is None
        assert r.events[-1]["detail"] == "Mất điện lưới, đang chạy bằng ắc quy"
        assert len(errors()) == 1 and len(opened) == 3  # tried on every poll, logged once
        assert "/dev/i2c-1 address 0x36" in errors()[0] and "raspi-config" in errors()[0]
        assert "seated" in errors()[0]
        lines[13].active = True  # the pin alone says low
        await polls(r, inputs, 2)
        assert state(r.monitor) == "battery_low"

        buses.append(FakeBus(50.0))  # I2C enabled: the gauge answers and is opened once
        await polls(r, inputs, 2)
        assert r.monitor.soc_pct == 50.0 and len(opened) == 6  # 5 misses, then one open
        buses[0].fail = True  # the chip stops answering: logged again, the bus closed
        await polls(r, inputs, 2)
        assert r.monitor.soc_pct is None and buses[0].closed
        assert len(errors()) == 2 and "Remote I/O" in errors()[1]
        assert state(r.monitor) == "battery_low"

    run(scenario())


def test_the_real_i2c_seam_reports_a_missing_bus_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not Path("/dev/i2c-99").exists()
    gauge = FuelGauge(config=FuelGaugeConfig(chip="max17040", bus=99, address=0x36))
    assert gauge.read_pct() is None and gauge.read_pct() is None
    messages = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(messages) == 1 and "/dev/i2c-99 address 0x36" in messages[0]
    assert soc_pct(bytes([18, 64])) == 18.25
    with pytest.raises(OSError, match="2 bytes"):
        soc_pct(b"\x12")


def test_the_sim_file_may_carry_the_state_of_charge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = rig(tmp_path)

    async def scenario() -> None:
        inputs = inputs_of(r)
        write(tmp_path, {"mains": False, "battery_low": True, "soc_pct": 12})
        await polls(r, inputs, 1)
        assert r.events[-1]["detail"] == "Ắc quy sắp cạn, chỉ còn 12%"
        for bad in (101, "12", True, -1):
            write(tmp_path, {"mains": True, "soc_pct": bad})
            await polls(r, inputs, 2)
        assert state(r.monitor) == "battery_low" and r.monitor.soc_pct == 12
        errors = power_errors(caplog)
        assert len(errors) == 1 and "soc_pct" in errors[0]

    run(scenario())
