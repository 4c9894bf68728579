"""A real Mosquitto for tests, running on files the server's broker module generates."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from server.broker.process import (
    free_port,
    reload_broker,
    start_broker,
    stop_broker,
    write_broker_files,
)
from server.broker.render import BrokerAccount, TlsListener, mosquitto_hash

HOST = "127.0.0.1"
MOSQUITTO_MISSING = "mosquitto is not installed (make test installs it with apt-get)"


@cache
def has_mosquitto() -> bool:
    """True when a Mosquitto binary is installed (Debian puts it in /usr/sbin, off PATH)."""
    return bool(shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin"))


@dataclass
class TestBroker:
    __test__ = False  # not a test class, despite the name

    """A Mosquitto on a free port whose accounts tests add and revoke."""

    port: int
    broker_dir: Path
    # The loopback listener for the server account (devices use `port`).
    server_port: int = field(default_factory=free_port)
    server_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    accounts: dict[str, BrokerAccount] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    host: str = HOST
    tls: TlsListener | None = None  # a TLS device listener too (tests/security/test_tls.py)

    def write(self) -> Path:
        """Render config, password and ACL files from the current accounts."""
        return write_broker_files(
            broker_dir=self.broker_dir,
            port=self.port,
            server_port=self.server_port,
            bind_host=self.host,
            server_hash=mosquitto_hash(self.server_password),
            devices=self.accounts.values(),
            max_packet_bytes=2 * 1024 * 1024,
            tls=self.tls,
        )

    def start(self) -> None:
        """Start (or restart after stop) the broker process."""
        self.proc = start_broker(self.write(), host=self.host, port=self.port)
        # Mosquitto installs its SIGHUP handler after opening every listener (the TLS one
        # last): a reload signalled before that would kill it.
        _wait_for_sighup_handler(self.proc.pid)

    def stop(self) -> None:
        """Stop the broker process (retained messages persist to disk)."""
        if self.proc is not None:
            stop_broker(self.proc)
            self.proc = None

    def add_device(self, uid: str, zone_ids: tuple[int, ...] = ()) -> str:
        """Create broker credentials for a device; return its password."""
        password = secrets.token_urlsafe(12)
        self.accounts[uid] = BrokerAccount(uid, mosquitto_hash(password), zone_ids)
        self._reload()
        return password

    def revoke_device(self, uid: str) -> None:
        """Remove a device's credentials (it is refused at its next connect)."""
        self.accounts.pop(uid, None)
        self._reload()

    def _reload(self) -> None:
        self.write()
        if reload_broker(self.broker_dir):
            time.sleep(0.3)  # SIGHUP is handled asynchronously by Mosquitto's main loop


def _wait_for_sighup_handler(pid: int, timeout: float = 10.0) -> None:
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            caught = next(x for x in status.read_text().splitlines() if x.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return  # not Linux, or the process is gone (the caller's next step says so)
        if int(caught.split()[1], 16) & (1 << (signal.SIGHUP - 1)):
            return
        time.sleep(0.01)
