"""Moved to loa_testkit/brokerfix.py (bench/ uses it too); kept for importers not yet switched."""

from loa_testkit.brokerfix import (
    HOST,
    TestBroker,
)

__all__ = [
    "HOST",
    "TestBroker",
]
