"""Proof of play of relay items: the relay figures through the real MQTT ingest to the API."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from protocol import EventBatch, PlayEvent, TopicKind, decode, device_topic, encode
from server.plays.models import PlayRecord
from tests.server.test_plays import Inbox
from tests.server.test_programmes_fixtures import NOW, World, sqlite_world, wait, world

__all__ = ["sqlite_world", "world"]  # fixtures, imported for pytest


def _relay_event(seq: int, *, length_s: float = 120.0, **relay: Any) -> dict[str, Any]:
    planned = (NOW + timedelta(minutes=seq)).timestamp()
    return PlayEvent(
        seq=seq, item_id=f"relay@{seq}", planned_start=planned, actual_start=planned + 0.01,
        ended_at=planned + 0.01 + length_s, outcome="played",
    ).model_dump() | relay  # fmt: skip


def _send(w: World, uid: str, pw: str, events: list[dict[str, Any]]) -> list[int]:
    """Publish one raw batch (possibly with garbage fields) and return the acked seqs."""
    inbox = Inbox()
    c = w.connect(uid, pw, inbox, [device_topic(uid, TopicKind.EVENTS_ACK)])
    payload = json.dumps({"v": 1, "type": "events", "events": events}).encode()
    c.publish(device_topic(uid, TopicKind.EVENTS), payload, qos=1).wait_for_publish(5)
    assert wait(lambda: len(inbox.on("/evack")) == 1)
    return list(decode(TopicKind.EVENTS_ACK, inbox.on("/evack")[0][0]).seqs)


def _stored(w: World, device_id: int) -> dict[int, tuple[Any, ...]]:
    with w.stack.session() as db:
        rows = db.query(PlayRecord).filter_by(device_id=device_id).all()
        return {r.seq: (r.relay_mode, r.relayed_s, r.fallback_s, r.silent_s) for r in rows}


def test_relay_figures_are_stored_and_listed(world: World) -> None:
    device_id, uid, pw = world.device(world.org())
    events = [
        _relay_event(1, relay_mode="relayed", relayed_s=90.0, fallback_s=0.0, silent_s=0.5),
        _relay_event(2, relay_mode="fallback", relayed_s=0.0, fallback_s=89.5, silent_s=2.0),
        _relay_event(3, relay_mode="mixed", relayed_s=40.0, fallback_s=48.25, silent_s=1.75),
        _relay_event(4),  # a plain item: no relay figures
    ]
    assert _send(world, uid, pw, events) == [1, 2, 3, 4]
    assert _stored(world, device_id) == {
        1: ("relayed", 90.0, 0.0, 0.5),
        2: ("fallback", 0.0, 89.5, 2.0),
        3: ("mixed", 40.0, 48.25, 1.75),
        4: (None, None, None, None),
    }
    items = {p["seq"]: p for p in world.get("/plays", device_id=device_id)["items"]}
    assert {k: items[3][k] for k in ("relay_mode", "relayed_s", "fallback_s", "silent_s")} == {
        "relay_mode": "mixed", "relayed_s": 40.0, "fallback_s": 48.25, "silent_s": 1.75,
    }  # fmt: skip
    assert items[4]["relay_mode"] is None and items[4]["relayed_s"] is None


def test_garbage_relay_figures_neither_block_the_outbox_nor_exceed_the_item(
    sqlite_world: World,
) -> None:
    w = sqlite_world
    device_id, uid, pw = w.device(w.org())
    events = [
        _relay_event(1, relay_mode="loud", relayed_s=10.0),  # unknown mode: refused
        _relay_event(2, relay_mode="relayed", relayed_s=-5.0),  # negative: refused
        _relay_event(3, relay_mode="mixed", relayed_s="many"),  # not a number: refused
        # Longer than the item's own play time (120 s): cut to it.
        _relay_event(4, relay_mode="relayed", relayed_s=5000.0, fallback_s=0.0, silent_s=0.0),
        # Seconds without a mode: the mode follows from the seconds.
        _relay_event(5, relayed_s=30.0, fallback_s=0.0),
        _relay_event(6, relayed_s=30.0, fallback_s=12.0),
        # Relay figures on a live session's proof are not a relay item's: dropped.
        _relay_event(7, kind="live", relay_mode="relayed", relayed_s=30.0),
    ]
    assert sorted(_send(w, uid, pw, events)) == [1, 2, 3, 4, 5, 6, 7]
    stored = _stored(w, device_id)
    assert sorted(stored) == [4, 5, 6, 7]
    assert stored[4] == ("relayed", 120.0, 0.0, 0.0)
    assert stored[5] == ("relayed", 30.0, 0.0, None)
    assert stored[6] == ("mixed", 30.0, 12.0, None)
    assert stored[7] == (None, None, None, None)
    # The ingest still works after the garbage.
    good = _relay_event(8, relay_mode="fallback", relayed_s=0.0, fallback_s=60.0, silent_s=0.0)
    assert _send(w, uid, pw, [good]) == [8]
    assert w.get("/plays", device_id=device_id)["items"][0]["relay_mode"] == "fallback"


def test_relay_figures_in_a_typed_batch_round_trip() -> None:
    """The protocol model carries the four fields the ingest stores (contract check)."""
    event = PlayEvent(
        seq=1, item_id="x", planned_start=NOW.timestamp(), outcome="played",
        relay_mode="mixed", relayed_s=1.0, fallback_s=2.0, silent_s=0.0,
    )  # fmt: skip
    batch = decode(TopicKind.EVENTS, encode(EventBatch(events=[event])))
    assert batch.events[0].relay_mode == "mixed" and batch.events[0].fallback_s == 2.0
