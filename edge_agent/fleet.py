"""Many simulated agents in one process, on one asyncio loop (load tests, demos)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edge_agent.agent import RESTART_EXIT_CODE, Agent
from edge_agent.hardware import SimHardware
from edge_agent.settings import SIM_PROFILE, load_settings
from edge_agent.telemetry import SimulatedSensors
from firmware_profiles import load_profile
from protocol import TopicError, check_device_id

log = logging.getLogger(__name__)


class FleetError(Exception):
    """The credentials file is unusable; the message names the line and the problem."""


@dataclass(frozen=True)
class FleetCredential:
    """One simulated device's broker identity."""

    device_id: str
    password: str


def read_credentials(path: Path, *, count: int) -> list[FleetCredential]:
    """The first `count` credentials of a JSON-lines file of {"device_id", "password"}."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"cannot read credentials file {path}: {exc}") from None
    found: list[FleetCredential] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if len(found) == count:
            break
        if not line.strip():
            continue
        found.append(_parse_line(path, number, line, seen))
    if len(found) < count:
        raise FleetError(
            f"credentials file {path} holds {len(found)} devices but --count is {count}; "
            "generate more devices on the server or lower --count"
        )
    return found


def _parse_line(path: Path, number: int, line: str, seen: set[str]) -> FleetCredential:
    where = f"{path} line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FleetError(f"{where} is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise FleetError(f'{where} must be an object {{"device_id": ..., "password": ...}}')
    device_id, password = data.get("device_id"), data.get("password")
    if not isinstance(device_id, str) or not isinstance(password, str) or not password:
        raise FleetError(f"{where} needs string fields device_id and password")
    try:
        check_device_id(device_id)
    except TopicError as exc:
        raise FleetError(f"{where}: {exc}") from None
    if device_id in seen:
        raise FleetError(f"{where} repeats device {device_id}")
    seen.add(device_id)
    return FleetCredential(device_id, password)


class Fleet:
    """N simulated agents sharing one event loop; run() returns when all have stopped."""

    def __init__(
        self,
        *,
        credentials: list[FleetCredential],
        mqtt_host: str,
        mqtt_port: int,
        data_root: Path,
        ramp_s: float = 0.0,
    ) -> None:
        profile = load_profile(SIM_PROFILE)
        self.ramp_s = ramp_s
        self.agents = [
            Agent(
                settings=load_settings(
                    sim=True,
                    device_id=c.device_id,
                    mqtt_password=c.password,
                    mqtt_host=mqtt_host,
                    mqtt_port=mqtt_port,
                    firmware_profile=SIM_PROFILE,
                    data_dir=data_root / c.device_id,
                ),
                profile=profile,
                hardware=SimHardware(),
                sensors=SimulatedSensors(device_id=c.device_id),
                sim=True,
            )
            for c in credentials
        ]
        self._stopping = False

    async def run(self) -> int:
        """Start every agent (spread over ramp_s) and wait for all; 0 unless one failed."""
        log.warning("fleet: starting %d simulated agents", len(self.agents))
        delay = self.ramp_s / len(self.agents) if self.agents else 0.0
        codes = await asyncio.gather(
            *(self._run_one(i, i * delay) for i in range(len(self.agents)))
        )
        failed = [code for code in codes if code != 0]
        return failed[0] if failed else 0

    async def _run_one(self, index: int, delay: float) -> int:
        if delay:
            await asyncio.sleep(delay)
        while not self._stopping:
            agent = self.agents[index]
            code = await agent.run()
            if code != RESTART_EXIT_CODE or self._stopping:
                return code
            # A simulated device asked to restart comes back in-process, as systemd would
            # restart a real one.
            self.agents[index] = Agent(
                settings=agent.settings,
                profile=agent.profile,
                hardware=agent.hardware,
                sensors=agent.sensors,
                sim=True,
            )
        return 0

    def request_stop(self, exit_code: int = 0) -> None:
        """Stop every agent (each says goodbye with Offline(shutdown))."""
        self._stopping = True
        for agent in self.agents:
            agent.request_stop(exit_code)
