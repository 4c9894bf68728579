"""Protocol ranges: every number fits what the server stores, floats are finite, times sane."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol import Birth, EventBatch, PlayEvent, ProtocolError, TopicKind, decode, encode
from protocol.messages import MAX_SEQ, MAX_VERSION, UNIX_MAX, salvage_events

BIRTH = {"v": 1, "type": "birth", "conn_id": "c1", "agent_version": "0.1.0",
         "firmware_profile": "sim", "boot_time": 1763771990.0}  # fmt: skip
TELEMETRY = {"v": 1, "type": "telemetry", "uptime_s": 12, "load_1m": 0.3, "mem_used_pct": 40,
             "disk_free_mb": 900, "disk_used_pct": 10, "agent_version": "t",
             "firmware_profile": "sim"}  # fmt: skip
COMMAND = {"v": 1, "type": "command", "id": "c1", "name": "resync", "expires_at": 1.9e9}
EVENT = {"seq": 1, "item_id": "7@1", "planned_start": 1.9e9, "outcome": "played"}
YEAR_9999 = 253402300799.0


def _payload(base: dict[str, Any], **changes: Any) -> bytes:
    # json.dumps writes NaN/Infinity literals, as a hostile or broken sender would.
    return json.dumps(base | changes).encode()


REFUSED: list[tuple[TopicKind, bytes, str]] = [
    (TopicKind.STATUS, _payload(BIRTH, state_version=2**63), "state_version"),
    (TopicKind.STATUS, _payload(BIRTH, schedule_version=MAX_VERSION + 1), "schedule_version"),
    (TopicKind.STATUS, _payload(BIRTH, state_version=-1), "state_version"),
    (TopicKind.STATUS, _payload(BIRTH, boot_time=float("nan")), "boot_time"),
    (TopicKind.STATUS, _payload(BIRTH, ts=YEAR_9999), "ts"),
    (TopicKind.STATUS, _payload(BIRTH, ts=-1.0), "ts"),
    (TopicKind.STATUS, _payload(BIRTH, agent_version="a\x00b"), "agent_version"),
    (TopicKind.TELEMETRY, _payload(TELEMETRY, state_version=2**63), "state_version"),
    (TopicKind.TELEMETRY, _payload(TELEMETRY, uptime_s=float("inf")), "uptime_s"),
    (TopicKind.TELEMETRY, _payload(TELEMETRY, load_1m=float("nan")), "load_1m"),
    (TopicKind.TELEMETRY, _payload(TELEMETRY, rejected_messages=2**63), "rejected_messages"),
    (TopicKind.COMMAND, _payload(COMMAND, expires_at=float("nan")), "expires_at"),
    (TopicKind.COMMAND, _payload(COMMAND, expires_at=float("inf")), "expires_at"),
    (TopicKind.COMMAND, _payload(COMMAND, expires_at=YEAR_9999), "expires_at"),
    (TopicKind.STATE, _payload({"v": 1, "type": "state", "volume": 5}, version=2**31), "version"),
    (TopicKind.EVENTS, _payload({"v": 1, "events": [EVENT | {"seq": 2**63}]}), "seq"),
    (TopicKind.EVENTS, _payload({"v": 1, "events": [EVENT | {"planned_start": 1e300}]}), "planned"),
    (TopicKind.EVENTS_ACK, _payload({"v": 1, "seqs": [2**64]}), "seqs"),
    (TopicKind.CLIP_REQUEST, _payload({"v": 1, "sha256": "0" * 64, "chunks": [2**32]}), "chunks"),
    (TopicKind.TIME_REQUEST, _payload({"v": 1, "id": "p", "t0": float("-inf")}), "t0"),
    (TopicKind.ACK, _payload({"v": 1, "id": "a", "ok": True, "detail": "\x00"}), "detail"),
]


@pytest.mark.parametrize(("kind", "payload", "field"), REFUSED)
def test_out_of_range_values_are_refused_with_the_field_named(
    kind: TopicKind, payload: bytes, field: str
) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(kind, payload)
    assert err.value.reason == "invalid"
    assert field in str(err.value)


@pytest.mark.parametrize(
    "payload",
    [b"1" * 4400, b"[" * 3000 + b"]" * 3000, b'{"v": 1, "x": ' + b"[" * 1500 + b"]" * 1500 + b"}"],
)
def test_json_the_parser_cannot_hold_is_not_json(payload: bytes) -> None:
    # A 4400-digit integer (ValueError) and deep nesting (RecursionError) escaped decode().
    with pytest.raises(ProtocolError) as err:
        decode(TopicKind.TELEMETRY, payload)
    assert err.value.reason in ("not_json", "not_object")


def test_the_limits_themselves_are_accepted_and_the_wire_form_is_unchanged() -> None:
    birth = decode(TopicKind.STATUS, _payload(BIRTH, state_version=MAX_VERSION, ts=UNIX_MAX))
    assert isinstance(birth, Birth) and birth.state_version == MAX_VERSION
    assert decode(TopicKind.STATUS, _payload(BIRTH, boot_time=0.0)).boot_time == 0.0
    batch = decode(TopicKind.EVENTS, _payload({"v": 1, "events": [EVENT | {"seq": MAX_SEQ}]}))
    assert isinstance(batch, EventBatch) and batch.events[0].seq == MAX_SEQ
    # The README's example birth decodes and encodes to the same fields.
    example = (
        b'{"v":1,"ts":1763772000.1,"type":"birth","conn_id":"4f1c9a0b7d2e6a11",'
        b'"agent_version":"0.1.0","firmware_profile":"rpi4-usb-pa","boot_time":1763771990.0,'
        b'"state_version":3,"schedule_version":null}'
    )
    assert json.loads(encode(decode(TopicKind.STATUS, example))) == json.loads(example)


def test_salvage_keeps_good_events_and_names_the_seqs_of_bad_ones() -> None:
    events = [
        EVENT,
        EVENT | {"seq": 2, "planned_start": float("nan")},
        {"seq": "x"},
        EVENT | {"seq": 3},
    ]
    payload = _payload({"v": 1, "events": events})
    with pytest.raises(ProtocolError):
        decode(TopicKind.EVENTS, payload)
    good, refused = salvage_events(payload)
    assert [e.seq for e in good] == [1, 3] and all(isinstance(e, PlayEvent) for e in good)
    assert refused == [2]
    assert salvage_events(b"[1]") == ([], [])
    assert salvage_events(b"not json") == ([], [])
