"""MQTT topic names, their QoS/retain rules and who publishes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "loa/v1"
SERVER_USERNAME = "loa-server"

# Device ids are MQTT usernames and topic segments: no wildcards, no slashes, and
# never the reserved "loa-" prefix, which belongs to server accounts.
DEVICE_ID_RE = re.compile(r"^(?!loa-)[a-z0-9][a-z0-9-]{2,62}$")
ZONE_ID_RE = re.compile(r"^[0-9]{1,12}$")


class Direction(StrEnum):
    """Who publishes on a topic."""

    UP = "up"  # device -> server
    DOWN = "down"  # server -> device


class TopicKind(StrEnum):
    """Every per-device topic of protocol v1 (the segment after loa/v1/dev/<id>/)."""

    STATUS = "status"
    TELEMETRY = "telemetry"
    ACK = "ack"
    EVENTS = "events"
    CLIP_REQUEST = "clipreq"
    TIME_REQUEST = "time"
    STATE = "state"
    COMMAND = "cmd"
    SCHEDULE = "schedule"
    EVENTS_ACK = "evack"
    CLIP = "clip"
    TIME_RESPONSE = "timeresp"


@dataclass(frozen=True)
class TopicSpec:
    """Delivery rules for one topic kind."""

    kind: TopicKind
    direction: Direction
    qos: int
    retain: bool
    max_payload: int


SPECS: dict[TopicKind, TopicSpec] = {
    s.kind: s
    for s in (
        # Birth (online) and will (offline) share one retained topic, so the last
        # word on a device's presence is always what a new subscriber reads first.
        TopicSpec(TopicKind.STATUS, Direction.UP, qos=1, retain=True, max_payload=4096),
        TopicSpec(TopicKind.TELEMETRY, Direction.UP, qos=0, retain=False, max_payload=8192),
        TopicSpec(TopicKind.ACK, Direction.UP, qos=1, retain=False, max_payload=4096),
        # Proof of play and alarms, each with a per-device sequence number from an outbox.
        TopicSpec(TopicKind.EVENTS, Direction.UP, qos=1, retain=False, max_payload=65536),
        TopicSpec(TopicKind.CLIP_REQUEST, Direction.UP, qos=1, retain=False, max_payload=16384),
        # Clock exchange: QoS 0, a lost sample is simply not used.
        TopicSpec(TopicKind.TIME_REQUEST, Direction.UP, qos=0, retain=False, max_payload=1024),
        # Desired state: retained, versioned; a reconnecting device reads the latest.
        TopicSpec(TopicKind.STATE, Direction.DOWN, qos=1, retain=True, max_payload=16384),
        # Commands only make sense now: never retained, they carry an expiry instead.
        TopicSpec(TopicKind.COMMAND, Direction.DOWN, qos=1, retain=False, max_payload=4096),
        # The compiled schedule is desired state too: retained, versioned.
        TopicSpec(TopicKind.SCHEDULE, Direction.DOWN, qos=1, retain=True, max_payload=1_048_576),
        TopicSpec(TopicKind.EVENTS_ACK, Direction.DOWN, qos=1, retain=False, max_payload=16384),
        # Binary clip chunks re-sent to one device that asked for them (see clipchunk.py).
        TopicSpec(TopicKind.CLIP, Direction.DOWN, qos=1, retain=False, max_payload=70_000),
        TopicSpec(TopicKind.TIME_RESPONSE, Direction.DOWN, qos=0, retain=False, max_payload=1024),
    )
}


class TopicError(ValueError):
    """A topic that is not part of protocol v1."""


def check_device_id(device_id: str) -> str:
    """Return device_id if it is a valid wire identifier, else raise TopicError."""
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise TopicError(
            f"invalid device id {device_id!r}: use 3-63 lowercase letters, digits or '-', "
            "starting with a letter or digit, not starting with 'loa-'"
        )
    return device_id


def device_topic(device_id: str, kind: TopicKind) -> str:
    """Build loa/v1/dev/<device_id>/<kind>."""
    return f"{PREFIX}/dev/{check_device_id(device_id)}/{kind.value}"


def device_filter(kind: TopicKind) -> str:
    """Subscription filter for one kind across all devices (the server's view)."""
    return f"{PREFIX}/dev/+/{kind.value}"


def parse_device_topic(topic: str) -> tuple[str, TopicKind]:
    """Split a per-device topic into (device_id, kind), or raise TopicError."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[2] != "dev":
        raise TopicError(f"not a loa/v1 device topic: {topic[:200]!r}")
    try:
        kind = TopicKind(parts[4])
    except ValueError:
        raise TopicError(f"unknown topic kind {parts[4][:50]!r}") from None
    return check_device_id(parts[3]), kind


ZONE_CLIP_QOS = 1


def zone_clip_topic(zone_id: int, sha256: str) -> str:
    """Where a clip's chunks are published once for every device of a zone."""
    return f"{PREFIX}/zone/{int(zone_id)}/clip/{sha256}"


def zone_clip_filter(zone_id: int) -> str:
    """A device's subscription to the clips of one of its zones."""
    return f"{PREFIX}/zone/{int(zone_id)}/clip/+"


def parse_zone_clip_topic(topic: str) -> tuple[int, str]:
    """Split loa/v1/zone/<zone>/clip/<sha256> into (zone_id, sha256), or raise TopicError."""
    parts = topic.split("/")
    if (
        len(parts) != 6
        or f"{parts[0]}/{parts[1]}" != PREFIX
        or parts[2] != "zone"
        or parts[4] != "clip"
        or not ZONE_ID_RE.fullmatch(parts[3])
        or not re.fullmatch(r"[0-9a-f]{64}", parts[5])
    ):
        raise TopicError(f"not a zone clip topic: {topic[:200]!r}")
    return int(parts[3]), parts[5]


def zone_filter(zone_id: int) -> str:
    """Everything published to a zone's devices (clips, live audio) lives below this."""
    return f"{PREFIX}/zone/{zone_id}/#"


# -- live audio -----------------------------------------------------------------------------

# Session ids are topic segments: short, lowercase, no wildcards.
LIVE_SESSION_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
LIVE_QOS = 0  # a late frame is useless: never re-sent, concealed by the receiver instead
LIVE_MAX_PAYLOAD = 4028  # protocol.liveframe.MAX_FRAME_BYTES


def check_live_session_id(session_id: str) -> str:
    """Return session_id if it is a valid topic segment, else raise TopicError."""
    if not LIVE_SESSION_ID_RE.fullmatch(session_id):
        raise TopicError(
            f"invalid live session id {session_id[:60]!r}: use 1-40 lowercase letters, "
            "digits or '-', starting with a letter or digit"
        )
    return session_id


def live_topic(zone_id: int, session_id: str) -> str:
    """Where a live session's frames are published for the devices of one zone."""
    return f"{PREFIX}/zone/{int(zone_id)}/live/{check_live_session_id(session_id)}"


def parse_live_topic(topic: str) -> tuple[int, str]:
    """Split loa/v1/zone/<zone>/live/<session> into (zone_id, session_id), or raise TopicError."""
    parts = topic.split("/")
    if (
        len(parts) != 6
        or f"{parts[0]}/{parts[1]}" != PREFIX
        or parts[2] != "zone"
        or parts[4] != "live"
        or not ZONE_ID_RE.fullmatch(parts[3])
        or not LIVE_SESSION_ID_RE.fullmatch(parts[5])
    ):
        raise TopicError(f"not a live topic: {topic[:200]!r}")
    return int(parts[3]), parts[5]
