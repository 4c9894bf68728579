"""One poison MQTT message never costs another message of the same batch (issue 10, defect 5)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import func, select, text

from loa_testkit.bridgefix import bridge_of, device_client, register_device
from loa_testkit.stack import Stack
from protocol import Birth, EventBatch, PlayEvent, TopicKind, decode, device_topic, encode
from server.db import session_scope
from server.plays.models import PlayRecord


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _device(api: Stack, device_id: int) -> dict[str, object]:
    return dict(api.client.get(f"/api/v1/devices/{device_id}", headers=api.headers).json())


def _birth(conn_id: str, **extra: object) -> bytes:
    data = json.loads(
        encode(Birth(conn_id=conn_id, agent_version="v", firmware_profile="sim", boot_time=1.0))
    )
    return json.dumps(data | extra).encode()


def _batch(*messages: tuple[str, TopicKind, bytes]) -> list[tuple[str, bytes, float]]:
    now = time.time()
    return [(device_topic(uid, kind), payload, now) for uid, kind, payload in messages]


@contextmanager
def _evacks(api: Stack, uid: str, password: str) -> Iterator[list[list[int]]]:
    """The seqs of every evack the device receives while the block runs."""
    seqs: list[list[int]] = []
    client = device_client(api, uid, password)
    client.on_message = lambda _c, _u, m: seqs.append(
        decode(TopicKind.EVENTS_ACK, bytes(m.payload)).seqs
    )
    try:
        client.subscribe(device_topic(uid, TopicKind.EVENTS_ACK), 1)
        time.sleep(0.3)  # the subscription reaches the broker
        yield seqs
    finally:
        client.loop_stop()
        client.disconnect()


def test_an_out_of_range_version_is_counted_and_the_rest_of_the_batch_is_stored(
    live: Stack,
) -> None:
    a, _ = register_device(live, "iso-a")
    b, _ = register_device(live, "iso-b")
    c, _ = register_device(live, "iso-c")
    metrics = live.app.state.metrics
    before = metrics.rejected("status", "invalid"), metrics.rejected("telemetry", "invalid")
    poison_telemetry = json.dumps(
        {"v": 1, "type": "telemetry", "uptime_s": 1, "load_1m": 0, "mem_used_pct": 1,
         "disk_free_mb": 1, "disk_used_pct": 1, "agent_version": "v", "firmware_profile": "s",
         "state_version": 2**63}
    ).encode()  # fmt: skip
    # Applied as one batch, as the bridge's consumer would: one transaction before the fix.
    bridge_of(live)._apply_batch(
        _batch(
            ("iso-a", TopicKind.STATUS, _birth("a1")),
            ("iso-b", TopicKind.STATUS, _birth("b1", state_version=9223372036854775808)),
            ("iso-b", TopicKind.TELEMETRY, poison_telemetry),
            ("iso-c", TopicKind.STATUS, _birth("c1", state_version=4)),
        )
    )
    assert _device(live, a)["online"] is True
    assert _device(live, c)["online"] is True and _device(live, c)["reported_state_version"] == 4
    assert _device(live, b)["online"] is False
    assert metrics.rejected("status", "invalid") == before[0] + 1
    assert metrics.rejected("telemetry", "invalid") == before[1] + 1


def test_a_message_the_database_refuses_is_rolled_back_alone(live: Stack) -> None:
    a, password = register_device(live, "iso-d")
    p, _ = register_device(live, "iso-poison")
    with session_scope(
        live.app.state.session_factory
    ) as db:  # a real refusal by the database, for this one device only
        db.execute(
            text(
                "CREATE TRIGGER iso_poison BEFORE UPDATE ON devices WHEN NEW.uid = 'iso-poison' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
            )
        )
    with _evacks(live, "iso-d", password) as acked:
        metrics = live.app.state.metrics
        before = metrics.rejected("status", "not_stored")
        event = PlayEvent(seq=1, item_id="1@1", planned_start=1.9e9, outcome="played")
        bridge_of(live)._apply_batch(
            _batch(
                ("iso-d", TopicKind.STATUS, _birth("d1")),
                ("iso-poison", TopicKind.STATUS, _birth("p1")),
                ("iso-d", TopicKind.EVENTS, encode(EventBatch(events=[event]))),
            )
        )
        assert metrics.rejected("status", "not_stored") == before + 1
        assert _device(live, a)["online"] is True and _device(live, p)["online"] is False
        with session_scope(live.app.state.session_factory) as db:
            stored = db.scalar(select(func.count()).where(PlayRecord.device_id == a))
        assert stored == 1
        assert _wait(lambda: acked == [[1]])


def test_bad_events_are_acknowledged_counted_and_the_good_ones_stored(live: Stack) -> None:
    a, password = register_device(live, "iso-e")
    metrics = live.app.state.metrics
    before = metrics.rejected("events", "bad_event")
    good = {"item_id": "1@1", "planned_start": 1.9e9, "outcome": "played"}
    events = [good | {"seq": 1}, good | {"seq": 2, "planned_start": float("nan")},
              good | {"seq": 3, "ended_at": 253402300799.0}, good | {"seq": 4}]  # fmt: skip
    payload = json.dumps({"v": 1, "type": "events", "events": events}).encode()
    with _evacks(live, "iso-e", password) as acked:
        bridge_of(live)._apply_batch(_batch(("iso-e", TopicKind.EVENTS, payload)))
        # Every seq is acknowledged, so the bad ones do not block the device's outbox.
        assert _wait(lambda: acked == [[1, 2, 3, 4]])
    assert metrics.rejected("events", "bad_event") == before + 2
    with session_scope(live.app.state.session_factory) as db:
        seqs = db.scalars(select(PlayRecord.seq).where(PlayRecord.device_id == a)).all()
    assert sorted(seqs) == [1, 4]
