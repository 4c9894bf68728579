"""systemd notifications: READY=1 and watchdog pings reach NOTIFY_SOCKET, and stop when the
agent's event loop is blocked (so systemd's WatchdogSec= restarts a hung agent)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent import sdnotify
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import (
    agent_env,
    eventually,
    finished,
    make_agent,
    new_device_id,
    observing,
    run,
    running,
    start_process,
)
from protocol import TopicKind


class NotifyListener:
    """A real unix datagram socket playing systemd's side; stamps each message on arrival."""

    def __init__(self, address: str) -> None:
        self.env_value = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def pings(self) -> list[float]:
        return [at for at, text in self.messages if text == "WATCHDOG=1"]

    def texts(self) -> list[str]:
        return [text for _, text in self.messages]


@contextlib.contextmanager
def listening(address: str) -> Iterator[NotifyListener]:
    listener = NotifyListener(address)
    try:
        yield listener
    finally:
        listener.close()


def _abstract() -> str:
    return f"@loa-test-notify-{uuid.uuid4().hex}"


def test_notify_reaches_path_and_abstract_sockets(tmp_path: Path) -> None:
    short = Path("/tmp") / f"loa-n-{uuid.uuid4().hex[:8]}.sock"  # sun_path holds 108 bytes
    try:
        for address in (str(short), _abstract()):
            with listening(address) as listener:
                assert sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": address})
                time.sleep(0.2)
                assert listener.texts() == ["READY=1"]
    finally:
        short.unlink(missing_ok=True)
    assert not sdnotify.notify("READY=1", env={})
    # A socket nobody listens on: a warning, never an exception in the agent.
    assert not sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert sdnotify.watchdog_interval(mine) == 1.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_no_notify_socket_means_no_pings_and_serve_returns() -> None:
    async def body() -> None:
        await asyncio.wait_for(sdnotify.serve(env={"WATCHDOG_USEC": "100000"}), 1)

    run(body())


@pytest.mark.slow
def test_a_real_agent_process_pings_the_watchdog(broker: TestBroker, tmp_path: Path) -> None:
    """`loa-agent run --sim` as systemd starts it: READY=1, pings every half WATCHDOG_USEC,
    STOPPING=1 on SIGTERM."""
    uid = new_device_id()
    env = agent_env(broker, uid, broker.add_device(uid), tmp_path / "data")
    log_file = tmp_path / "agent.log"
    address = _abstract()
    env.update(NOTIFY_SOCKET=address, WATCHDOG_USEC="400000")  # a ping every 0.2 s

    async def scenario(listener: NotifyListener) -> None:
        async with observing(broker, uid) as obs:
            proc = await start_process("run", "--sim", env=env, cwd=tmp_path, log_file=log_file)
            await eventually(lambda: len(listener.pings()) >= 5, 20, "five watchdog pings")
            await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "birth", timeout=15)
            proc.send_signal(signal.SIGTERM)
            code, output = await finished(proc, log_file)
            assert code == 0, output
        texts = listener.texts()
        assert texts[0] == f"READY=1\nSTATUS={uid}: running", texts
        assert texts[-1] == "STOPPING=1"
        pings = listener.pings()
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        # 0.2 s apart (the loop of a busy test machine may be late, never early).
        assert min(gaps) > 0.15, gaps

    with listening(address) as listener:
        run(scenario(listener))


@pytest.mark.slow
def test_pings_stop_while_the_agent_loop_is_blocked(
    broker: TestBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real agent whose loop hangs in a blocking call sends no ping until the call returns."""
    address = _abstract()
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    blocked: list[float] = []

    def hang() -> None:  # what a blocking call in a handler does to the loop
        blocked.append(time.monotonic())
        time.sleep(1.5)
        blocked.append(time.monotonic())

    async def scenario(listener: NotifyListener) -> None:
        agent = make_agent(broker, new_device_id(), tmp_path / "data")
        async with running(agent):
            await eventually(lambda: len(listener.pings()) >= 3, 10, "pings before the hang")
            asyncio.get_running_loop().call_soon(hang)
            await asyncio.sleep(0)
            count = len(listener.pings())
            await eventually(lambda: len(listener.pings()) >= count + 3, 10, "pings after")

    with listening(address) as listener:
        run(scenario(listener))
    start, end = blocked
    during = [at for at in listener.pings() if start + 0.2 < at < end]
    assert during == [], f"{len(during)} pings while the loop was blocked"
    after = [at for at in listener.pings() if at >= end]
    assert after and after[0] - end < 1.0  # the loop is back: pings resume at once
