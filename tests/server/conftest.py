"""Server fixtures: every database test runs on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.stack import Stack, database, server_stack

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("LOA_TEST_DATABASE_URL") else [])


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend."""
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A running server (with its own broker when mosquitto is installed), signed in as admin."""
    has_broker = bool(shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin"))
    with server_stack(db_url, tmp_path / "data", with_broker=has_broker) as stack:
        yield stack


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Stack]:
    """A running server with its broker on SQLite, for MQTT round trips."""
    if not (shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")):
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    with database("sqlite", tmp_path) as url, server_stack(url, tmp_path / "data") as stack:
        yield stack
