"""The pytest side of the test stack: one skip rule for a missing Mosquitto.

What starts a broker, a server and agents lives in loa_testkit/stack.py (bench/ uses it too);
the fixtures that wrap it are in tests/conftest.py and tests/server/conftest.py.
"""

from __future__ import annotations

import pytest

from loa_testkit.brokerfix import MOSQUITTO_MISSING, has_mosquitto

requires_mosquitto = pytest.mark.skipif(not has_mosquitto(), reason=MOSQUITTO_MISSING)


def skip_without_mosquitto() -> None:
    """Skip the calling test or fixture when no Mosquitto is installed."""
    if not has_mosquitto():
        pytest.skip(MOSQUITTO_MISSING)
