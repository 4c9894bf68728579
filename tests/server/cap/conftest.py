"""The CAP intake's world (tests/server/cap/world.py) on each database backend."""

from __future__ import annotations

import pytest

from loa_testkit.stack import Stack
from tests.server.cap.world import World, build_world


@pytest.fixture
def world(api: Stack) -> World:
    """Units, clusters and the two sources on a running server."""
    return build_world(api)
