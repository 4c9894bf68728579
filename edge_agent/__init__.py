"""The edge agent: the asyncio daemon that runs on each loudspeaker cluster's Raspberry Pi."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "loa"
UNKNOWN_VERSION = "0+unknown"


def agent_version() -> str:
    """The installed version of the loa distribution, or "0+unknown" when run from a checkout."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN_VERSION
