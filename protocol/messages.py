"""Pydantic models for every JSON message of protocol v1, in one versioned envelope."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from protocol.topics import SPECS, TopicKind
from schedules import ScheduleDocument

PROTOCOL_VERSION = 1

ShortStr = Annotated[str, Field(max_length=200)]
Percent = Annotated[float, Field(ge=0, le=100)]


class ProtocolError(ValueError):
    """A payload that is not a valid protocol v1 message; the text says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # short, stable, usable as a metrics label


class Message(BaseModel):
    """Envelope fields every message carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1
    ts: float = Field(default_factory=time.time, description="sender's clock, unix seconds")


class Birth(Message):
    """Published retained on the status topic right after every connect."""

    type: Literal["birth"] = "birth"
    conn_id: Annotated[str, Field(min_length=1, max_length=64)]
    agent_version: ShortStr
    firmware_profile: ShortStr
    boot_time: float
    state_version: int | None = None
    schedule_version: int | None = None


class Offline(Message):
    """The broker's will (or a clean shutdown): the device is gone."""

    type: Literal["offline"] = "offline"
    conn_id: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Literal["will", "shutdown"] = "will"


class Telemetry(Message):
    """Periodic health sample."""

    type: Literal["telemetry"] = "telemetry"
    uptime_s: Annotated[float, Field(ge=0)]
    load_1m: Annotated[float, Field(ge=0)]
    mem_used_pct: Percent
    disk_free_mb: Annotated[float, Field(ge=0)]
    disk_used_pct: Percent
    cpu_temp_c: Annotated[float, Field(ge=-60, le=150)] | None = None
    signal_dbm: Annotated[float, Field(ge=-150, le=0)] | None = None
    signal_source: Literal["wifi", "modem", "wired"] | None = None
    agent_version: ShortStr
    firmware_profile: ShortStr
    state_version: int | None = None
    schedule_version: int | None = None
    # The clock-offset estimate (edge_agent.clocksync): server clock minus device wall clock,
    # and the estimate's error bound; null before the first answer.
    clock_offset_ms: Annotated[float, Field(ge=-1e10, le=1e10)] | None = None
    clock_error_ms: Annotated[float, Field(ge=0, le=1e7)] | None = None


class DesiredState(Message):
    """What the server wants a device to be: retained, versioned, never applied backwards."""

    type: Literal["state"] = "state"
    version: Annotated[int, Field(ge=1)]
    volume: Annotated[int, Field(ge=0, le=100)]
    muted: bool = False
    telemetry_interval_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # The zones whose clip and live topics the device must subscribe to.
    zone_ids: Annotated[list[Annotated[int, Field(ge=1)]], Field(max_length=256)] = Field(
        default_factory=list
    )


CommandName = Literal["test_tone", "set_volume", "restart_agent", "resync"]


class Command(Message):
    """A do-it-now order: has an id to acknowledge and an expiry after which it is ignored."""

    type: Literal["command"] = "command"
    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: CommandName
    args: dict[str, Any] = Field(default_factory=dict)
    expires_at: float

    def expired(self, now: float) -> bool:
        """True when the command must no longer be carried out."""
        return now >= self.expires_at


LivePriority = Literal["normal", "priority", "emergency"]


class LiveJoin(Message):
    """Start playing a live session: subscribe to `topic` and play its frames in sync."""

    type: Literal["live_join"] = "live_join"
    id: Annotated[str, Field(min_length=1, max_length=64)]
    session_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    topic: Annotated[str, Field(min_length=1, max_length=200)]
    codec: Literal["opus"] = "opus"
    sample_rate: Literal[48000] = 48000
    frame_ms: Literal[20] = 20
    # Heard at capture time + playout_delay_ms on every device alike.
    playout_delay_ms: Annotated[int, Field(ge=50, le=10_000)] = 500
    priority: LivePriority = "normal"
    volume: Annotated[int, Field(ge=0, le=100)] | None = None
    expires_at: float

    def expired(self, now: float) -> bool:
        """True when the join must no longer be carried out."""
        return now >= self.expires_at


class LiveLeave(Message):
    """Stop playing a live session (it ended, or the device left the targeted zones)."""

    type: Literal["live_leave"] = "live_leave"
    id: Annotated[str, Field(min_length=1, max_length=64)]
    session_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    reason: Annotated[str, Field(max_length=300)] = ""
    expires_at: float

    def expired(self, now: float) -> bool:
        """True when the leave is stale (the receiver also ends sessions that go silent)."""
        return now >= self.expires_at


class Ack(Message):
    """A device's answer to one command."""

    type: Literal["ack"] = "ack"
    id: Annotated[str, Field(min_length=1, max_length=64)]
    ok: bool
    detail: Annotated[str, Field(max_length=500)] = ""


class ScheduleMessage(Message):
    """The compiled schedule a device must hold (retained; never applied backwards)."""

    type: Literal["schedule"] = "schedule"
    document: ScheduleDocument


Outcome = Literal["played", "preempted", "failed", "missed"]


class PlayEvent(BaseModel):
    """Proof of play for one scheduled item (times are server-clock Unix seconds)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    seq: Annotated[int, Field(ge=1)]
    # "live": a live session heard by the device; item_id is "live:<session id>".
    kind: Literal["play", "live"] = "play"
    item_id: Annotated[str, Field(min_length=1, max_length=200)]
    programme_id: int | None = None
    priority: Literal["normal", "priority", "emergency"] = "normal"
    planned_start: float
    actual_start: float | None = None
    ended_at: float | None = None
    outcome: Outcome
    reason: Annotated[str, Field(max_length=300)] = ""
    clock_offset_ms: float | None = None
    clock_error_ms: float | None = None
    # Live proof (kind "live" only): planned_start = joined at, actual_start = first frame
    # heard, ended_at = left at; the counts are also summarised in `reason`.
    session_id: Annotated[str, Field(max_length=40)] | None = None
    frames_played: Annotated[int, Field(ge=0)] | None = None
    frames_concealed: Annotated[int, Field(ge=0)] | None = None
    frames_late: Annotated[int, Field(ge=0)] | None = None
    frames_dropped: Annotated[int, Field(ge=0)] | None = None


class EventBatch(Message):
    """Events from a device's outbox, oldest first."""

    type: Literal["events"] = "events"
    events: Annotated[list[PlayEvent], Field(min_length=1, max_length=200)]


class EventAck(Message):
    """The server stored these sequence numbers; the device may drop them from its outbox."""

    type: Literal["evack"] = "evack"
    seqs: Annotated[list[int], Field(max_length=1000)]


class ClipRequest(Message):
    """A device asks for a clip's chunks: all of them, or exactly the missing ones."""

    type: Literal["clipreq"] = "clipreq"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    chunks: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=4096)] | None = None


class TimeRequest(Message):
    """NTP-style clock probe: t0 is the device's send time."""

    type: Literal["time_req"] = "time_req"
    id: Annotated[str, Field(min_length=1, max_length=64)]
    t0: float


class TimeResponse(Message):
    """Answer to a probe: t1 server receive, t2 server send (server clock)."""

    type: Literal["time_resp"] = "time_resp"
    id: Annotated[str, Field(min_length=1, max_length=64)]
    t0: float
    t1: float
    t2: float


StatusMessage = Annotated[Birth | Offline, Field(discriminator="type")]
CommandMessage = Annotated[Command | LiveJoin | LiveLeave, Field(discriminator="type")]

# Which message types may appear on which topic kind.
_ADAPTERS: dict[TopicKind, TypeAdapter[Any]] = {
    TopicKind.STATUS: TypeAdapter(StatusMessage),
    TopicKind.TELEMETRY: TypeAdapter(Telemetry),
    TopicKind.ACK: TypeAdapter(Ack),
    TopicKind.STATE: TypeAdapter(DesiredState),
    TopicKind.COMMAND: TypeAdapter(CommandMessage),
    TopicKind.SCHEDULE: TypeAdapter(ScheduleMessage),
    TopicKind.EVENTS: TypeAdapter(EventBatch),
    TopicKind.EVENTS_ACK: TypeAdapter(EventAck),
    TopicKind.CLIP_REQUEST: TypeAdapter(ClipRequest),
    TopicKind.TIME_REQUEST: TypeAdapter(TimeRequest),
    TopicKind.TIME_RESPONSE: TypeAdapter(TimeResponse),
}
# Topics whose payload is binary, not JSON (decode with protocol.clipchunk).
BINARY_KINDS = frozenset({TopicKind.CLIP})


def encode(message: Message) -> bytes:
    """Serialise a message to its wire form (compact UTF-8 JSON)."""
    return message.model_dump_json().encode()


def decode(kind: TopicKind, payload: bytes) -> Any:
    """Parse a payload read on a topic of `kind`, or raise ProtocolError saying why."""
    if kind in BINARY_KINDS:
        raise ProtocolError("binary_topic", f"{kind} carries binary chunks, not JSON")
    limit = SPECS[kind].max_payload
    if len(payload) > limit:
        raise ProtocolError("oversized", f"{len(payload)} bytes > {limit} allowed on {kind}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("not_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise ProtocolError("not_object", f"got {type(data).__name__}")
    if data.get("v") != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"v={str(data.get('v'))[:20]!r}")
    if kind is TopicKind.COMMAND and "type" not in data:
        # Senders from before live audio omitted the type: it was always a command.
        data["type"] = "command"
    try:
        return _ADAPTERS[kind].validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        if kind is TopicKind.COMMAND and loc:
            loc = loc[1:]  # drop the union's branch tag ("command", "live_join"...)
        where = ".".join(str(p) for p in loc) or "message"
        raise ProtocolError("invalid", f"{where}: {first['msg']}") from None
