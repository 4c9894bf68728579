"""Pydantic models for every JSON message of protocol v1, in one versioned envelope."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from protocol.topics import SPECS, TopicKind
from schedules import ScheduleDocument

PROTOCOL_VERSION = 1

# Ranges: what the server's database stores (versions and ids are 32-bit INTEGER columns,
# sequence numbers BIGINT), finite floats only (JSON columns and PostgreSQL refuse NaN and
# Infinity), Unix times from 1970 to 2100 (year 9999 and negative times are refused).
MAX_VERSION = 2**31 - 1
MAX_ID = 2**31 - 1
MAX_SEQ = 2**63 - 1
MAX_CHUNK = 2**32 - 1  # a chunk index is 4 bytes on the wire
UNIX_MAX = 4_102_444_800.0  # 2100-01-01T00:00:00Z


def _no_nul(text: str) -> str:
    if "\x00" in text:  # PostgreSQL text columns refuse NUL
        raise ValueError("must not contain NUL characters")
    return text


NoNul = AfterValidator(_no_nul)
ShortStr = Annotated[str, Field(max_length=200), NoNul]
WireId = Annotated[str, Field(min_length=1, max_length=64), NoNul]
Percent = Annotated[float, Field(ge=0, le=100)]
Version = Annotated[int, Field(ge=0, le=MAX_VERSION)]
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]
Count = Annotated[int, Field(ge=0, le=MAX_SEQ)]
UnixTime = Annotated[float, Field(ge=0, le=UNIX_MAX)]
Millis = Annotated[float, Field(ge=-1e10, le=1e10)]


class ProtocolError(ValueError):
    """A payload that is not a valid protocol v1 message; the text says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # short, stable, usable as a metrics label


class Message(BaseModel):
    """Envelope fields every message carries."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    v: Literal[1] = 1
    ts: UnixTime = Field(default_factory=time.time, description="sender's clock, unix seconds")


class Birth(Message):
    """Published retained on the status topic right after every connect."""

    type: Literal["birth"] = "birth"
    conn_id: WireId
    agent_version: ShortStr
    firmware_profile: ShortStr
    boot_time: UnixTime
    state_version: Version | None = None
    schedule_version: Version | None = None


class Offline(Message):
    """The broker's will (or a clean shutdown): the device is gone."""

    type: Literal["offline"] = "offline"
    conn_id: WireId
    reason: Literal["will", "shutdown"] = "will"


# "mains": mains present; "battery": mains lost, running on the DC backup; "battery_low":
# on battery and the monitor says it is nearly empty.
PowerState = Literal["mains", "battery", "battery_low"]


class Telemetry(Message):
    """Periodic health sample."""

    type: Literal["telemetry"] = "telemetry"
    uptime_s: Annotated[float, Field(ge=0, le=1e10)]
    load_1m: Annotated[float, Field(ge=0, le=1e6)]
    mem_used_pct: Percent
    disk_free_mb: Annotated[float, Field(ge=0, le=1e12)]
    disk_used_pct: Percent
    cpu_temp_c: Annotated[float, Field(ge=-60, le=150)] | None = None
    signal_dbm: Annotated[float, Field(ge=-150, le=0)] | None = None
    signal_source: Literal["wifi", "modem", "wired"] | None = None
    agent_version: ShortStr
    firmware_profile: ShortStr
    state_version: Version | None = None
    schedule_version: Version | None = None
    # Incoming messages the agent refused since it started (logged on the device).
    rejected_messages: Count | None = None
    # The clock-offset estimate (edge_agent.clocksync): server clock minus device wall clock,
    # and the estimate's error bound; null before the first answer.
    clock_offset_ms: Annotated[float, Field(ge=-1e10, le=1e10)] | None = None
    clock_error_ms: Annotated[float, Field(ge=0, le=1e7)] | None = None
    # Round trips of the recent clock probes (the device's link to the server through the
    # broker): median, 95th percentile and longest (a stall, e.g. a 4G hand-over), ms; the
    # server sizes live playout delays from them.
    link_rtt_ms: Annotated[float, Field(ge=0, le=1e6)] | None = None
    link_rtt_p95_ms: Annotated[float, Field(ge=0, le=1e6)] | None = None
    link_rtt_max_ms: Annotated[float, Field(ge=0, le=1e6)] | None = None
    # Broker certificates the device refused since it started (a man in the middle, a
    # wrong CA or host name), and the last one in words; null when none.
    tls_refusals: Count | None = None
    tls_refused: ShortStr | None = None
    # Power inputs of the profile (issue 17): null when the profile names none.
    power: PowerState | None = None
    # The volume cap the agent applies while on battery (profile power.battery_volume_max).
    battery_volume_cap: Annotated[int, Field(ge=0, le=100)] | None = None


class DesiredState(Message):
    """What the server wants a device to be: retained, versioned, never applied backwards."""

    type: Literal["state"] = "state"
    version: Annotated[int, Field(ge=1, le=MAX_VERSION)]
    volume: Annotated[int, Field(ge=0, le=100)]
    muted: bool = False
    telemetry_interval_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # The zones whose clip and live topics the device must subscribe to.
    zone_ids: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(max_length=256)] = (
        Field(default_factory=list)
    )
    # The commune's daily acoustic self-test (issue 17): local time "HH:MM" (Asia/Ho_Chi_Minh)
    # and the volume it plays at; null: no scheduled test. Never inside a programme or a
    # live session, never 22:00-05:00 (the agent moves it on; see edge_agent/selftest.py).
    selftest_daily_at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] | None = (
        None
    )
    selftest_volume: Annotated[int, Field(ge=0, le=100)] = 30


CommandName = Literal["test_tone", "set_volume", "restart_agent", "resync", "self_test"]


class Command(Message):
    """A do-it-now order: has an id to acknowledge and an expiry after which it is ignored."""

    type: Literal["command"] = "command"
    id: WireId
    name: CommandName
    args: dict[str, Any] = Field(default_factory=dict)
    expires_at: UnixTime

    def expired(self, now: float) -> bool:
        """True when the command must no longer be carried out."""
        return now >= self.expires_at


LivePriority = Literal["normal", "priority", "emergency"]


class LiveJoin(Message):
    """Start playing a live session: subscribe to `topic` and play its frames in sync."""

    type: Literal["live_join"] = "live_join"
    id: WireId
    session_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    topic: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    codec: Literal["opus"] = "opus"
    sample_rate: Literal[48000] = 48000
    # 40 ms frames halve the messages every device reads and decodes (CPU on a Pi); 20 ms
    # is what agents before 40 ms frames accept.
    frame_ms: Literal[20, 40] = 20
    # Heard at capture time + playout_delay_ms on every device alike.
    playout_delay_ms: Annotated[int, Field(ge=50, le=10_000)] = 500
    priority: LivePriority = "normal"
    volume: Annotated[int, Field(ge=0, le=100)] | None = None
    expires_at: UnixTime

    def expired(self, now: float) -> bool:
        """True when the join must no longer be carried out."""
        return now >= self.expires_at


class LiveLeave(Message):
    """Stop playing a live session (it ended, or the device left the targeted zones)."""

    type: Literal["live_leave"] = "live_leave"
    id: WireId
    session_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    reason: Annotated[str, Field(max_length=300), NoNul] = ""
    expires_at: UnixTime

    def expired(self, now: float) -> bool:
        """True when the leave is stale (the receiver also ends sessions that go silent)."""
        return now >= self.expires_at


class Ack(Message):
    """A device's answer to one command."""

    type: Literal["ack"] = "ack"
    id: WireId
    ok: bool
    detail: Annotated[str, Field(max_length=500), NoNul] = ""


class ScheduleMessage(Message):
    """The compiled schedule a device must hold (retained; never applied backwards)."""

    type: Literal["schedule"] = "schedule"
    document: ScheduleDocument

    @field_validator("document")
    @classmethod
    def _version_in_range(cls, document: ScheduleDocument) -> ScheduleDocument:
        if document.version > MAX_VERSION:
            raise ValueError(f"version must be at most {MAX_VERSION}")
        return document


Outcome = Literal["played", "preempted", "failed", "missed"]


class PlayEvent(BaseModel):
    """Proof of play for one scheduled item (times are server-clock Unix seconds)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    seq: Seq
    # "live": a live session heard by the device; item_id is "live:<session id>".
    kind: Literal["play", "live"] = "play"
    item_id: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    programme_id: Count | None = None
    priority: Literal["normal", "priority", "emergency"] = "normal"
    planned_start: UnixTime
    actual_start: UnixTime | None = None
    ended_at: UnixTime | None = None
    outcome: Outcome
    reason: Annotated[str, Field(max_length=300), NoNul] = ""
    clock_offset_ms: Millis | None = None
    clock_error_ms: Annotated[float, Field(ge=0, le=1e10)] | None = None
    # Live proof (kind "live" only): planned_start = joined at, actual_start = first frame
    # heard, ended_at = left at; the counts are also summarised in `reason`.
    session_id: Annotated[str, Field(max_length=40), NoNul] | None = None
    frames_played: Count | None = None
    frames_concealed: Count | None = None
    frames_late: Count | None = None
    frames_dropped: Count | None = None
    # Set when an agent restart cut the item and it picked up again in step: the item
    # position (s) it resumed at; what played before the cut is from actual_start on.
    resumed_at_s: Annotated[float, Field(ge=0, le=1e7)] | None = None
    # Relay items (schedules.RelayPart): seconds of the relayed stretches heard as relayed
    # frames, as the fallback clip, and as silence (no frames yet, or nothing to play); mode
    # sums them up: "relayed" or "fallback" when only one was heard, else "mixed".
    relay_mode: Literal["relayed", "fallback", "mixed"] | None = None
    relayed_s: Annotated[float, Field(ge=0, le=1e7)] | None = None
    fallback_s: Annotated[float, Field(ge=0, le=1e7)] | None = None
    silent_s: Annotated[float, Field(ge=0, le=1e7)] | None = None


SELFTEST_BANDS = ("125", "250", "500", "1000", "2000", "4000", "8000")
Db = Annotated[float, Field(ge=-300, le=300)]


class SelfTestFigures(BaseModel):
    """One acoustic self-test's numbers (audio.selftest.Figures.to_dict on the wire)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    level_db: Db
    bands_db: dict[str, Db]
    noise_floor_dbfs: Db
    distortion_pct: Annotated[float, Field(ge=0, le=1e6)]
    snr_db: Db
    latency_ms: Annotated[float, Field(ge=-1e4, le=1e4)]

    @field_validator("bands_db")
    @classmethod
    def _seven_bands(cls, value: dict[str, float]) -> dict[str, float]:
        if set(value) != set(SELFTEST_BANDS):
            raise ValueError(f"bands_db must map exactly {', '.join(SELFTEST_BANDS)} to dB")
        return value


DeviceEventKind = Literal["selftest", "silence", "power"]
SELFTEST_CODES = (
    "ok",
    "level_low",
    "silent",
    "high_loss",
    "distorted",
    "noisy",
    "no_signal_input",
    "baseline",
    "no_capture",  # the profile names no microphone
    "interrupted",  # an emergency took the horns; retried later
    "busy",  # a programme or live session was on: not run
    "failed",  # the capture or analysis failed; detail says how
)
SILENCE_CODES = ("output_silent", "horns_silent")
DEVICE_EVENT_CODES: dict[str, tuple[str, ...]] = {
    "selftest": SELFTEST_CODES,
    "silence": SILENCE_CODES,
    "power": ("mains", "battery", "battery_low"),
}


class DeviceEvent(BaseModel):
    """Something a device found out about itself (not a play); sent through the outbox."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    seq: Seq
    kind: DeviceEventKind
    at: UnixTime  # server-clock Unix seconds when it happened (the test ended, power changed)
    code: Annotated[str, Field(min_length=1, max_length=40)]  # one of DEVICE_EVENT_CODES[kind]
    detail: Annotated[str, Field(max_length=500), NoNul] = ""  # for people, in Vietnamese
    # selftest: the console command that asked for it (null: the daily schedule), its figures
    # (null when nothing was measured), the level against the baseline, and whether this run
    # became the baseline (the first run, or one asked for with args.rebaseline).
    command_id: WireId | None = None
    figures: SelfTestFigures | None = None
    level_vs_baseline_db: Db | None = None
    baseline: bool = False
    reasons: Annotated[list[Annotated[str, Field(max_length=300), NoNul]], Field(max_length=10)] = (
        Field(default_factory=list)
    )
    # silence: the item (or "live:<session>") that was silent, and for how long (s).
    item_id: Annotated[str, Field(min_length=1, max_length=200), NoNul] | None = None
    silent_s: Annotated[float, Field(ge=0, le=1e7)] | None = None

    @field_validator("code")
    @classmethod
    def _known_code(cls, value: str, info: Any) -> str:
        kind = info.data.get("kind")
        if kind is not None and value not in DEVICE_EVENT_CODES[kind]:
            raise ValueError(f"unknown {kind} code {value!r}")
        return value


def _event_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "device" if kind in DEVICE_EVENT_CODES else "play"


# A play's proof or a device event, told apart by `kind` (a play's may be left out).
Event = Annotated[
    Annotated[PlayEvent, Tag("play")] | Annotated[DeviceEvent, Tag("device")],
    Discriminator(_event_tag),
]
EVENT_ADAPTER: TypeAdapter[PlayEvent | DeviceEvent] = TypeAdapter(Event)


class EventBatch(Message):
    """Events from a device's outbox, oldest first."""

    type: Literal["events"] = "events"
    events: Annotated[list[Event], Field(min_length=1, max_length=200)]


class EventAck(Message):
    """The server stored these sequence numbers; the device may drop them from its outbox."""

    type: Literal["evack"] = "evack"
    seqs: Annotated[list[Seq], Field(max_length=1000)]


class ClipRequest(Message):
    """A device asks for a clip's chunks: all of them, or exactly the missing ones."""

    type: Literal["clipreq"] = "clipreq"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    chunks: (
        Annotated[list[Annotated[int, Field(ge=0, le=MAX_CHUNK)]], Field(max_length=4096)] | None
    ) = None


class TimeRequest(Message):
    """NTP-style clock probe: t0 is the device's send time."""

    type: Literal["time_req"] = "time_req"
    id: WireId
    t0: UnixTime


class TimeResponse(Message):
    """Answer to a probe: t1 server receive, t2 server send (server clock)."""

    type: Literal["time_resp"] = "time_resp"
    id: WireId
    t0: UnixTime
    t1: UnixTime
    t2: UnixTime


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
    except (ValueError, RecursionError) as exc:
        # ValueError: bad UTF-8 or JSON, or an integer of more than 4300 digits;
        # RecursionError: arrays or objects nested thousands deep.
        raise ProtocolError("not_json", str(exc)[:200] or type(exc).__name__) from None
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


def salvage_events(payload: bytes) -> tuple[list[PlayEvent | DeviceEvent], list[int]]:
    """Of an events payload decode() refused: its valid events, and the seqs of the others.

    A device resends what is not acknowledged: acknowledging the seq of an event no server can
    store keeps one bad event from blocking the device's outbox for ever.
    """
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return [], []
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or len(events) > 200:
        return [], []
    good: list[PlayEvent | DeviceEvent] = []
    refused: list[int] = []
    for raw in events:
        try:
            good.append(EVENT_ADAPTER.validate_python(raw))
        except ValidationError:
            seq = raw.get("seq") if isinstance(raw, dict) else None
            if type(seq) is int and 1 <= seq <= MAX_SEQ:
                refused.append(seq)
    return good, refused
