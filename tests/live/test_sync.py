"""Publisher to listeners over a real Mosquitto: in sync, on time, with proof of play."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

from audio.clock import SystemClock
from audio.signals import make_marker, marker_track
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, run
from loa_testkit.livesim import SimListener, heard_times, skews
from protocol import SERVER_USERNAME, LiveJoin, live_topic
from protocol.mqtt_client import MqttLink
from server.live.buffer import PcmQueue
from server.live.publisher import FramePublisher, command_out

MARKER_TIMES = (0.4, 1.2, 2.0)
DELAY_MS = 400


def _server_link(broker: TestBroker) -> MqttLink:
    return MqttLink(
        client_id=f"loa-server-{uuid.uuid4().hex[:6]}",
        host=broker.host,
        port=broker.server_port,
        username=SERVER_USERNAME,
        password=broker.server_password,
        on_message=lambda _t, _p: None,
        min_backoff=0.1,
    )


async def _broadcast(
    broker: TestBroker, tmp_path: Path, *, jitter: bool, errors_s: list[float]
) -> tuple[list[SimListener], FramePublisher]:
    zone = random.randint(10_000, 99_999)
    sid = uuid.uuid4().hex[:12]
    listeners = []
    for i, err in enumerate(errors_s):
        uid = f"lv-{uuid.uuid4().hex[:8]}"
        delay = (lambda: random.uniform(0.02, 0.12)) if jitter else None
        li = SimListener(uid=uid, out_dir=tmp_path / f"d{i}", clock_error_s=err, delay=delay)
        li.connect(host=broker.host, port=broker.port, password=broker.add_device(uid, (zone,)))
        listeners.append(li)
    server = _server_link(broker)
    links = [server, *(li.link for li in listeners if li.link is not None)]
    tasks = [asyncio.create_task(link.run()) for link in links]
    for link in links:
        await asyncio.wait_for(link.connected.wait(), 10)
    await asyncio.sleep(0.3)  # subscriptions in place
    topic = live_topic(zone, sid)
    for li in listeners:
        join = LiveJoin(
            id=uuid.uuid4().hex,
            session_id=sid,
            topic=topic,
            playout_delay_ms=DELAY_MS,
            priority="normal",
            expires_at=time.time() + 10,
        )
        server.publish(command_out(li.uid, join))
    await eventually(lambda: all(li.acks for li in listeners), what="join acks")
    assert all(li.acks[0].ok for li in listeners), [li.acks for li in listeners]
    await asyncio.sleep(0.3)  # the frame subscriptions reach the broker
    queue = PcmQueue(max_s=10)
    queue.put(marker_track(duration_s=2.6, marker_times_s=MARKER_TIMES, marker=make_marker()))
    queue.finish()
    pub = FramePublisher(
        outlet=server,
        queue=queue,
        clock=SystemClock(),
        topics=lambda: [topic],
    )
    await pub.run()
    await eventually(
        lambda: all(li.receiver and li.receiver.proofs for li in listeners),
        timeout=10,
        what="every listener to finish",
    )
    for link in links:
        await link.close()
    for t in tasks:
        t.cancel()
    return listeners, pub


def _check(listeners: list[SimListener], pub: FramePublisher, *, skew_max_ms: float) -> None:
    marker = make_marker()
    assert pub.started_at is not None
    heard = []
    for li in listeners:
        times, underruns = heard_times(li.recordings[0], marker)
        assert len(times) == len(MARKER_TIMES), (li.uid, times)
        assert underruns == 0
        for t, src in zip(times, MARKER_TIMES, strict=True):
            latency_ms = (t - (pub.started_at + src)) * 1000 + 0.0
            # Heard at capture + playout delay (the listener's clock error shifts it).
            expected = DELAY_MS + li.clock_error_s * -1000
            assert abs(latency_ms - expected) < 10, (latency_ms, expected)
        heard.append([t + li.clock_error_s for t in times])
        proof = li.events[0]
        assert proof["kind"] == "live" and proof["outcome"] == "played"
        assert proof["frames_played"] >= 125 and proof["item_id"].startswith("live:")
    assert max(skews(heard)) * 1000 < skew_max_ms


def test_listeners_play_in_sync_at_the_playout_delay(broker: TestBroker, tmp_path: Path) -> None:
    listeners, pub = run(_broadcast(broker, tmp_path, jitter=False, errors_s=[0.0, 0.0, 0.0]))
    _check(listeners, pub, skew_max_ms=0.2)


def test_network_jitter_is_absorbed(broker: TestBroker, tmp_path: Path) -> None:
    listeners, pub = run(_broadcast(broker, tmp_path, jitter=True, errors_s=[0.0, 0.0, 0.0]))
    _check(listeners, pub, skew_max_ms=1.0)
    for li in listeners:
        assert li.events[0]["frames_late"] == 0
