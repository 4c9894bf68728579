"""Live audio in sync: mouth-to-speaker latency, inter-device skew, losses, CPU, at scale.

One process: a local Mosquitto, the server's FramePublisher (Opus, QoS 0 on a zone topic) fed
a known signal (noise markers in silence, audio/signals.py), and N simulated receivers
(edge_agent.live.LiveReceiver into ClockedFileSink recordings). Each receiver gets an injected
clock offset (uniform within +-2 s) whose *estimate* comes from a simulated NTP exchange over
the same jittery network (edge_agent.clocksync.OffsetEstimator, 20 probes), so what reaches the
output is the estimate's error; frames are delayed in the receiver by the injected network
delay with jitter before they are pushed. The recordings are analysed against the source.

Scenarios (one JSON line each):
  shared-clock    10 receivers, own MQTT links, no offset, no jitter
  offsets-jitter  10 receivers, own MQTT links, offsets +-2 s, delay 30 ms + exponential jitter
  scale           --receivers (200) on one shared subscription, offsets and jitter as above
Usage: python bench/live.py [--receivers 200] [--seconds 8] [--only NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio.clock import SystemClock  # noqa: E402
from audio.signals import make_marker, marker_track  # noqa: E402
from edge_agent.clocksync import OffsetEstimator  # noqa: E402
from protocol import SERVER_USERNAME, LiveJoin, live_topic  # noqa: E402
from protocol.mqtt_client import MqttLink  # noqa: E402
from server.broker.process import free_port  # noqa: E402
from server.live.buffer import PcmQueue  # noqa: E402
from server.live.publisher import FramePublisher, command_out  # noqa: E402
from tests.brokerfix import TestBroker  # noqa: E402
from tests.live.sim import SimListener, heard_times, skews, summary_ms  # noqa: E402

DELAY_MS = 500
PROBES = 100  # about 10 minutes of the agent's periodic probing, or a few reconnect bursts


def network_delay(rng: random.Random) -> float:
    """30 ms base plus an exponential tail (mean 15 ms, capped at 300 ms), each way."""
    return 0.030 + min(rng.expovariate(1 / 0.015), 0.300)


def estimate_error(offset: float, delay: Any) -> float:
    """Error of a PROBES-probe NTP-style estimate of `offset` over a network with this delay."""
    est = OffsetEstimator(window_s=1e9)
    t = 0.0
    for _ in range(PROBES):
        up, down = delay(), delay()
        t0 = t + offset  # device clock = server clock + offset
        t1 = t2 = t + up
        t3 = t + up + down + offset
        est.add(t0=t0, t1=t1, t2=t2, t3=t3)
        t += 1.0
    result = est.estimate(t3)
    assert result is not None
    return result.offset - (-offset)  # the true server - device offset is -offset


async def scenario(name: str, *, receivers: int, seconds: float, jitter: bool, shared: bool,
                   tmp: Path, broker: TestBroker) -> dict[str, Any]:  # fmt: skip
    """Run one broadcast and measure what every receiver recorded."""
    rng = random.Random(7)
    zone = rng.randint(1000, 9999)
    sid = uuid.uuid4().hex[:12]
    topic = live_topic(zone, sid)
    delay = (lambda: network_delay(rng)) if jitter else None
    listeners: list[SimListener] = []
    errors: list[float] = []
    for i in range(receivers):
        offset = rng.uniform(-2, 2) if jitter else 0.0
        error = estimate_error(offset, delay) if delay else 0.0
        errors.append(abs(error))
        li = SimListener(uid=f"b{i:04d}-{sid[:4]}", out_dir=tmp / name / f"d{i}",
                         clock_error_s=error, delay=delay)  # fmt: skip
        listeners.append(li)
    server = MqttLink(client_id=f"loa-srv-{sid}", host=broker.host, port=broker.port,
                      username=SERVER_USERNAME, password=broker.server_password,
                      on_message=lambda _t, _p: None)  # fmt: skip
    links = [server]
    if shared:
        for li in listeners:
            li.connect(host=broker.host, port=broker.port, password=broker.server_password,
                       username=SERVER_USERNAME)  # fmt: skip
        fan = MqttLink(client_id=f"loa-fan-{sid}", host=broker.host, port=broker.port,
                       username=SERVER_USERNAME, password=broker.server_password,
                       on_message=lambda t, p: [li.receiver.on_message(t, p)  # type: ignore[union-attr]
                                                for li in listeners])  # fmt: skip
        fan.subscribe(topic, 0)
        links.append(fan)
    else:
        for li in listeners:
            li.connect(host=broker.host, port=broker.port,
                       password=broker.add_device(li.uid, (zone,)))  # fmt: skip
            assert li.link is not None
            links.append(li.link)
    tasks = [asyncio.create_task(link.run()) for link in links]
    for link in links:
        await asyncio.wait_for(link.connected.wait(), 30)
    await asyncio.sleep(0.5)
    for li in listeners:
        join = LiveJoin(id=uuid.uuid4().hex, session_id=sid, topic=topic,
                        playout_delay_ms=DELAY_MS, expires_at=time.time() + 30)  # fmt: skip
        if shared:
            assert li.receiver is not None
            await li.receiver.handle(join)
        else:
            server.publish(command_out(li.uid, join))
    deadline = time.monotonic() + 20
    while not all(li.acks for li in listeners) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    marker = make_marker()
    times = [0.5 + 0.5 * k for k in range(int((seconds - 1) / 0.5))]
    queue = PcmQueue(max_s=seconds + 1)
    queue.put(marker_track(duration_s=seconds, marker_times_s=times, marker=marker))
    queue.finish()
    pub = FramePublisher(outlet=server, queue=queue, clock=SystemClock(), topics=lambda: [topic])
    cpu0 = time.process_time()
    await pub.run()
    while not all(li.receiver and li.receiver.proofs for li in listeners):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    cpu_all = time.process_time() - cpu0
    for link in links:
        await link.close()
    for task in tasks:
        task.cancel()
    result = analyse(name, listeners, pub, times, marker, seconds, cpu_all)
    result["clock_estimate_abs_error_ms"] = summary_ms(errors)
    return result


def analyse(name: str, listeners: list[SimListener], pub: FramePublisher, times: list[float],
            marker: Any, seconds: float, cpu_all: float) -> dict[str, Any]:  # fmt: skip
    """Latency, skew and per-device losses from the recordings."""
    assert pub.started_at is not None
    latencies, heard, underruns, missing = [], [], 0, 0
    for li in listeners:
        found, under = heard_times(li.recordings[0], marker)
        underruns += under
        missing += len(times) - len(found)
        if len(found) == len(times):
            heard.append(found)
            latencies += [h - (pub.started_at + t) for h, t in zip(found, times, strict=True)]
    proofs = [li.receiver.proofs[0] for li in listeners if li.receiver]
    return {
        "bench": "live",
        "scenario": name,
        "receivers": len(listeners),
        "seconds": seconds,
        "playout_delay_ms": DELAY_MS,
        "latency_ms": summary_ms(latencies),
        "skew_ms": summary_ms(skews(heard)) if heard else {},
        "markers_missing": missing,
        "underruns": underruns,
        "frames_sent": pub.frames_sent,
        "frames_concealed_max": max(p.concealed for p in proofs),
        "frames_late_max": max(p.late for p in proofs),
        "frames_dropped_max": max(p.dropped for p in proofs),
        "server_cpu_per_stream_pct": round(100 * pub.cpu_s / (pub.frames_sent * 0.02), 3),
        "process_cpu_pct": round(100 * cpu_all / (seconds + DELAY_MS / 1000), 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} x{_cpus()}".strip(),
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


async def main() -> None:
    """Run the scenarios and print one JSON line each."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--receivers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--only")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    runs = [
        ("shared-clock", 10, False, False),
        ("offsets-jitter", 10, True, False),
        ("scale", args.receivers, True, True),
    ]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = TestBroker(port=free_port(), broker_dir=tmp / "mosquitto")
        broker.start()
        try:
            for name, n, jitter, shared in runs:
                if args.only and name != args.only:
                    continue
                result = await scenario(name, receivers=n, seconds=args.seconds, jitter=jitter,
                                        shared=shared, tmp=tmp, broker=broker)  # fmt: skip
                print(json.dumps(result), flush=True)
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
