"""Real `python -m edge_agent run --sim` processes on a test server's broker, one per device."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from loa_testkit.brokerfix import HOST, TestBroker
from loa_testkit.harness import ROOT, agent_env
from server.settings import ServerSettings

# Test-sized timings (as tests/integration/test_agent_crash.py gives its agent processes).
FAST_ENV = {
    "LOA_AGENT_CLIP_HOLDOFF_S": "0.3",
    "LOA_AGENT_CLIP_RETRY_MAX_S": "2",
    "LOA_AGENT_EVENT_RESEND_S": "2",
    "LOA_AGENT_CLOCK_SYNC_INTERVAL_S": "2",
}


@dataclass
class AgentProcess:
    """One running agent process and the file its output goes to."""

    uid: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def output(self) -> str:
        """What the process wrote so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait (SIGKILL past the timeout); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def start_agent(
    settings: ServerSettings, uid: str, password: str, root: Path, extra_env: dict[str, str]
) -> AgentProcess:
    """Start `python -m edge_agent run --sim` for a registered device on the server's broker."""
    broker = cast(TestBroker, SimpleNamespace(host=HOST, port=settings.mqtt_port))
    data_dir = root / uid
    data_dir.mkdir(parents=True, exist_ok=True)
    env = agent_env(broker, uid, password, data_dir) | FAST_ENV | extra_env
    log = root / f"{uid}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--sim"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return AgentProcess(uid=uid, data_dir=data_dir, log=log, proc=proc)


@contextmanager
def agent_processes(
    settings: ServerSettings,
    devices: Sequence[tuple[str, str]],
    root: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[list[AgentProcess]]:
    """One agent process per (uid, password) for the block; each must exit cleanly on SIGTERM."""
    agents: list[AgentProcess] = []
    try:
        for uid, password in devices:
            agents.append(start_agent(settings, uid, password, root, extra_env or {}))
        yield agents
    except BaseException:
        for agent in agents:
            agent.stop()
        raise
    codes = [(agent, agent.stop()) for agent in agents]
    for agent, code in codes:
        assert code == 0, f"{agent.uid} exited {code}:\n{agent.output()[-3000:]}"
