"""Fixtures shared by every test package: a real Mosquitto, databases."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from loa_testkit.brokerfix import HOST, TestBroker
from server.broker.pki import ensure_private_pki
from server.broker.process import free_port
from server.broker.render import TlsListener

# Brokers started from ServerSettings would all take the TLS port 8883 (several test runs
# share this machine): off unless a test asks for TLS on a port of its own (tests/tlsfix.py).
os.environ.setdefault("LOA_MQTT_TLS_PORT", "0")


def _mosquitto_available() -> bool:
    return bool(shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBroker]:
    """A real Mosquitto on a free port with server-generated security, for the whole run."""
    if not _mosquitto_available():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    b = TestBroker(port=free_port(), broker_dir=tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[TestBroker]:
    """A broker of the test's own, for tests that stop and restart it."""
    if not _mosquitto_available():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    b = TestBroker(port=free_port(), broker_dir=tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TestBroker]:
    """A broker of the test's own with a TLS device listener (private CA in tmp_path/pki)."""
    if not _mosquitto_available():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    files = ensure_private_pki(tmp_path / "pki", hosts=[HOST])
    tls = TlsListener(free_port(), HOST, files.certfile, files.keyfile)
    b = TestBroker(port=free_port(), broker_dir=tmp_path / "mosquitto", tls=tls)
    b.start()
    yield b
    b.stop()
