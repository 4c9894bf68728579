"""Helpers for edge agent tests: a server-side observer on the real broker, agent runners."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.agent import Agent
from edge_agent.hardware import SimHardware
from edge_agent.settings import load_settings
from edge_agent.telemetry import SimulatedSensors
from firmware_profiles import FirmwareProfile, load_profile
from loa_testkit.brokerfix import TestBroker
from protocol import (
    PREFIX,
    SERVER_USERNAME,
    TopicKind,
    decode,
    device_topic,
    parse_device_topic,
)
from protocol.mqtt_client import MqttLink, Outgoing

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run one async test body on a fresh loop, with an overall time limit."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def new_device_id(prefix: str = "t") -> str:
    """A device id no other test uses (the session broker keeps retained messages)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until check() is true, or fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.02)


class Observer:
    """A server-account client that records device messages and can publish to devices."""

    def __init__(self, broker: TestBroker, device_id: str, *, also: Sequence[str] = ()) -> None:
        self.device_id = device_id
        self.device_ids = (device_id, *also)
        self.received: list[tuple[str, TopicKind, Any]] = []
        self.raw: list[tuple[str, bytes]] = []
        self._probe = f"{PREFIX}/test/{uuid.uuid4().hex}"
        self._probed = asyncio.Event()
        self.link = MqttLink(
            client_id=f"obs-{uuid.uuid4().hex[:8]}",
            host=broker.host,
            port=broker.server_port,
            username=SERVER_USERNAME,
            password=broker.server_password,
            on_message=self._on_message,
            keepalive=10,
            min_backoff=0.1,
            max_backoff=0.5,
        )
        for uid in self.device_ids:
            for kind in (TopicKind.STATUS, TopicKind.TELEMETRY, TopicKind.ACK):
                self.link.subscribe(device_topic(uid, kind))
        self.link.subscribe(self._probe)
        self._task: asyncio.Task[None] | None = None

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self._probe:
            self._probed.set()
            return
        if not payload:
            return  # a retained message being cleared
        self.raw.append((topic, payload))
        uid, kind = parse_device_topic(topic)
        self.received.append((uid, kind, decode(kind, payload)))

    async def start(self) -> None:
        """Connect and return once the subscriptions are active."""
        self._task = asyncio.create_task(self.link.run())
        await asyncio.wait_for(self.link.connected.wait(), 10)
        # The broker handles SUBSCRIBE before a later PUBLISH on the same connection: once
        # the probe comes back, every subscription is in place.
        while not self._probed.is_set():
            self.link.publish(Outgoing(self._probe, b"probe", qos=1))
            try:
                await asyncio.wait_for(self._probed.wait(), 1)
            except TimeoutError:
                continue

    async def clear_retained(self) -> None:
        """Delete the devices' retained status and state, so later tests on the shared
        broker (some subscribe to everything) do not read them."""
        for uid in self.device_ids:
            for kind in (TopicKind.STATUS, TopicKind.STATE):
                await self.link.publish_wait(Outgoing(device_topic(uid, kind), b"", 1, True))

    async def stop(self) -> None:
        """Disconnect."""
        await self.link.close()
        if self._task is not None:
            await asyncio.wait_for(self._task, 5)

    def of(
        self, kind: TopicKind, type_name: str | None = None, *, device_id: str | None = None
    ) -> list[Any]:
        """Messages of one device (default: the main one) on one topic kind, maybe one type."""
        uid = device_id or self.device_id
        return [
            m
            for d, k, m in self.received
            if d == uid
            and k == kind
            and (type_name is None or getattr(m, "type", None) == type_name)
        ]

    async def wait_for(
        self, kind: TopicKind, check: Callable[[Any], bool], timeout: float = 10.0
    ) -> Any:
        """The first message of `kind` satisfying check (waiting for it if needed)."""
        found: list[Any] = []

        def seen() -> bool:
            found[:] = [m for m in self.of(kind) if check(m)]
            return bool(found)

        await eventually(seen, timeout, f"a {kind} message for {self.device_id}")
        return found[0]

    async def send(self, kind: TopicKind, payload: bytes, *, retain: bool = False) -> None:
        """Publish a raw payload on one of the device's topics and wait for the broker's ack."""
        out = Outgoing(device_topic(self.device_id, kind), payload, qos=1, retain=retain)
        await self.link.publish_wait(out)


@asynccontextmanager
async def observing(
    broker: TestBroker, device_id: str, *, also: Sequence[str] = (), clear: bool = True
) -> AsyncIterator[Observer]:
    """An Observer, connected and subscribed for the block; it then clears retained messages."""
    obs = Observer(broker, device_id, also=also)
    await obs.start()
    try:
        yield obs
        if clear:
            await obs.clear_retained()
    finally:
        await obs.stop()


def make_agent(
    broker: TestBroker,
    device_id: str,
    data_dir: Path,
    *,
    password: str | None = None,
    profile: FirmwareProfile | None = None,
    hardware: SimHardware | None = None,
    clock: Callable[[], float] | None = None,
    **settings: Any,
) -> Agent:
    """An in-process simulated agent with test-sized timings."""
    values: dict[str, Any] = {
        "keepalive_s": 5,
        "min_backoff_s": 0.1,
        "max_backoff_s": 0.5,
        "connect_timeout_s": 2,
        "telemetry_interval_s": 30,
    } | settings
    loaded = load_settings(
        sim=True,
        device_id=device_id,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_password=password if password is not None else broker.add_device(device_id),
        data_dir=data_dir,
        **values,
    )
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    return Agent(
        settings=loaded,
        profile=profile or load_profile("sim"),
        hardware=hardware or SimHardware(),
        sensors=SimulatedSensors(device_id=device_id),
        **extra,
    )


@asynccontextmanager
async def running(agent: Agent, *, wait_connected: bool = True) -> AsyncIterator[Agent]:
    """Run an agent in the background; stop it cleanly (and check it stopped) at the end."""
    task = asyncio.create_task(agent.run())
    try:
        if wait_connected:
            await asyncio.wait_for(agent.link.connected.wait(), 10)
            # Connected is not subscribed: a message sent now could beat the SUBSCRIBE.
            await asyncio.wait_for(agent.subscribed.wait(), 10)
        yield agent
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 10)


def agent_env(broker: TestBroker, device_id: str, password: str, data_dir: Path) -> dict[str, str]:
    """Environment for a `python -m edge_agent` subprocess (settings only via env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOA_AGENT_")}
    env.update(
        PYTHONPATH=str(ROOT),
        LOA_AGENT_DEVICE_ID=device_id,
        LOA_AGENT_MQTT_HOST=broker.host,
        LOA_AGENT_MQTT_PORT=str(broker.port),
        LOA_AGENT_MQTT_PASSWORD=password,
        LOA_AGENT_DATA_DIR=str(data_dir),
        LOA_AGENT_KEEPALIVE_S="5",
        LOA_AGENT_MIN_BACKOFF_S="0.1",
        LOA_AGENT_MAX_BACKOFF_S="0.5",
        LOA_AGENT_CONNECT_TIMEOUT_S="2",
    )
    return env


async def start_process(
    *args: str, env: dict[str, str], cwd: Path, log_file: Path
) -> asyncio.subprocess.Process:
    """Start `python -m edge_agent ARGS`, its output going to log_file (never a full pipe)."""
    with log_file.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", *args, env=env, cwd=cwd, stdout=log, stderr=log
        )


async def finished(
    proc: asyncio.subprocess.Process, log_file: Path, timeout: float = 15.0
) -> tuple[int, str]:
    """Wait for a process; return (exit code, its output)."""
    code = await asyncio.wait_for(proc.wait(), timeout)
    return code, await asyncio.to_thread(log_file.read_text, errors="replace")


async def with_timeout(awaitable: Awaitable[T], timeout: float) -> T:
    """Await with a time limit (readable in test bodies)."""
    return await asyncio.wait_for(awaitable, timeout)
