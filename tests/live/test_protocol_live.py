"""Live additions to the wire contract: the binary frame, topics, join/leave, live proof."""

from __future__ import annotations

import json

import pytest

from protocol import (
    Command,
    EventBatch,
    LiveJoin,
    LiveLeave,
    ProtocolError,
    TopicError,
    TopicKind,
    decode,
    encode,
    live_topic,
    parse_live_topic,
)
from protocol.liveframe import (
    HEADER_SIZE,
    HEADER_SIZE_V2,
    MAX_PAYLOAD,
    FrameError,
    LiveFrame,
    decode_frame,
    encode_frame,
)


def test_frame_round_trip_and_layout() -> None:
    frame = LiveFrame(seq=7, capture_us=1_763_772_000_123_456, payload=b"\xfc\x01", last=True)
    data = encode_frame(frame)
    assert data[:4] == b"LOAL" and data[4] == 1 and data[5] == 1 and data[6] == 1
    assert data[8:12] == (7).to_bytes(4, "big")
    assert data[12:20] == (1_763_772_000_123_456).to_bytes(8, "big")
    assert len(data) == HEADER_SIZE + 2 == 22
    assert decode_frame(data) == frame
    assert decode_frame(data).capture_time == pytest.approx(1_763_772_000.123456)


def test_a_format_2_frame_carries_its_send_time() -> None:
    frame = LiveFrame(seq=8, capture_us=1_000_000, payload=b"\xfc", sent_us=1_045_123)
    data = encode_frame(frame)
    assert data[4] == 2 and len(data) == HEADER_SIZE_V2 + 1 == 29
    assert data[20:28] == (1_045_123).to_bytes(8, "big") and data[28:] == b"\xfc"
    back = decode_frame(data)
    assert back == frame and back.sent_time == pytest.approx(1.045123)
    assert decode_frame(encode_frame(LiveFrame(seq=8, capture_us=1, payload=b""))).sent_time is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"LOAL", "shorter"),
        (b"XXXX" + bytes(16), "bad magic"),
        (b"LOAL\x03\x01" + bytes(14), "format 3"),
        (b"LOAL\x02\x01" + bytes(14), "shorter than a format 2"),
        (b"LOAL\x02\x01" + bytes(22 + MAX_PAYLOAD + 1), "longer"),
        (b"LOAL\x01\x09" + bytes(14), "unknown codec 9"),
        (b"LOAL\x01\x01" + bytes(14 + MAX_PAYLOAD + 1), "longer"),
    ],
)
def test_bad_frames_are_refused_with_a_reason(data: bytes, words: str) -> None:
    with pytest.raises(FrameError, match=words):
        decode_frame(data)


def test_frame_fields_out_of_range() -> None:
    with pytest.raises(FrameError, match="32 bits"):
        encode_frame(LiveFrame(seq=2**32, capture_us=0, payload=b""))
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame(LiveFrame(seq=0, capture_us=0, payload=bytes(MAX_PAYLOAD + 1)))


def test_live_topics() -> None:
    assert live_topic(12, "ab12") == "loa/v1/zone/12/live/ab12"
    assert parse_live_topic("loa/v1/zone/12/live/ab12") == (12, "ab12")
    for bad in ("loa/v1/zone/x/live/ab", "loa/v1/zone/1/clip/ab", "loa/v1/zone/1/live/A+"):
        with pytest.raises(TopicError):
            parse_live_topic(bad)
    with pytest.raises(TopicError):
        live_topic(1, "#")


def test_command_topic_carries_commands_joins_and_leaves() -> None:
    join = LiveJoin(
        id="j1", session_id="s1", topic=live_topic(3, "s1"), priority="emergency",
        playout_delay_ms=500, volume=None, expires_at=2e9,
    )  # fmt: skip
    assert decode(TopicKind.COMMAND, encode(join)) == join
    leave = LiveLeave(id="l1", session_id="s1", reason="ended", expires_at=2e9)
    assert decode(TopicKind.COMMAND, encode(leave)) == leave
    # A command from before live audio (no "type") still decodes as a command.
    old = json.dumps({"v": 1, "id": "c", "name": "resync", "expires_at": 2e9}).encode()
    assert isinstance(decode(TopicKind.COMMAND, old), Command)
    with pytest.raises(ProtocolError, match="playout_delay_ms"):
        bad = {**json.loads(encode(join)), "playout_delay_ms": 0}
        decode(TopicKind.COMMAND, json.dumps(bad).encode())
    with pytest.raises(ProtocolError, match="invalid"):
        decode(TopicKind.COMMAND, json.dumps({"v": 1, "type": "live_dance"}).encode())


def test_live_proof_is_a_play_event() -> None:
    event = {
        "seq": 4, "kind": "live", "item_id": "live:s1", "priority": "emergency",
        "planned_start": 1.0, "actual_start": 1.5, "ended_at": 9.0, "outcome": "preempted",
        "reason": "superseded; frames played 10", "session_id": "s1", "frames_played": 10,
        "frames_concealed": 1, "frames_late": 0, "frames_dropped": 0,
    }  # fmt: skip
    batch = decode(
        TopicKind.EVENTS, json.dumps({"v": 1, "type": "events", "events": [event]}).encode()
    )
    assert isinstance(batch, EventBatch) and batch.events[0].kind == "live"
    assert batch.events[0].frames_played == 10
