"""Live audio in sync: mouth-to-speaker latency, inter-device skew, losses, CPU, at scale.

A local Mosquitto, the server's FramePublisher (Opus, QoS 0 on a zone topic) fed a known
signal (noise markers in silence, audio/signals.py), and N simulated receivers
(edge_agent.live.LiveReceiver into ClockedFileSink recordings). Each receiver gets an injected
clock offset (uniform within +-2 s) whose *estimate* comes from a simulated NTP exchange over
the same jittery network (edge_agent.clocksync.OffsetEstimator, --probes probes in its
window), so what reaches the output is the estimate's error; frames are delayed in the
receiver by the injected network delay with jitter before they are pushed. The recordings
are analysed against the source.

Scenarios (one JSON line each):
  shared-clock    10 receivers, own MQTT links, no offset, no jitter
  offsets-jitter  10 receivers, own MQTT links, offsets +-2 s, delay 30 ms + exponential jitter
  scale           --receivers (200) spread over --workers processes (each its own event loop
                  and one MQTT subscription, as each agent is its own process on its own Pi);
                  offsets and jitter as above; the publisher stays in this process. Also
                  reports the receivers' total CPU and each worker loop's lag (how late a
                  10 ms sleeper wakes): lag beyond the sink's 100 ms buffer means underruns
Usage: python bench/live.py [--receivers 200] [--workers 2] [--seconds 8] [--probes 100]
                            [--seed 7] [--only NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import platform
import random
import resource
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio.clock import SystemClock  # noqa: E402
from audio.signals import make_marker, marker_track  # noqa: E402
from edge_agent.clocksync import OffsetEstimator  # noqa: E402
from edge_agent.live import LiveProof  # noqa: E402
from loa_testkit.brokerfix import TestBroker  # noqa: E402
from loa_testkit.livesim import Recording, SimListener, heard_times, skews, summary_ms  # noqa: E402
from protocol import SERVER_USERNAME, LiveJoin, live_topic, parse_live_topic  # noqa: E402
from protocol.mqtt_client import MqttLink  # noqa: E402
from server.broker.process import free_port  # noqa: E402
from server.live.buffer import PcmQueue  # noqa: E402
from server.live.publisher import FramePublisher, command_out  # noqa: E402

DELAY_MS = 500
# The agent's defaults (600 s window, a probe every 30 s, 8 more after each connect) keep ~28
# samples; 100 is a probe every 6 s.
PROBES = 100
SINK_PERIOD = 960


@dataclass(frozen=True)
class Broadcast:
    """What every receiver of one scenario needs to know (picklable, for worker processes)."""

    name: str
    sid: str
    topic: str
    seconds: float
    host: str
    port: int
    server_port: int  # the broker's server listener (the server account's client ids are free)
    password: str  # the server account's: the simulated receivers need no device accounts
    out_dir: Path


@dataclass(frozen=True)
class Device:
    """One simulated receiver: its id, its clock estimate's error and its network's seed."""

    uid: str
    clock_error_s: float
    delay_seed: int | None  # None: no network delay


@dataclass
class Heard:
    """What one receiver produced, for the analysis."""

    recording: Recording
    proof: LiveProof


def network_delay(rng: random.Random) -> float:
    """30 ms base plus an exponential tail (mean 15 ms, capped at 300 ms), each way."""
    return 0.030 + min(rng.expovariate(1 / 0.015), 0.300)


def estimate_error(offset: float, delay: Any, probes: int = PROBES) -> float:
    """Error of an NTP-style estimate of `offset` from `probes` probes over this network."""
    est = OffsetEstimator(window_s=1e9)
    t = 0.0
    for _ in range(probes):
        up, down = delay(), delay()
        t0 = t + offset  # device clock = server clock + offset
        t1 = t2 = t + up
        t3 = t + up + down + offset
        est.add(t0=t0, t1=t1, t2=t2, t3=t3)
        t += 1.0
    result = est.estimate(t3)
    assert result is not None
    return result.offset - (-offset)  # the true server - device offset is -offset


def devices(n: int, *, jitter: bool, rng: random.Random, probes: int) -> list[Device]:
    """N receivers with injected offsets and the errors of their estimates."""
    out = []
    for i in range(n):
        if not jitter:
            out.append(Device(uid=f"b{i:04d}", clock_error_s=0.0, delay_seed=None))
            continue
        offset = rng.uniform(-2, 2)
        error = estimate_error(offset, lambda: network_delay(rng), probes)
        out.append(Device(uid=f"b{i:04d}", clock_error_s=error, delay_seed=rng.getrandbits(32)))
    return out


def listener(b: Broadcast, d: Device) -> SimListener:
    """The simulated receiver of a device."""
    delay = None
    if d.delay_seed is not None:
        rng = random.Random(d.delay_seed)
        delay = lambda: network_delay(rng)  # noqa: E731
    # Writes of one 20 ms frame each (AlsaSink's default period): one wake-up per frame.
    return SimListener(uid=f"{d.uid}-{b.sid[:4]}", out_dir=b.out_dir / b.name / d.uid,
                       clock_error_s=d.clock_error_s, delay=delay,
                       sink_period_frames=SINK_PERIOD)  # fmt: skip


def join_for(b: Broadcast) -> LiveJoin:
    """The live_join every receiver gets."""
    return LiveJoin(id=uuid.uuid4().hex, session_id=b.sid, topic=b.topic,
                    playout_delay_ms=DELAY_MS, expires_at=time.time() + 60)  # fmt: skip


def server_link(b: Broadcast, client_id: str, on_message: Any = None) -> MqttLink:
    """An MQTT link with the server's account."""
    return MqttLink(client_id=client_id, host=b.host, port=b.server_port, username=SERVER_USERNAME,
                    password=b.password,
                    on_message=on_message or (lambda _t, _p: None))  # fmt: skip


async def fan_out(b: Broadcast, listeners: list[SimListener], tag: str) -> MqttLink:
    """One subscription whose frames go to every listener, joined; returns the running link."""
    for li in listeners:
        li.connect(host=b.host, port=b.server_port, password=b.password, username=SERVER_USERNAME)

    def deliver(topic: str, payload: bytes) -> None:
        for li in listeners:
            assert li.receiver is not None
            li.receiver.on_message(topic, payload)

    fan = server_link(b, f"loa-fan-{b.sid}-{tag}", deliver)
    fan.subscribe(b.topic, 0)
    asyncio.get_running_loop().create_task(fan.run())
    await asyncio.wait_for(fan.connected.wait(), 30)
    for li in listeners:
        assert li.receiver is not None
        await li.receiver.handle(join_for(b))
    return fan


async def until_proved(listeners: list[SimListener]) -> None:
    """Wait until every receiver has finished its session."""
    while not all(li.receiver and li.receiver.proofs for li in listeners):  # noqa: ASYNC110
        await asyncio.sleep(0.1)


def heard(listeners: list[SimListener]) -> list[Heard]:
    """The recordings and proofs of finished receivers."""
    return [Heard(li.recordings[0], li.receiver.proofs[0]) for li in listeners if li.receiver]


def worker_main(conn: Connection, b: Broadcast, devs: list[Device]) -> None:
    """A worker process: its receivers on its own event loop (see `scale`)."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_worker(conn, b, devs))


async def _worker(conn: Connection, b: Broadcast, devs: list[Device]) -> None:
    listeners = [listener(b, d) for d in devs]
    fan = await fan_out(b, listeners, str(os.getpid()))
    await asyncio.sleep(0.5)  # the subscription is acknowledged before the first frame
    conn.send("ready")
    lags: list[float] = []
    monitor = asyncio.get_running_loop().create_task(loop_lag(lags))
    cpu0 = time.process_time()
    await until_proved(listeners)
    cpu = time.process_time() - cpu0
    monitor.cancel()
    await fan.close()
    conn.send((cpu, lags, heard(listeners)))


async def loop_lag(lags: list[float], period: float = 0.010) -> None:
    """How late the event loop wakes a 10 ms sleeper, again and again (until cancelled)."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - start - period)


async def scenario(b: Broadcast, devs: list[Device], *, broker: TestBroker) -> dict[str, Any]:
    """A few receivers in this process, each on its own device link."""
    listeners = [listener(b, d) for d in devs]
    server = server_link(b, f"loa-srv-{b.sid}")
    zone, _sid = parse_live_topic(b.topic)
    links = [server]
    for li in listeners:
        li.connect(host=b.host, port=b.port, password=broker.add_device(li.uid, (zone,)))
        assert li.link is not None
        links.append(li.link)
    tasks = [asyncio.create_task(link.run()) for link in links]
    for link in links:
        await asyncio.wait_for(link.connected.wait(), 30)
    await asyncio.sleep(0.5)
    for li in listeners:
        server.publish(command_out(li.uid, join_for(b)))
    deadline = time.monotonic() + 20
    while not all(li.acks for li in listeners) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    cpu0, broker0 = time.process_time(), proc_cpu_s(broker.proc)
    pub, times, marker = await broadcast(b, server)
    await until_proved(listeners)
    cpu_all = time.process_time() - cpu0
    extra = {"process_cpu_pct": pct(cpu_all, b),
             "broker_cpu_pct": pct(proc_cpu_s(broker.proc) - broker0, b)}  # fmt: skip
    for link in links:
        await link.close()
    for task in tasks:
        task.cancel()
    return analyse(b, heard(listeners), pub, times, marker, extra)


async def scale(b: Broadcast, devs: list[Device], *, workers: int,
                broker: TestBroker) -> dict[str, Any]:  # fmt: skip
    """Receivers spread over worker processes; the publisher runs here."""
    ctx = multiprocessing.get_context("spawn")
    procs, conns = [], []
    for k in range(workers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(child, b, devs[k::workers]), daemon=True)
        proc.start()
        child.close()  # so a worker that dies shows up here as EOFError, not as a hang
        procs.append(proc)
        conns.append(parent)
    server = server_link(b, f"loa-srv-{b.sid}")
    task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.connected.wait(), 30)
        for conn in conns:
            assert await asyncio.wait_for(asyncio.to_thread(conn.recv), 120) == "ready"
        cpu0, broker0 = time.process_time(), proc_cpu_s(broker.proc)
        pub, times, marker = await broadcast(b, server)
        results = [await asyncio.wait_for(asyncio.to_thread(c.recv), 120) for c in conns]
        cpu_server_process = time.process_time() - cpu0
        broker_cpu = proc_cpu_s(broker.proc) - broker0
        await server.close()
    finally:
        task.cancel()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    receivers_cpu = sum(cpu for cpu, _, _ in results)
    extra = {
        "workers": workers,
        "worker_loop_lag_ms": summary_ms([lag for _, lags, _ in results for lag in lags]),
        "process_cpu_pct": pct(cpu_server_process, b),
        "broker_cpu_pct": pct(broker_cpu, b),
        "receivers_cpu_pct": pct(receivers_cpu, b),
        "receiver_cpu_each_pct": round(pct(receivers_cpu, b) / max(1, len(devs)), 3),
    }
    return analyse(b, [h for _, _, hs in results for h in hs], pub, times, marker, extra)


async def broadcast(b: Broadcast, server: MqttLink) -> tuple[FramePublisher, list[float], Any]:
    """Publish the marker track in real time; returns the publisher, marker times, marker."""
    marker = make_marker()
    times = [0.5 + 0.5 * k for k in range(int((b.seconds - 1) / 0.5))]
    queue = PcmQueue(max_s=b.seconds + 1)
    queue.put(marker_track(duration_s=b.seconds, marker_times_s=times, marker=marker))
    queue.finish()
    pub = FramePublisher(outlet=server, queue=queue, clock=SystemClock(), topics=lambda: [b.topic])
    await pub.run()
    return pub, times, marker


def proc_cpu_s(proc: Any) -> float:
    """CPU seconds (user + system) a child process (the broker) has used so far."""
    if proc is None:
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(cpu_s: float, b: Broadcast) -> float:
    """CPU seconds as a percentage of one core over the broadcast."""
    return round(100 * cpu_s / (b.seconds + DELAY_MS / 1000), 1)


def analyse(b: Broadcast, results: list[Heard], pub: FramePublisher, times: list[float],
            marker: Any, extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Latency, skew and per-device losses from the recordings."""
    assert pub.started_at is not None
    latencies, per_device, underruns, missing = [], [], 0, 0
    for r in results:
        found, under = heard_times(r.recording, marker)
        underruns += under
        missing += len(times) - len(found)
        if len(found) == len(times):
            per_device.append(found)
            latencies += [h - (pub.started_at + t) for h, t in zip(found, times, strict=True)]
    proofs = [r.proof for r in results]
    return {
        "bench": "live",
        "scenario": b.name,
        "receivers": len(results),
        "seconds": b.seconds,
        "playout_delay_ms": DELAY_MS,
        "latency_ms": summary_ms(latencies),
        "skew_ms": summary_ms(skews(per_device)) if per_device else {},
        "markers_missing": missing,
        "underruns": underruns,
        "frames_sent": pub.frames_sent,
        "frames_concealed_max": max(p.concealed for p in proofs),
        "frames_late_max": max(p.late for p in proofs),
        "frames_dropped_max": max(p.dropped for p in proofs),
        "server_cpu_per_stream_pct": round(100 * pub.cpu_s / (pub.frames_sent * 0.02), 3),
        **extra,
        "machine": f"{platform.machine()} {platform.processor() or ''} x{os.cpu_count()}".strip(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


async def main() -> None:
    """Run the scenarios and print one JSON line each."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--receivers", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--probes", type=int, default=PROBES)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    runs = [
        ("shared-clock", 10, False),
        ("offsets-jitter", 10, True),
        ("scale", args.receivers, True),
    ]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = TestBroker(port=free_port(), broker_dir=tmp / "mosquitto")
        broker.start()
        try:
            for name, n, jitter in runs:
                if args.only and name != args.only:
                    continue
                rng = random.Random(args.seed)
                sid = uuid.uuid4().hex[:12]
                b = Broadcast(name=name, sid=sid, topic=live_topic(rng.randint(1000, 9999), sid),
                              seconds=args.seconds, host=broker.host, port=broker.port,
                              server_port=broker.server_port,
                              password=broker.server_password, out_dir=tmp)  # fmt: skip
                devs = devices(n, jitter=jitter, rng=rng, probes=args.probes)
                if name == "scale":
                    result = await scale(b, devs, workers=args.workers, broker=broker)
                else:
                    result = await scenario(b, devs, broker=broker)
                errors = [abs(d.clock_error_s) for d in devs]
                result["clock_estimate_abs_error_ms"] = summary_ms(errors)
                result["probes"] = args.probes if jitter else 0
                result["seed"] = args.seed
                print(json.dumps(result), flush=True)
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
