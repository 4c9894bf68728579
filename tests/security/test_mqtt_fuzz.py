"""MQTT fuzz: generated payloads on every topic a device publishes and every topic an agent reads.

Hypothesis generates a fixed (derandomized) list of payloads per topic: random bytes and text,
random JSON, envelopes of the right type with random fields, and valid messages with one field
set to an extreme (2**63, NaN, Infinity, year 9999, NUL, 5000 characters...). They are then
published through a real Mosquitto, once, so the test stays bounded:

* into a running server bridge, from a registered device, interleaved with valid births,
  telemetry and proof of play from two other devices: the server never fails, every payload
  the protocol refuses is counted in loa_mqtt_messages_rejected_total, nothing reaches the
  database unvalidated (no "not_stored", no lost batch), and every valid message of the other
  devices is stored;
* into a running agent, on its state, command, schedule, evack, time answer and clip topics and
  on its zone's clip and live topics: the agent never fails or disconnects, every refused
  payload is counted (its `rejected` counters, the fetcher's and the live receiver's), and it
  still carries out a valid command afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from loa_testkit.bridgefix import bridge_of, device_client, register_device
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, observing, run, running
from loa_testkit.stack import Stack, database, server_stack
from protocol import (
    Birth,
    EventBatch,
    PlayEvent,
    ProtocolError,
    Telemetry,
    TopicKind,
    decode,
    device_topic,
    encode,
    live_topic,
    zone_clip_topic,
)
from protocol.clipchunk import Chunk, ChunkError, decode_chunk, encode_chunk
from protocol.liveframe import FrameError, LiveFrame, decode_frame, encode_frame
from protocol.mqtt_client import Outgoing
from server.db import session_scope
from server.devices.models import Device
from server.metrics import Metrics
from server.plays.models import PlayRecord
from tests.server.conftest import BACKENDS

T = TypeVar("T")
PER_KIND = 40  # generated payloads per topic kind (a few hundred messages per test)

# -- generation ---------------------------------------------------------------------------------

EXTREMES: list[Any] = [
    2**63, 2**63 - 1, -(2**63) - 1, 2**64, 2**31, -1, 0, 10**30,
    float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324,
    253402300799.0, -62135596800.0, 4102444801.0,
    "", "\x00", "x" * 5000, "\u202e\ud7ff", [], {}, None, True, [2**63], {"v": 1},
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=30)
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _dumps(value: Any) -> bytes:
    # NaN and Infinity go out as the bare literals json.loads accepts; lone surrogates escaped.
    return json.dumps(value).encode()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path of a JSON template, nested ones too (events.0.seq, document.version)."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        yield (*prefix, key)
        if isinstance(child, dict | list) and child:
            yield from _paths(child, (*prefix, key))


def _replaced(template: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(template))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return dict(data)


def json_payloads(templates: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Garbage and near-misses for a JSON topic whose valid messages look like `templates`."""
    mutations = st.sampled_from(templates).flatmap(
        lambda t: st.builds(
            _replaced,
            st.just(t),
            st.sampled_from(list(_paths(t))),
            st.sampled_from(EXTREMES) | JSONISH,
        )
    )
    envelopes = st.sampled_from(templates).flatmap(
        lambda t: st.dictionaries(st.text(max_size=12), JSONISH, max_size=5).map(
            lambda extra: extra | {"v": 1, "type": t.get("type", "x")}
        )
    )
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        JSONISH.map(_dumps),
        envelopes.map(_dumps),
        mutations.map(_dumps),
        mutations.map(_dumps),  # twice as likely: the near-misses find range holes
        st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(4300, 7000).map(lambda n: b'{"v": 1, "seq": ' + b"7" * n + b"}"),
        st.sampled_from(templates).map(_dumps),
    )


def binary_payloads(valid: list[bytes], header: int) -> st.SearchStrategy[bytes]:
    """Random bytes, and valid binary payloads with bytes of the header overwritten."""

    def flip(base: bytes, at: int, value: int) -> bytes:
        return base[:at] + bytes([value]) + base[at + 1 :]

    flipped = st.builds(
        flip, st.sampled_from(valid), st.integers(0, header - 1), st.integers(0, 255)
    )
    return st.one_of(
        st.binary(max_size=200), st.binary(min_size=header, max_size=header + 40), flipped
    )


def generate(strategy: st.SearchStrategy[T], n: int = PER_KIND) -> list[T]:
    """n values of a strategy, the same on every run (hypothesis as a seeded generator)."""
    out: list[T] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        out.append(value)

    collect()
    return out


def _refused(kind: TopicKind, payload: bytes) -> bool:
    try:
        decode(kind, payload)
    except ProtocolError:
        return True
    return False


# -- the server ---------------------------------------------------------------------------------

NOW = time.time()
UP_TEMPLATES: dict[TopicKind, list[dict[str, Any]]] = {
    TopicKind.STATUS: [
        {"v": 1, "ts": NOW, "type": "birth", "conn_id": "c1", "agent_version": "0.1.0",
         "firmware_profile": "sim", "boot_time": NOW - 5, "state_version": 3,
         "schedule_version": 2},
        {"v": 1, "ts": NOW, "type": "offline", "conn_id": "c0", "reason": "will"},
    ],
    TopicKind.TELEMETRY: [
        {"v": 1, "ts": NOW, "type": "telemetry", "uptime_s": 12.5, "load_1m": 0.3,
         "mem_used_pct": 40, "disk_free_mb": 900, "disk_used_pct": 10, "cpu_temp_c": 51.5,
         "signal_dbm": -71, "signal_source": "modem", "agent_version": "t",
         "firmware_profile": "sim", "state_version": 3, "schedule_version": 2,
         "rejected_messages": 0, "clock_offset_ms": 1.5, "clock_error_ms": 0.4},
    ],
    TopicKind.ACK: [{"v": 1, "ts": NOW, "type": "ack", "id": "cmd-1", "ok": True, "detail": ""}],
    TopicKind.EVENTS: [
        {"v": 1, "ts": NOW, "type": "events", "events": [
            {"seq": 90_001, "kind": "play", "item_id": "1@x", "programme_id": 1,
             "priority": "normal", "planned_start": NOW, "actual_start": NOW + 0.01,
             "ended_at": NOW + 9, "outcome": "played", "reason": "", "clock_offset_ms": 1.0,
             "clock_error_ms": 0.5},
            {"seq": 90_002, "kind": "live", "item_id": "live:s1", "planned_start": NOW,
             "outcome": "played", "session_id": "s1", "frames_played": 10,
             "frames_concealed": 0, "frames_late": 0, "frames_dropped": 0}]},
    ],
    TopicKind.CLIP_REQUEST: [
        {"v": 1, "ts": NOW, "type": "clipreq", "sha256": "ab" * 32, "chunks": [0, 3]},
    ],
    TopicKind.TIME_REQUEST: [{"v": 1, "ts": NOW, "type": "time_req", "id": "p1", "t0": NOW}],
}  # fmt: skip
UP_KINDS = list(UP_TEMPLATES)


def _by_kind(metrics: Metrics, name: str) -> Counter[str]:
    """A counter's totals per `kind` label, over every reason."""
    totals: Counter[str] = Counter()
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                totals[sample.labels["kind"]] += int(sample.value)
    return totals


def _reasons(metrics: Metrics, reason: str) -> float:
    return sum(
        s.value
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == "loa_mqtt_messages_rejected_total" and s.labels["reason"] == reason
    )


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A server with its own broker, on SQLite (and PostgreSQL when configured)."""
    with (
        database(request.param, tmp_path) as url,
        server_stack(url, tmp_path / "data") as stack,
    ):
        yield stack


def _device(api: Stack, uid: str) -> mqtt.Client:
    """Register a device and connect a client with its real credentials."""
    _id, password = register_device(api, uid)
    return device_client(api, uid, password, keepalive=30, inflight=100)


def _good_messages(round_no: int) -> list[tuple[TopicKind, bytes]]:
    """What a healthy device sends in one round: a birth, telemetry and one proof of play."""
    birth = Birth(conn_id=f"conn-{round_no}", agent_version="0.1.0", firmware_profile="sim",
                  boot_time=NOW, state_version=round_no, schedule_version=1)  # fmt: skip
    telemetry = Telemetry(uptime_s=round_no, load_1m=0.1, mem_used_pct=20, disk_free_mb=500,
                          disk_used_pct=5, agent_version="0.1.0", firmware_profile="sim",
                          state_version=round_no)  # fmt: skip
    event = PlayEvent(seq=round_no, item_id=f"1@{round_no}", planned_start=NOW + round_no,
                      outcome="played")  # fmt: skip
    return [
        (TopicKind.STATUS, encode(birth)),
        (TopicKind.TELEMETRY, encode(telemetry)),
        (TopicKind.EVENTS, encode(EventBatch(events=[event]))),
    ]


def test_the_server_bridge_survives_and_counts_fuzzed_device_messages(
    server: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    fuzz = [
        (kind, payload)
        for kind in UP_KINDS
        for payload in generate(json_payloads(UP_TEMPLATES[kind]))
    ]
    # Interleave the kinds, so each batch the bridge reads mixes them.
    fuzz = [fuzz[i] for k in range(PER_KIND) for i in range(k, len(fuzz), PER_KIND)]
    metrics: Metrics = server.app.state.metrics
    bridge = bridge_of(server)
    bad, good = _device(server, "fz-bad"), [_device(server, f"fz-good-{i}") for i in (1, 2)]
    published: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    infos: list[mqtt.MQTTMessageInfo] = []

    def publish(client: mqtt.Client, uid: str, kind: TopicKind, payload: bytes) -> None:
        infos.append(client.publish(device_topic(uid, kind), payload, qos=1))
        published[kind.value] += 1

    received_before = _by_kind(metrics, "loa_mqtt_messages_received_total")
    processed_before = bridge.processed
    rejected_before = _by_kind(metrics, "loa_mqtt_messages_rejected_total")
    rounds = 0
    caplog.set_level(logging.WARNING, logger="server.mqtt_bridge")
    for i, (kind, payload) in enumerate(fuzz):
        publish(bad, "fz-bad", kind, payload)
        # An empty status clears a retained one (a deleted device): read, not refused.
        if _refused(kind, payload) and (payload or kind is not TopicKind.STATUS):
            refused[kind.value] += 1
        if i % 4 == 0:  # valid messages of other devices, in the same bursts
            rounds += 1
            for n, client in enumerate(good, start=1):
                for good_kind, good_payload in _good_messages(rounds):
                    publish(client, f"fz-good-{n}", good_kind, good_payload)
    for info in infos:
        info.wait_for_publish(10)

    def received() -> Counter[str]:
        return _by_kind(metrics, "loa_mqtt_messages_received_total") - received_before

    def rejected() -> Counter[str]:
        return _by_kind(metrics, "loa_mqtt_messages_rejected_total") - rejected_before

    # Batched kinds count as processed once committed; clock probes are answered on arrival.
    batched = sum(n for kind_name, n in published.items() if kind_name != TopicKind.TIME_REQUEST)
    assert _wait(
        lambda: (
            bridge.processed - processed_before == batched
            and received()[TopicKind.TIME_REQUEST] == published[TopicKind.TIME_REQUEST]
        ),
        60,
    ), (bridge.processed - processed_before, batched, received(), published)
    assert received() == published
    # Each refusal is counted (right after its message was read: poll for the last ones).
    assert _wait(lambda: all(rejected()[k] >= n for k, n in refused.items()), 10), (
        rejected(),
        refused,
    )
    assert sum(refused.values()) >= len(fuzz) // 2  # the fuzz mostly produces garbage
    # Validation caught everything: no message reached the database and failed there.
    bridge_errors = [
        r.getMessage() for r in caplog.records
        if r.name == "server.mqtt_bridge" and r.levelno >= logging.ERROR
    ]  # fmt: skip
    not_stored = [r.getMessage() for r in caplog.records if "could not be stored" in r.getMessage()]
    assert _reasons(metrics, "not_stored") == 0, not_stored
    assert _reasons(metrics, "database_error") == 0, bridge_errors
    assert not bridge_errors
    # Every valid message of the other devices is stored.
    with session_scope(server.app.state.session_factory) as db:
        for n in (1, 2):
            device = db.scalar(select(Device).where(Device.uid == f"fz-good-{n}"))
            assert device is not None and device.online and device.conn_id == f"conn-{rounds}"
            assert device.telemetry is not None and device.telemetry["uptime_s"] == rounds
            seqs = db.scalars(select(PlayRecord.seq).where(PlayRecord.device_id == device.id))
            assert sorted(seqs) == list(range(1, rounds + 1))
    # Still serving: the bridge reads on, the API answers.
    assert all(not task.done() for task in bridge._tasks)
    assert server.client.get("/healthz").json()["mqtt"] == "connected"
    for client in (bad, *good):
        client.loop_stop()
        client.disconnect()


def _wait(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


# -- the agent ----------------------------------------------------------------------------------

ZONE = 5
SESSION = "fuzz-live"
CLIP_SHA = "cd" * 32


def _down_templates(uid: str) -> dict[TopicKind, list[dict[str, Any]]]:
    soon = datetime.now(UTC) + timedelta(days=1)
    later = soon + timedelta(seconds=5)
    schedule = {
        "device_id": uid,
        "version": 2,
        "generated_at": NOW,
        "horizon_start": NOW - 3600,
        "horizon_end": NOW + 86400 * 2,
        "items": [
            {
                "item_id": "1@x",
                "programme_id": 1,
                "start": soon.isoformat(),
                "end": later.isoformat(),
                "priority": "normal",
                "volume": 50,
                "clips": [{"sha256": CLIP_SHA, "duration_s": 5.0, "size_bytes": 1000}],
            }
        ],
        "clips": [{"sha256": CLIP_SHA, "duration_s": 5.0, "size_bytes": 1000}],
    }
    return {
        # Versions below the held one: a valid one is dropped as stale, never applied.
        TopicKind.STATE: [{"v": 1, "ts": NOW, "type": "state", "version": 1, "volume": 30,
                           "muted": False, "telemetry_interval_s": 30, "zone_ids": [ZONE]}],
        TopicKind.COMMAND: [
            {"v": 1, "ts": NOW, "type": "command", "id": "c1", "name": "resync",
             "args": {}, "expires_at": NOW + 600},
            {"v": 1, "ts": NOW, "type": "command", "id": "c2", "name": "set_volume",
             "args": {"volume": 40}, "expires_at": NOW + 600},
            {"v": 1, "ts": NOW, "type": "live_join", "id": "j1", "session_id": "other",
             "topic": live_topic(ZONE + 1, "other"), "priority": "normal",
             "playout_delay_ms": 500, "volume": 50, "expires_at": NOW + 600},
            {"v": 1, "ts": NOW, "type": "live_leave", "id": "l1", "session_id": "other",
             "reason": "", "expires_at": NOW + 600},
        ],
        TopicKind.SCHEDULE: [{"v": 1, "ts": NOW, "type": "schedule", "document": schedule}],
        TopicKind.EVENTS_ACK: [{"v": 1, "ts": NOW, "type": "evack", "seqs": [1, 2]}],
        TopicKind.TIME_RESPONSE: [{"v": 1, "ts": NOW, "type": "time_resp", "id": "p1",
                                   "t0": NOW, "t1": NOW, "t2": NOW}],
    }  # fmt: skip


def _chunk_refused(payload: bytes, topic_sha: str | None) -> bool:
    try:
        chunk = decode_chunk(payload)
    except ChunkError:
        return True
    return topic_sha is not None and chunk.sha256 != topic_sha


def _frame_refused(payload: bytes) -> bool:
    try:
        decode_frame(payload)
    except FrameError:
        return True
    return False


def test_an_agent_survives_and_counts_fuzzed_messages_on_every_topic_it_reads(
    broker: TestBroker, tmp_path: Path
) -> None:
    uid = new_device_id("fz")
    # The broker lets a device read its zones' topics only: register it in ZONE.
    agent = make_agent(broker, uid, tmp_path, password=broker.add_device(uid, (ZONE,)))
    json_fuzz = [
        (kind, payload)
        for kind, templates in _down_templates(uid).items()
        for payload in generate(json_payloads(templates))
    ]
    chunk = encode_chunk(Chunk(sha256=CLIP_SHA, index=0, count=1, data=b"\x01" * 100))
    big = encode_chunk(Chunk(sha256=CLIP_SHA, index=2**32 - 2, count=2**32 - 1, data=b"x"))
    chunks = generate(binary_payloads([chunk, big], 52))
    frame = encode_frame(LiveFrame(seq=1, capture_us=int(NOW * 1e6), payload=b"\xf8\xff\xfe"))
    frames = generate(binary_payloads([frame], 20))
    clip_topics = [device_topic(uid, TopicKind.CLIP), zone_clip_topic(ZONE, CLIP_SHA)]
    expected_json = sum(_refused(kind, p) for kind, p in json_fuzz)
    expected_chunks = sum(
        _chunk_refused(p, None if i % 2 == 0 else CLIP_SHA) for i, p in enumerate(chunks)
    )
    expected_frames = sum(_frame_refused(p) for p in frames)

    def counted_json() -> int:
        return sum(n for reason, n in agent.rejected.items() if reason != "handler_error")

    def counted_chunks() -> int:
        stats = agent.runtime.fetcher.stats
        return stats.chunks_corrupt + stats.chunks_dropped

    def counted_frames() -> int:
        return sum(agent.runtime.live.rejected.values())

    async def scenario() -> None:
        async with observing(broker, uid) as obs, running(agent):
            state = {"v": 1, "type": "state", "version": 5, "volume": 30, "zone_ids": [ZONE]}
            await obs.send(TopicKind.STATE, _dumps(state))
            await eventually(lambda: agent.runtime.zone_ids == {ZONE}, what="the zone")
            join = {"v": 1, "type": "live_join", "id": "fuzz-join", "session_id": SESSION,
                    "topic": live_topic(ZONE, SESSION), "expires_at": time.time() + 60}  # fmt: skip
            await obs.send(TopicKind.COMMAND, _dumps(join))
            await obs.wait_for(TopicKind.ACK, lambda m: m.id == "fuzz-join" and m.ok)
            await asyncio.sleep(0.3)  # the zone and live SUBSCRIBEs reach the broker
            base = counted_json(), counted_chunks(), counted_frames()
            rounds = max(len(json_fuzz), len(chunks), len(frames))
            for i in range(rounds):  # interleaved, as a broker would deliver them
                if i < len(json_fuzz):
                    kind, payload = json_fuzz[i]
                    await obs.send(kind, payload)
                if i < len(chunks):
                    out = Outgoing(clip_topics[i % 2], chunks[i], qos=1)
                    await obs.link.publish_wait(out)
                if i < len(frames):
                    out = Outgoing(live_topic(ZONE, SESSION), frames[i], qos=0)
                    await obs.link.publish_wait(out)
            # A valid command after the fuzz: the inbox reached it, and the agent still works.
            command = {"v": 1, "type": "command", "id": "after-fuzz", "name": "set_volume",
                       "args": {"volume": 21}, "expires_at": time.time() + 60}  # fmt: skip
            await obs.send(TopicKind.COMMAND, _dumps(command))
            ack = await obs.wait_for(TopicKind.ACK, lambda m: m.id == "after-fuzz", timeout=30)
            assert ack.ok, ack
            await eventually(
                lambda: counted_chunks() - base[1] >= expected_chunks,
                what=f"chunks counted {expected_chunks} {agent.runtime.fetcher.stats} {base}",
            )
            assert counted_json() - base[0] >= expected_json, (agent.rejected, expected_json)
            # Frames travel at QoS 0: all published were read (loopback), each refusal counted.
            await eventually(
                lambda: counted_frames() - base[2] >= expected_frames, what="frames counted"
            )
            assert agent.rejected.get("handler_error", 0) == 0
            assert agent.link.connects == 1  # no payload cost the connection
            assert agent.exit_code == 0

    run(scenario(), timeout=90)
    assert expected_json >= len(json_fuzz) // 2 and expected_chunks and expected_frames
