"""protocol/README.md against the models: every message has a valid example, every field a name."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from protocol import decode, encode, parse_device_topic
from protocol.messages import (
    Ack,
    Birth,
    ClipRequest,
    Command,
    CommandName,
    DesiredState,
    EventAck,
    EventBatch,
    LiveJoin,
    LiveLeave,
    Offline,
    PlayEvent,
    ScheduleMessage,
    Telemetry,
    TimeRequest,
    TimeResponse,
)
from schedules import ClipRef, PlaybackItem, ScheduleDocument

README = Path(__file__).resolve().parents[2] / "protocol" / "README.md"
MESSAGES: list[type[BaseModel]] = [
    Birth,
    Offline,
    Telemetry,
    DesiredState,
    Command,
    LiveJoin,
    LiveLeave,
    Ack,
    ScheduleMessage,
    EventBatch,
    EventAck,
    ClipRequest,
    TimeRequest,
    TimeResponse,
]
PARTS: list[type[BaseModel]] = [PlayEvent, ScheduleDocument, PlaybackItem, ClipRef]
# A fenced block whose first line is a device topic, then the JSON payload.
EXAMPLE = re.compile(r"```\n(loa/v1/dev/\S+)[^\n]*\n(.*?)\n```", re.DOTALL)


def examples(text: str) -> list[tuple[str, str]]:
    """(topic, payload) of every example in the text."""
    return [(m[1], m[2]) for m in EXAMPLE.finditer(text)]


def _type_of(model: type[BaseModel]) -> str:
    default: Any = model.model_fields["type"].default
    return str(default)


def test_every_message_type_has_an_example_that_decodes_whole() -> None:
    seen: set[str] = set()
    for topic, payload in examples(README.read_text()):
        _uid, kind = parse_device_topic(topic)
        message = decode(kind, payload.encode())
        # Complete: encoding adds no field the example left out, and changes none.
        assert json.loads(encode(message)) == json.loads(payload), topic
        seen.add(message.type)
    assert seen == {_type_of(m) for m in MESSAGES}


def test_every_field_and_command_is_named() -> None:
    text = README.read_text()
    missing = [
        f"{model.__name__}.{name}"
        for model in MESSAGES + PARTS
        for name in model.model_fields
        if f"`{name}`" not in text
    ]
    assert not missing, f"fields protocol/README.md does not name: {missing}"
    assert all(f"| `{name}` |" in text for name in get_args(CommandName))


def test_the_example_reader_sees_a_wrong_example() -> None:
    block = (
        '```\nloa/v1/dev/d-1/ack  (QoS 1)\n{"v":1,"ts":1.0,"type":"ack","id":"x","ok":true}\n```'
    )
    [(topic, payload)] = examples(f"text\n{block}\nmore")
    message = decode(parse_device_topic(topic)[1], payload.encode())
    # The example left out `detail`: the completeness check above would refuse it.
    assert json.loads(encode(message)) != json.loads(payload)
