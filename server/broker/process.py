"""Start, reload and stop a Mosquitto broker that runs on generated files."""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from server.broker.render import (
    BrokerAccount,
    TlsListener,
    render_acl,
    render_config,
    render_password_file,
    render_server_password_file,
    write_atomic,
)

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """Mosquitto could not be started or reloaded; the message says what to do."""


def write_broker_files(
    *,
    broker_dir: Path,
    port: int,
    server_port: int,
    bind_host: str,
    server_hash: str,
    devices: Iterable[BrokerAccount],
    max_packet_bytes: int,
    log_to_file: bool = True,
    tls: TlsListener | None = None,
) -> Path:
    """Write mosquitto.conf, the password files and acl atomically; return the config path."""
    accounts = list(devices)
    broker_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(
        broker_dir / "passwd", render_password_file(server_hash=server_hash, devices=accounts)
    )
    write_atomic(broker_dir / "passwd-server", render_server_password_file(server_hash=server_hash))
    write_atomic(broker_dir / "acl", render_acl(accounts))
    conf = broker_dir / "mosquitto.conf"
    write_atomic(
        conf,
        render_config(
            port=port,
            server_port=server_port,
            bind_host=bind_host,
            broker_dir=broker_dir,
            max_packet_bytes=max_packet_bytes,
            log_to_file=log_to_file,
            run_as_user=getpass.getuser(),
            tls=tls,
        ),
    )
    return conf


def running_pid(broker_dir: Path) -> int | None:
    """The pid of the Mosquitto using broker_dir, if it is alive."""
    try:
        pid = int((broker_dir / "mosquitto.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def reload_broker(broker_dir: Path) -> bool:
    """Ask a running broker to re-read its password and ACL files (SIGHUP)."""
    pid = running_pid(broker_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    log.info("reloaded Mosquitto (pid %s) with the new password and ACL files", pid)
    return True


def find_mosquitto(mosquitto_bin: str = "mosquitto") -> str:
    """Locate the mosquitto binary (Debian puts it in /usr/sbin)."""
    found = shutil.which(mosquitto_bin) or shutil.which(
        mosquitto_bin, path="/usr/sbin:/usr/local/sbin"
    )
    if found is None:
        raise BrokerError(
            "mosquitto is not installed. Install it with: sudo apt-get install -y mosquitto"
        )
    return found


def start_broker(
    conf: Path, *, host: str, port: int, mosquitto_bin: str = "mosquitto", timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start Mosquitto in the foreground as a child process and wait until it listens."""
    if port_open(host, port):
        raise BrokerError(f"port {port} on {host} is already taken; choose another LOA_MQTT_PORT")
    proc = subprocess.Popen(
        [find_mosquitto(mosquitto_bin), "-c", str(conf)], start_new_session=True
    )
    (conf.parent / "mosquitto.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(
                f"mosquitto exited with code {proc.returncode}; see {conf.parent / 'mosquitto.log'}"
            )
        if port_open(host, port):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise BrokerError(f"mosquitto did not listen on {host}:{port} within {timeout}s")


def stop_broker(proc: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """Stop a broker started by start_broker (persisting retained messages)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, nor on the next one.

    The broker's server listener defaults to LOA_MQTT_PORT + 1, so a port chosen here for a
    broker must leave its successor free too.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
            if port < 65535 and _bindable(host, port + 1):
                return port
    raise BrokerError("no two consecutive free TCP ports found")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True
