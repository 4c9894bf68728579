"""Fixtures shared by every test package: a real Mosquitto, the backends, the permission world."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from loa_testkit.brokerfix import HOST, TestBroker, has_mosquitto
from server.broker.pki import ensure_private_pki
from server.broker.process import free_port
from server.broker.render import TlsListener
from tests.stack import skip_without_mosquitto

pytest_plugins = ["tests.gcpauses"]

if TYPE_CHECKING:
    from tests.server.test_permissions_fixtures import PermWorld

# Brokers started from ServerSettings would all take the TLS port 8883 (several test runs
# share this machine): off unless a test asks for TLS on a port of its own (tests/tlsfix.py).
os.environ.setdefault("LOA_MQTT_TLS_PORT", "0")

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("LOA_TEST_DATABASE_URL") else [])
_mosquitto_available = has_mosquitto  # the old name (tests/security/test_broker_probe.py)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBroker]:
    """A real Mosquitto on a free port with server-generated security, for the whole run."""
    skip_without_mosquitto()
    b = TestBroker(port=free_port(), broker_dir=tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[TestBroker]:
    """A broker of the test's own, for tests that stop and restart it."""
    skip_without_mosquitto()
    b = TestBroker(port=free_port(), broker_dir=tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TestBroker]:
    """A broker of the test's own with a TLS device listener (private CA in tmp_path/pki)."""
    skip_without_mosquitto()
    files = ensure_private_pki(tmp_path / "pki", hosts=[HOST])
    tls = TlsListener(free_port(), HOST, files.certfile, files.keyfile)
    b = TestBroker(port=free_port(), broker_dir=tmp_path / "mosquitto", tls=tls)
    b.start()
    yield b
    b.stop()


@pytest.fixture(params=BACKENDS)
def perm_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PermWorld]:
    """Communes A and B with one user per role in A, on each database backend."""
    # Imported here: the server app is slow to import, and most packages never need it.
    from tests.server.test_permissions_fixtures import running_perm_world

    with running_perm_world(request.param, tmp_path) as world:
        yield world
