"""Server fixtures: every database test runs on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loa_testkit.brokerfix import has_mosquitto
from loa_testkit.stack import Stack, database, server_stack
from tests.conftest import BACKENDS as BACKENDS  # test modules import it from here
from tests.stack import skip_without_mosquitto


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend."""
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A running server (with its own broker when mosquitto is installed), signed in as admin."""
    with server_stack(db_url, tmp_path / "data", with_broker=has_mosquitto()) as stack:
        yield stack


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Stack]:
    """A running server with its broker on SQLite, for MQTT round trips."""
    skip_without_mosquitto()
    with database("sqlite", tmp_path) as url, server_stack(url, tmp_path / "data") as stack:
        yield stack
