"""Argument checks for do-it-now commands; a refusal becomes an Ack with ok=false."""

from __future__ import annotations

import json
from typing import Any

TEST_TONE_DEFAULT_S = 3.0
TEST_TONE_MAX_S = 30.0
RECENT_COMMANDS = 256  # ids remembered to drop QoS 1 redeliveries


class CommandRefused(Exception):
    """A command that cannot be carried out; the message goes back in the Ack detail."""


def volume_arg(args: dict[str, Any]) -> int:
    """args.volume as an integer percentage 0-100."""
    value = args.get("volume")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRefused("args.volume must be an integer from 0 to 100")
    if isinstance(value, float) and not value.is_integer():
        raise CommandRefused("args.volume must be a whole number from 0 to 100")
    if not 0 <= value <= 100:
        raise CommandRefused(f"args.volume {value} is outside 0-100")
    return int(value)


def tone_seconds_arg(args: dict[str, Any]) -> float:
    """args.seconds (default 3) between 0.1 and 30."""
    value = args.get("seconds", TEST_TONE_DEFAULT_S)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRefused("args.seconds must be a number of seconds")
    if not 0.1 <= value <= TEST_TONE_MAX_S:
        raise CommandRefused(f"args.seconds {value} is outside 0.1-{TEST_TONE_MAX_S:.0f}")
    return float(value)


def self_test_args(args: dict[str, Any]) -> tuple[int | None, bool]:
    """args.volume (0-100, None: the desired state's) and args.rebaseline (default false)."""
    unknown = sorted(str(k)[:40] for k in args if k not in ("volume", "rebaseline"))
    if unknown:
        raise CommandRefused(f"self_test takes only volume and rebaseline, not {unknown}")
    volume = volume_arg(args) if args.get("volume") is not None else None
    rebaseline = args.get("rebaseline", False)
    if not isinstance(rebaseline, bool):
        raise CommandRefused("args.rebaseline must be true or false")
    return volume, rebaseline


def refused_command_id(payload: bytes) -> str | None:
    """The id of a command payload decode() refused, if it has a usable one (to ack it)."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or "\x00" in value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: an Ack could not carry it
        return None
    return value
