"""Scenario `live` of bench/field_link.py: live audio to agents behind the bad 4G link.

Each device is a real Agent (sim profile: a file sink records what it plays and when) in its
own process, as on its own Pi, reaching the broker only through its own LinkProxy. The delay
is chosen by the server's rule, `server.live.delay.choose_playout_delay`, over the round
trips the devices put in their telemetry (their clock probes, which cross the impaired
links, and the longest stall they saw: a probe in flight, or a gap inside a live stream),
and printed with its basis. Before it, one quiet unmeasured broadcast spanning a stall
stands in for the broadcasts devices in the field heard earlier. A ServerDouble (clock
answers, proof of play) sends every agent a live_join with that delay, and the server's
FramePublisher plays a known signal to the zone: a continuous tone (so a gap is audible and
measurable) with a noise marker every second (so each device's output can be placed in
time).

What is measured, from each agent's file sink recording (WAV + timing lines) and counters:
  dropouts   stretches of at least DROPOUT_MIN_S, inside the broadcast, where the device's
             output is more than QUIET_DB below the source tone or where it played nothing
             (a sink underrun); one dropout per stretch, however long. Those in which the
             sink ran dry are also counted apart: the device's CPU (here: a loaded machine)
             rather than the link
  frames     the receiver's own counters (played, concealed, late, dropped) from its proof
  skew       per marker heard by every device: latest minus earliest heard instant (wall
             clock, all agents share the machine's); markers found by cross-correlation;
             also for the first minute alone (the clocks are youngest then)
  clock      per device: probes sent and answered, clock steps seen, samples in the
             estimator's window, its error bound (half the fastest round trip: it cannot
             tell an asymmetric link), the estimate's true error at the end (the machine's
             clock is the truth), and its output error at its first and last marker
  error      each heard marker minus the instant it was due (its frame's capture stamp,
             which moves on if the publisher skips ahead, + the playout delay)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from audio.clock import SystemClock
from audio.pcm import SAMPLE_RATE, Pcm
from audio.signals import find_markers, make_marker
from bench._linkproxy import LinkProfile, LinkProxy
from edge_agent.agent import Agent
from edge_agent.live import LiveProof
from edge_agent.output import SIM_DIR, SIM_TIMING, SIM_WAV
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import Observer, eventually, make_agent
from loa_testkit.livesim import Recording, load_recording, summary_ms
from loa_testkit.playfix import ServerDouble
from protocol import (
    Ack,
    DesiredState,
    LiveJoin,
    PlayEvent,
    Telemetry,
    TopicKind,
    encode,
    live_topic,
)
from protocol.liveframe import decode_frame
from protocol.mqtt_client import Outgoing
from server.live.buffer import PcmQueue
from server.live.delay import DelayChoice, choose_playout_delay
from server.live.publisher import (
    OPUS_LOOKAHEAD_S,
    FramePublisher,
    LiveOutlet,
    command_out,
    frames_per_send,
)
from server.settings import ServerSettings

FRAME_MS = int(  # as the server sends them; LOA_LIVE_FRAME_MS=20 to compare
    os.environ.get("LOA_LIVE_FRAME_MS", ServerSettings.model_fields["live_frame_ms"].default)
)
FRAME = SAMPLE_RATE * FRAME_MS // 1000
SEND_MS = int(  # frames per send, as the server groups them; LOA_LIVE_SEND_MS=20 for singles
    os.environ.get("LOA_LIVE_SEND_MS", ServerSettings.model_fields["live_send_ms"].default)
)
GROUP = frames_per_send(send_ms=SEND_MS, frame_ms=FRAME_MS)
SPACING_S = 1.0  # a marker every second
TONE_HZ = 440.0
TONE_AMPLITUDE = 0.1 * 32767  # -20 dBFS
BIN_S = 0.010
DROPOUT_MIN_S = 0.040  # two whole frames: one concealed frame is not heard as a gap
QUIET_DB = 20.0
EDGE_S = 1.0  # the first and last second of the broadcast are not judged
WARM_UP_GAP_S = 5.0  # the measured broadcast starts this much after the warm-up's end, at least
STALL_REPORT_S = 12.0  # two telemetry intervals: a probe caught in the stall is reported
REPORTS = 2  # link reports per device before choosing (the second covers the connect burst)


@dataclass(frozen=True)
class Source:
    """The signal published: samples, marker start times (s from frame 0), the marker."""

    pcm: Pcm
    times: list[float]
    marker: Pcm


def source(seconds: float) -> Source:
    """A tone for `seconds` with a marker every SPACING_S (replacing the tone under it)."""
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    pcm = (TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
    marker = make_marker()
    times = [SPACING_S * k for k in range(1, int((seconds - 0.5) / SPACING_S) + 1)]
    for at in times:
        start = round(at * SAMPLE_RATE)
        pcm[start : start + len(marker)] = marker
    return Source(pcm, times, marker)


async def loop_lag(lags: list[float], period: float = 0.010) -> None:
    """How late the event loop wakes a 10 ms sleeper, again and again (until cancelled)."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - start - period)


@contextlib.asynccontextmanager
async def observed(broker: TestBroker, uids: list[str]) -> AsyncIterator[Observer]:
    """A server-account client reading the devices' telemetry and acks."""
    obs = Observer(broker, uids[0], also=uids[1:])
    await obs.start()
    try:
        yield obs
    finally:
        await obs.stop()


def link_reports(obs: Observer, uids: list[str]) -> dict[str, list[Telemetry]]:
    """Each device's telemetry samples that carry link round trips, oldest first."""
    return {
        uid: [t for t in obs.of(TopicKind.TELEMETRY, device_id=uid) if t.link_rtt_p95_ms]
        for uid in uids
    }


async def warm_up(
    server: ServerDouble, obs: Observer, uids: list[str], zone: int, seconds: float
) -> None:
    """A quiet broadcast of `seconds` (500 ms delay) that every device plays to its end."""
    sid = uuid.uuid4().hex[:12]
    topic = live_topic(zone, sid)
    await join_all(server, obs, uids, {
        "session_id": sid, "topic": topic, "frame_ms": FRAME_MS, "playout_delay_ms": 500,
        "expires_at": time.time() + 120,
    })  # fmt: skip
    queue = PcmQueue(max_s=seconds + 1)
    queue.put(np.zeros(round(seconds * SAMPLE_RATE), np.int16))
    queue.finish()
    pub = FramePublisher(outlet=server.link, queue=queue, clock=SystemClock(spin_s=0),
                         topics=lambda: [topic], frame_samples=FRAME,
                         frames_per_send=GROUP)  # fmt: skip
    await pub.run()
    await eventually(lambda: all(_live_events(server, u) for u in uids), 60, "warm-up proofs")


async def choose(obs: Observer, uids: list[str]) -> tuple[DelayChoice, dict[str, Telemetry]]:
    """Wait for the devices' link reports, then choose the delay as the server would."""
    await eventually(
        lambda: all(len(r) >= REPORTS for r in link_reports(obs, uids).values()),
        120,
        "every device's link report",
    )
    latest = {uid: r[-1] for uid, r in link_reports(obs, uids).items()}
    reports = [(u, t.link_rtt_p95_ms) for u, t in latest.items()]
    longest = [(u, t.link_rtt_max_ms) for u, t in latest.items()]
    return choose_playout_delay(reports, longest), latest


async def join_all(
    server: ServerDouble, obs: Observer, uids: list[str], join: dict[str, Any]
) -> None:
    """Send every device its live_join and wait until each has acknowledged it."""
    ids = {}
    for uid in uids:
        msg = LiveJoin(id=uuid.uuid4().hex, **join)
        ids[uid] = msg.id
        server.link.publish(command_out(uid, msg))

    def acked() -> bool:
        acks = {uid: obs.of(TopicKind.ACK, device_id=uid) for uid in uids}
        return all(any(isinstance(a, Ack) and a.id == ids[u] for a in acks[u]) for u in uids)

    await eventually(acked, 60, "every device's live_join ack")
    refused = [a for u in uids for a in obs.of(TopicKind.ACK, device_id=u)
               if isinstance(a, Ack) and a.id == ids[u] and not a.ok]  # fmt: skip
    if refused:
        raise RuntimeError(f"live_join refused: {refused}")


class Tap:
    """The publisher's outlet, noting each frame's capture stamp (frame i holds source samples
    i*FRAME..): when the publisher falls behind it skips ahead, and the audio after a skip is
    due later than its place in the source says."""

    def __init__(self, link: LiveOutlet) -> None:
        self.link = link
        self.stamps: list[float] = []

    def publish(self, msg: Outgoing) -> int:
        """Note the stamp, then publish."""
        self.stamps.append(decode_frame(msg.payload).capture_time)
        return self.link.publish(msg)

    def due(self, src: Source, delay_s: float) -> np.ndarray[Any, Any]:
        """When each marker must be heard: its frame's stamp + the Opus look-ahead + delay."""
        out = []
        for t in src.times:
            pos = round(t * SAMPLE_RATE)
            i, rest = divmod(pos, FRAME)
            stamp = self.stamps[i] if i < len(self.stamps) else math.nan
            out.append(stamp + OPUS_LOOKAHEAD_S + rest / SAMPLE_RATE + delay_s)
        return np.asarray(out)


def marker_hits(pcm: Pcm, marker: Pcm, chunk: int = 20 * SAMPLE_RATE) -> list[float]:
    """Marker start offsets (samples) in a long recording, found a chunk at a time."""
    out: list[float] = []
    m = len(marker)
    for start in range(0, len(pcm), chunk):
        part = pcm[start : start + chunk + m]
        out += [start + p for p in find_markers(part, marker) if p < chunk]
    return out


def analyse_device(rec: Recording, src: Source, *, span: tuple[float, float, float],
                   due: np.ndarray[Any, Any]) -> dict[str, Any]:  # fmt: skip
    """Dropouts, underruns and heard markers (wall times by marker index) of one device."""
    pcm, lines = load_recording(rec)
    segments = [(x["sample_offset"], x["start_wall"]) for x in lines if x["event"] == "segment"]
    bounds = [o for o, _ in segments[1:]] + [len(pcm)]
    n_bins = int((span[1] - span[0]) / BIN_S)
    loud = np.zeros(n_bins, dtype=bool)
    played = np.zeros(n_bins, dtype=bool)
    quiet = TONE_AMPLITUDE / math.sqrt(2) * 10 ** (-QUIET_DB / 20)
    block = round(BIN_S * SAMPLE_RATE)
    heard: dict[int, float] = {}
    for (offset, wall), end in zip(segments, bounds, strict=True):
        seg = pcm[offset:end].astype(np.float64)
        blocks = len(seg) // block
        rms = np.sqrt(np.mean(seg[: blocks * block].reshape(blocks, block) ** 2, axis=1))
        idx = np.round((wall + np.arange(blocks) * BIN_S - span[0]) / BIN_S).astype(int)
        ok = (idx >= 0) & (idx < n_bins)
        loud[idx[ok]] |= rms[ok] >= quiet
        played[idx[ok]] = True
        for pos in marker_hits(pcm[offset:end], src.marker):
            at = wall + pos / SAMPLE_RATE
            k = int(np.nanargmin(np.abs(due - at)))
            if abs(at - due[k]) < SPACING_S / 4:
                heard[k] = at
    gaps = _runs(~loud)
    # (start s into the broadcast, length s, whether the sink ran dry in it: the device's
    # CPU, not the link, is then to blame)
    dropouts = [(round(a * BIN_S + span[0] - span[2], 2), round(n * BIN_S, 2),
                 not played[a : a + n].all())
                for a, n in gaps if n * BIN_S >= DROPOUT_MIN_S]  # fmt: skip
    # A segment is a (re)start of the sink: the session's first, then one per underrun
    # (the warm-up broadcast's ended before this one).
    ours = sum(1 for _, wall in segments if wall >= span[2] - WARM_UP_GAP_S)
    return {"dropouts": dropouts, "underruns": max(0, ours - 1), "heard": heard}


def _runs(mask: np.ndarray[Any, Any]) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@dataclass(frozen=True)
class Seat:
    """What one device's worker process needs (picklable)."""

    uid: str
    password: str
    host: str
    port: int  # the broker's device listener; the worker's proxy forwards to it
    data_dir: Path
    profile: LinkProfile
    seed: int
    zone: int


def worker_main(conn: Connection, seat: Seat) -> None:
    """One device: its link proxy and its Agent on their own event loop, as on its own Pi."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_worker(conn, seat))


async def _worker(conn: Connection, seat: Seat) -> None:
    proxy = await LinkProxy(seat.port, seat.profile, seed=seat.seed).start()
    via = TestBroker(port=proxy.port, broker_dir=seat.data_dir, host=seat.host)
    # Reports every 5 s, so the delay can be chosen soon after the connect burst; default
    # clock probing otherwise (scenario 6 is about its accuracy).
    agent = make_agent(via, seat.uid, seat.data_dir, password=seat.password, keepalive_s=30,
                       telemetry_interval_s=5)  # fmt: skip
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.runtime.zone_ids == {seat.zone}, 120, "the zone")
        conn.send("ready")
        await asyncio.to_thread(conn.recv)  # "stop", once the session is over
        proofs = [dataclasses.asdict(p) for p in agent.runtime.live.proofs]
        conn.send((proofs, _clock_error_ms(agent), proxy.connections, _clock_counts(agent)))
    finally:
        agent.request_stop()
        await asyncio.gather(task, return_exceptions=True)
        await proxy.close()


@contextlib.asynccontextmanager
async def workers(seats: list[Seat]) -> AsyncIterator[list[Connection]]:
    """A process per device; each has said "ready" (connected, in its zone) on return."""
    # Forked from a server that has imported the agent once: ten interpreters importing it
    # each would take a minute on a loaded machine.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["bench._livefield"])
    procs, conns = [], []
    for seat in seats:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(child, seat), daemon=True)
        proc.start()
        child.close()  # so a worker that dies shows up here as EOFError, not as a hang
        procs.append(proc)
        conns.append(parent)
    try:
        for conn in conns:
            assert await asyncio.wait_for(asyncio.to_thread(conn.recv), 180) == "ready"
        yield conns
    finally:
        for conn in conns:
            conn.close()  # a worker still waiting for "stop" reads EOF and stops its agent
        for proc in procs:
            await asyncio.to_thread(proc.join, 15)
            if proc.is_alive():
                proc.kill()


def seat_all(broker: TestBroker, work: Path, n: int, profile: LinkProfile, zone: int) -> list[Seat]:
    """Broker accounts for n devices of the zone (each reloads the broker: not on the loop)."""
    seats = []
    for i in range(n):
        uid = f"live-{i:03d}-{os.getpid()}"
        password = broker.add_device(uid, zone_ids=(zone,))
        seats.append(Seat(uid=uid, password=password, host=broker.host, port=broker.port,
                          data_dir=work / uid, profile=profile, seed=i, zone=zone))  # fmt: skip
    return seats


async def live_scenario(broker: TestBroker, work: Path, *, minutes: float,
                        profile: LinkProfile, zone: int, devices: int = 10,
                        delay_ms: int | None = None,
                        idle_s: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Scenario 3 (see module doc); `delay_ms` overrides the chosen delay (diagnosis only).

    `idle_s`: the devices stay idle this long after the warm-up. Beyond the clock window
    (600 s) and LIVE_QUIET_S, the session starts as one after an idle hour does: from the
    idle probing's samples alone, with its own live burst.
    """
    began = time.monotonic()
    seconds = minutes * 60
    src = source(seconds)
    seats = await asyncio.to_thread(seat_all, broker, work, devices, profile, zone)
    uids = [s.uid for s in seats]
    server = ServerDouble(broker, uids)
    await server.start()
    try:
        for uid in uids:  # retained: each agent reads its zone as it connects
            state = DesiredState(version=1, volume=60, zone_ids=[zone])
            await server.publish_raw(uid, TopicKind.STATE, encode(state))
        async with observed(broker, uids) as obs, workers(seats) as conns:
            await choose(obs, uids)  # every device is online and has reported its link
            if profile.stall_every_s:
                # Devices in the field have been online for hours and heard broadcasts
                # through hand-overs; their reports say so. One short broadcast spanning a
                # stall stands in for that past (not measured), then reports after it.
                await warm_up(server, obs, uids, zone, profile.stall_every_s + 5)
                await asyncio.sleep(STALL_REPORT_S)
            if idle_s:
                print(f"live: the devices stay idle for {idle_s:.0f} s", flush=True)
                await asyncio.sleep(idle_s)
            choice, latest = await choose(obs, uids)
            delay = delay_ms or choice.delay_ms
            print(f"live: the server chose {choice.delay_ms} ms: {choice.basis}", flush=True)
            sid = uuid.uuid4().hex[:12]
            topic = live_topic(zone, sid)
            await join_all(server, obs, uids, {
                "session_id": sid, "topic": topic, "frame_ms": FRAME_MS, "playout_delay_ms": delay,
                "expires_at": time.time() + 120,
            })  # fmt: skip
            queue = PcmQueue(max_s=seconds + 1)
            queue.put(src.pcm)
            queue.finish()
            # The stamps come from the frame timeline, not the send instant: no need to spin.
            tap = Tap(server.link)
            pub = FramePublisher(outlet=tap, queue=queue, clock=SystemClock(spin_s=0),
                                 topics=lambda: [topic], frame_samples=FRAME,
                                 frames_per_send=GROUP)  # fmt: skip
            lags: list[float] = []
            monitor = asyncio.create_task(loop_lag(lags))
            setup_s = time.monotonic() - began
            await pub.run()
            monitor.cancel()
            # The proof of play comes through the link, as the real server gets it.
            proofs = 2 if profile.stall_every_s else 1  # the warm-up's, then this one's
            await eventually(lambda: all(len(_live_events(server, u)) >= proofs for u in uids),
                             delay / 1000 + 60, "every device's proof of the session")  # fmt: skip
            for conn in conns:
                conn.send("stop")
            back = [await asyncio.wait_for(asyncio.to_thread(c.recv), 60) for c in conns]
            link = [(latest[u].link_rtt_ms, latest[u].link_rtt_p95_ms, latest[u].link_rtt_max_ms)
                    for u in uids]  # fmt: skip
    finally:
        await server.stop(clear=True)
    assert pub.started_at is not None
    started, delay_s = pub.started_at, delay / 1000
    # (from, to, where the broadcast is heard from): wall clock
    span = (started + delay_s + EDGE_S, started + seconds + delay_s - EDGE_S, started + delay_s)
    due = tap.due(src, delay_s)
    recs = [Recording(work / u / SIM_DIR / SIM_WAV, work / u / SIM_DIR / SIM_TIMING) for u in uids]
    results = [await asyncio.to_thread(analyse_device, r, src, span=span, due=due)
               for r in recs]  # fmt: skip
    return report(
        uids=uids, due=due, results=results, proofs=[LiveProof(**b[0][-1]) for b in back],
        link=link, choice=choice, delay=delay, minutes=minutes, profile=profile, pub=pub,
        clock_errors=[b[1] for b in back], connections=[b[2] for b in back],
        clocks=[b[3] for b in back],
        lags=lags,
    ) | {"idle_before_s": idle_s, "setup_s": round(setup_s, 1),
         "wall_s": round(time.monotonic() - began, 1)}  # fmt: skip


def _live_events(server: ServerDouble, uid: str) -> list[PlayEvent]:
    """The live proof-of-play events a device has sent."""
    return [e for e in server.events(uid) if e.kind == "live"]


def _clock_error_ms(agent: Agent) -> float:
    """The agent's estimate of server - monotonic minus the truth (the machine's wall clock)."""
    truth = time.time() - time.monotonic()
    return round((agent.runtime.sync.offset() - truth) * 1000, 3)


def _first_last_ms(heard: dict[int, float], due: np.ndarray[Any, Any]) -> list[float]:
    """A device's output error (heard - due, ms) at its first and last heard marker."""
    if not heard:
        return []
    first, last = min(heard), max(heard)
    return [round((heard[k] - due[k]) * 1000, 3) for k in (first, last)]


def _clock_counts(agent: Agent) -> dict[str, Any]:
    """What the agent's clock sync did: probes, answers, steps seen, samples and error bound."""
    sync = agent.runtime.sync
    estimate = sync.estimate
    return {
        "probes": sync.probes_sent, "answers": sync.answers, "jumps": sync.jumps,
        "samples": None if estimate is None else estimate.samples,
        "error_bound_ms": None if estimate is None else round(estimate.error * 1000, 3),
    }  # fmt: skip


def report(*, uids: list[str], due: np.ndarray[Any, Any], results: list[dict[str, Any]],
           proofs: list[LiveProof], link: list[tuple[float | None, float | None, float | None]],
           choice: DelayChoice, delay: int, minutes: float, profile: LinkProfile,
           pub: FramePublisher, clock_errors: list[float],
           connections: list[int], lags: list[float],
           clocks: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The JSON line."""
    skews, errors, first_minute = [], [], []
    every = 0
    for k, when in enumerate(due):
        times = [r["heard"][k] for r in results if k in r["heard"]]
        errors += [h - when for h in times]
        if len(times) == len(results):
            every += 1
            skews.append(max(times) - min(times))
            if when - due[0] < 60:
                first_minute.append(max(times) - min(times))
    per_device = []
    for uid, r, p, (rtt, p95, most), err, conns, clock in zip(
        uids, results, proofs, link, clock_errors, connections, clocks, strict=True
    ):
        per_device.append({
            "uid": uid, "rtt_ms": rtt, "rtt_p95_ms": p95, "rtt_max_ms": most,
            "dropouts": len(r["dropouts"]),
            "dropouts_sink_dry": sum(dry for _, _, dry in r["dropouts"]),
            "dropout_s": round(sum(n for _, n, _ in r["dropouts"]), 2),
            "longest_dropouts": sorted(([a, n] for a, n, _ in r["dropouts"]),
                                       key=lambda d: -d[1])[:4],
            "underruns": r["underruns"],
            "markers_missing": len(due) - len(r["heard"]), "played": p.played,
            "concealed": p.concealed, "late": p.late, "dropped": p.dropped,
            "outcome": p.outcome, "clock_error_ms": err, "connections": conns,
            "clock": clock, "output_error_first_last_ms": _first_last_ms(r["heard"], due),
        })  # fmt: skip
    worst = max(d["dropouts"] for d in per_device) * 10 / minutes
    skew_p95 = summary_ms(skews).get("p95") if skews else None
    return {
        "bench": "field_link", "scenario": "live", "devices": len(uids), "minutes": minutes,
        "profile": profile.describe(),
        "delay_chosen_ms": choice.delay_ms, "delay_basis": choice.basis,
        "playout_delay_ms": delay, "delay_overridden": delay != choice.delay_ms,
        "dropout_definition": (
            f">= {DROPOUT_MIN_S * 1000:.0f} ms inside the broadcast (first and last {EDGE_S:g} s "
            f"not judged) where the output is > {QUIET_DB:g} dB below the source tone or nothing "
            "plays; one per stretch"
        ),
        "dropouts_per_10min_max": round(worst, 2),
        "dropouts_total": sum(d["dropouts"] for d in per_device),
        "dropouts_total_sink_dry": sum(d["dropouts_sink_dry"] for d in per_device),
        "skew_ms": summary_ms(skews), "skew_ms_first_minute": summary_ms(first_minute),
        "markers": len(due), "markers_heard_by_all": every,
        "output_error_ms": summary_ms(errors),
        "frames_sent": pub.frames_sent, "publisher_skipped": pub.skipped_frames,
        "concealed_total": sum(p.concealed for p in proofs),
        "late_total": sum(p.late for p in proofs),
        "publisher_loop_lag_ms": summary_ms(lags),
        "bounds_met": {"dropouts_per_10min<=1": worst <= 1,
                       "skew_p95<=1ms": skew_p95 is not None and skew_p95 <= 1.0},
        "per_device": per_device,
        "clock_error_ms_spread": round(max(clock_errors) - min(clock_errors), 3),
        "clock_error_abs_ms_median": round(statistics.median(abs(e) for e in clock_errors), 3),
    }  # fmt: skip
