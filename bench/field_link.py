"""Figures over a bad 4G link: every agent reaches the broker through its own impairment proxy.

One process runs a local Mosquitto, a stand-in for the server (tests/edge_agent/playfix.
ServerDouble, as bench/start_accuracy.py uses: it publishes schedules and zone clips, answers
clock probes and clip requests and acknowledges proof of play), and `--sim` agents, each
connected through bench/_linkproxy.LinkProxy (delay, jitter, bandwidth cap, stalls, cuts).

Scenarios (one JSON line each; see docs/benchmarks.md):
  clip      a clip to every device of a zone: verified by sha256; server egress in copies
            (the bytes the server publishes, zone topic and per-device requests); time to last
  catchup   a device cut off while 5 schedule versions and 3 clips are published: time to
            the latest version after reconnect, versions applied, clips verified, proof of
            play produced offline received exactly once
  starts    scheduled start error of every agent behind the bad link (the file sink's recorded
            start, as bench/start_accuracy.py measures it)
  live      live audio to 10 agents for --minutes (10): the playout delay chosen from the
            devices' reported probe round trips (server/live/delay.py), and said; dropouts,
            late/concealed frames per device, skew p95 from the recordings (bench/_livefield.py)
  clock     the agent's real ClockSync loop with its default settings on virtual time over
            bench/live.py's jitter profile: skew (spread of the devices' clock errors) p95
  clock-live  the same loop over BAD_4G's jitter (uniform 100 +- 40 ms) on live's timeline:
            the clocks' share of live's skew, probing while live included, and the bound
            each live frame's send time gives (as the agent takes it); again with two hops'
            small delays added to every trip (with_hop_delays), as the real runs have
  clock-idle  clock-live's loop and hop delays, but the session starts after an idle hour
            (clock-live's and live's start right after a warm-up broadcast and its burst)
Usage: python bench/field_link.py [--quick] [--only NAME] [--minutes N] [--delay-ms MS]
                                  [--idle-s S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._clocksim import bad_4g_delay, bad_4g_hops_delay, simulate, skews_ms  # noqa: E402
from bench._linkproxy import BAD_4G, LinkProfile, LinkProxy  # noqa: E402
from bench._livefield import live_scenario  # noqa: E402
from edge_agent.agent import Agent  # noqa: E402
from edge_agent.clips import sha256_of  # noqa: E402
from edge_agent.settings import AgentSettings  # noqa: E402
from loa_testkit.brokerfix import TestBroker  # noqa: E402
from loa_testkit.harness import eventually, make_agent  # noqa: E402
from loa_testkit.playfix import (  # noqa: E402
    Clip,
    ServerDouble,
    at,
    document,
    heard,
    item,
    join_zone,
    make_clip,
)
from protocol.mqtt_client import Outgoing  # noqa: E402
from server.broker.process import free_port  # noqa: E402

ZONE = 5
QUICK = LinkProfile(delay_s=0.1, jitter_s=0.04, rate_bps=384_000, stall_every_s=10, stall_s=1)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, int(-(-len(ordered) * q // 100)))
    return ordered[rank - 1]


def machine() -> str:
    """Where the figures came from, and how busy it was."""
    return (
        f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )


def random_clip(size: int) -> Clip:
    """A clip of random bytes (the device checks sha256 only; the audio is not measured)."""
    data = os.urandom(size)
    return Clip(data, hashlib.sha256(data).hexdigest(), 1.0)


@contextlib.asynccontextmanager
async def fleet(
    broker: TestBroker, n: int, profile: LinkProfile, work: Path, **settings: Any
) -> AsyncIterator[tuple[list[Agent], list[LinkProxy], ServerDouble]]:
    """N agents, each behind its own proxy, and a ServerDouble counting what it publishes."""
    proxies = [await LinkProxy(broker.port, profile, seed=i).start() for i in range(n)]
    agents = []
    for i, proxy in enumerate(proxies):
        uid = f"field-{i:03d}-{os.getpid()}"
        password = broker.add_device(uid, zone_ids=(ZONE,))
        via = dataclasses.replace(broker, port=proxy.port)
        base = {"keepalive_s": 30, "clip_holdoff_s": 10, "clip_retry_max_s": 20}
        agents.append(make_agent(via, uid, work / uid, password=password, **(base | settings)))
    server = ServerDouble(broker, [a.device_id for a in agents])
    server.egress = 0  # type: ignore[attr-defined]
    publish_wait = server.link.publish_wait

    async def counting(msg: Outgoing, *, timeout: float = 10.0) -> None:
        if "/clip" in msg.topic:
            server.egress += len(msg.payload)  # type: ignore[attr-defined]
        await publish_wait(msg, timeout=timeout)

    server.link.publish_wait = counting  # type: ignore[method-assign]
    await server.start()
    tasks = [asyncio.create_task(a.run()) for a in agents]
    try:
        await eventually(lambda: all(a.subscribed.is_set() for a in agents), 120, "connect")
        for a in agents:
            await join_zone(server, a, ZONE)
        yield agents, proxies, server
    finally:
        for a in agents:
            a.request_stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop(clear=True)
        for p in proxies:
            await p.close()


async def clip_scenario(broker: TestBroker, work: Path, quick: bool) -> dict[str, Any]:
    """Scenario 1."""
    n, size, profile = (3, 256 * 1024, QUICK) if quick else (20, 5 * 1024 * 1024, BAD_4G)
    clip = random_clip(size)
    async with fleet(broker, n, profile, work) as (agents, _proxies, server):
        for a in agents:
            doc = document(a.device_id, 1, [item("c@1", at(86400), [clip])])
            await server.publish_schedule(doc)
        await eventually(lambda: all(a.runtime.schedule_version == 1 for a in agents), 120, "docs")
        began = time.monotonic()
        done: dict[str, float] = {}
        publishing = asyncio.create_task(server.publish_zone_clip(ZONE, clip))

        def check() -> bool:
            for a in agents:
                if a.device_id not in done and a.runtime.cache.ready(clip.sha256):
                    done[a.device_id] = time.monotonic() - began
            return len(done) == n

        await eventually(check, 1800, "every device's clip")
        await publishing
        verified = sum(sha256_of(a.runtime.cache.path(clip.sha256)) == clip.sha256 for a in agents)
        return {
            "bench": "field_link", "scenario": "clip", "devices": n, "clip_bytes": size,
            "profile": profile.describe(), "verified": verified,
            "server_egress_copies": round(server.egress / size, 3),  # type: ignore[attr-defined]
            "clip_requests": len(server.clip_requests),
            "seconds_to_first": round(min(done.values()), 1),
            "seconds_to_last": round(max(done.values()), 1), "machine": machine(),
        }  # fmt: skip


async def catchup_scenario(broker: TestBroker, work: Path, quick: bool) -> dict[str, Any]:
    """Scenario 2."""
    profile = QUICK if quick else BAD_4G
    # Real Opus (the offline items are played): a short one to play, then 3 more to fetch.
    seconds = 4 if quick else 60  # ~24 kB or ~360 kB each
    clips = [make_clip(work / "clips", seconds=4 if k == 0 else seconds, freq=300 + 100 * k)
             for k in range(4)]  # fmt: skip
    async with fleet(broker, 1, profile, work, event_resend_s=5, clip_holdoff_s=2) as (
        [agent], [proxy], server,
    ):  # fmt: skip
        applied: list[int] = []
        save = agent.runtime.db.save_schedule

        def recording(*, version: int, document: str, applied_at: float) -> None:
            applied.append(version)
            save(version=version, document=document, applied_at=applied_at)

        agent.runtime.db.save_schedule = recording  # type: ignore[method-assign]
        uid = agent.device_id
        offline = [item(f"o@{k}", at(8 + 5 * k), [clips[0]]) for k in range(3)]
        await server.publish_schedule(document(uid, 1, offline))
        await server.publish_zone_clip(ZONE, clips[0])
        await eventually(lambda: agent.runtime.cache.ready(clips[0].sha256), 120, "first clip")
        proxy.blocked = True
        proxy.cut()
        await eventually(lambda: not agent.link.is_connected, 30, "the cut")
        for version in range(2, 7):  # 5 versions, each adding a clip until 3 are new
            extra = clips[1 : min(version, 4)]
            await server.publish_schedule(document(uid, version, offline, extra_clips=extra))
            if version <= 4:
                await server.publish_zone_clip(ZONE, clips[version - 1])
        await asyncio.sleep(max(0.0, offline[-1].end.timestamp() + 1 - time.time()))
        produced = await agent.runtime.outbox.pending()
        proxy.blocked = False
        back = time.monotonic()
        await eventually(lambda: agent.runtime.schedule_version == 6, 300, "the latest version")
        latest_s = time.monotonic() - back
        await eventually(lambda: all(agent.runtime.cache.ready(c.sha256) for c in clips), 300)
        clips_s = time.monotonic() - back
        await eventually(lambda: agent.runtime.outbox.acknowledged >= produced, 120, "proof")
        await asyncio.sleep(2 * 5)  # a resend period: a duplicate would show now
        verified = sum(sha256_of(agent.runtime.cache.path(c.sha256)) == c.sha256 for c in clips)
        return {
            "bench": "field_link", "scenario": "catchup", "profile": profile.describe(),
            "versions_published_offline": 5, "clips_published_offline": 3,
            "versions_applied": applied, "seconds_to_latest": round(latest_s, 2),
            "seconds_to_all_clips": round(clips_s, 2), "clips_verified": verified,
            "proof_produced_offline": produced,
            "proof_received": len(server.events(uid)),
            "proof_stored": len(server.unique_events(uid)), "machine": machine(),
        }  # fmt: skip


async def starts_scenario(broker: TestBroker, work: Path, quick: bool) -> dict[str, Any]:
    """Scenario 4."""
    n, profile = (3, QUICK) if quick else (10, BAD_4G)
    clip = make_clip(work / "clip", seconds=2)  # a real Opus file: the player decodes it
    async with fleet(broker, n, profile, work) as (agents, _proxies, server):
        for a in agents:
            doc = document(a.device_id, 1, [item("w@1", at(86400), [clip])])
            await server.publish_schedule(doc)
        await server.publish_zone_clip(ZONE, clip)
        await eventually(lambda: all(a.runtime.cache.ready(clip.sha256) for a in agents), 300)
        await asyncio.sleep(20)  # clock probes over the link: the burst and a few more
        start = at(10)
        for a in agents:
            await server.publish_schedule(document(a.device_id, 2, [item("s@1", start, [clip])]))
        await asyncio.sleep(max(0.0, start.timestamp() + clip.duration_s + 2 - time.time()))
        errors = []
        for a in agents:
            lines = heard(a.settings.state_dir, "s@1")
            if lines:
                errors.append(abs(lines[0]["start_wall"] - start.timestamp()) * 1000)
        return {
            "bench": "field_link", "scenario": "starts", "agents": n,
            "profile": profile.describe(), "played": len(errors),
            "p50_ms": round(statistics.median(errors), 3) if errors else None,
            "p99_ms": round(percentile(errors, 99), 3) if errors else None,
            "measured_by": "file sink's recorded start (as bench/start_accuracy.py)",
            "machine": machine(),
        }  # fmt: skip


def _clock_defaults() -> dict[str, float]:
    """ClockSync's arguments as the agent's settings give them by default."""
    fields = AgentSettings.model_fields
    return {
        "interval_s": fields["clock_sync_interval_s"].default,
        "window_s": fields["clock_sync_window_s"].default,
        "fast_interval_s": fields["clock_sync_fast_interval_s"].default,
        "stable_error_s": fields["clock_sync_stable_error_ms"].default / 1000,
        "live_interval_s": fields["clock_sync_live_interval_s"].default,
    }


def clock_scenario(quick: bool) -> dict[str, Any]:
    """Scenario 6: defaults straight from the agent's settings."""
    kwargs = _clock_defaults()
    seconds = 1200 if quick else 3600
    out: dict[str, Any] = {"bench": "field_link", "scenario": "clock", "defaults": kwargs}
    for seed in (1, 2, 7):
        errors, probes = simulate(devices=10, seconds=seconds, seed=seed, **kwargs)
        skews = skews_ms(errors)
        steady = skews[int(300 / 7) :]
        out[f"seed{seed}"] = {
            "skew_p95_ms_from_60s": round(percentile(skews, 95), 3),
            "skew_p95_ms_from_300s": round(percentile(steady, 95), 3),
            "probes_per_hour": round(statistics.fmean(probes) * 3600 / seconds),
        }
    out["machine"] = machine()
    return out


def _live_skews(**simulate_kwargs: Any) -> dict[str, Any]:
    """Per seed (1, 2, 7): skew p95 over the measured session and its first minute, probes.

    Live frames bound the offset from below, as the agent's ClockSync.frame_sent takes them."""
    out: dict[str, Any] = {}
    for seed in (1, 2, 7):
        errors, probes = simulate(
            devices=10, every_s=1.0, seed=seed, frames=True, **simulate_kwargs
        )
        skews = skews_ms(errors)
        out[f"seed{seed}"] = {
            "skew_p95_ms": round(percentile(skews, 95), 3),
            "skew_p95_ms_first_minute": round(percentile(skews[:60], 95), 3),
            "skew_max_ms_first_5s": round(max(skews[:5]), 3),
            "probes_per_device": round(statistics.fmean(probes)),
        }
    return out


def clock_live_scenario() -> dict[str, Any]:
    """Scenario 3's clocks alone: BAD_4G jitter, live_scenario's timeline, on virtual time.

    Connect at 0 s; a 65 s warm-up broadcast from 20 s; the measured one from 102 s to 702 s
    (sampled every second). The real runs add output timing and CPU load on top.
    """
    kwargs = _clock_defaults()
    timeline = {"seconds": 702, "from_s": 102, "live": ((20, 85), (102, 702))}
    return {
        "bench": "field_link", "scenario": "clock-live", "defaults": kwargs,
        **_live_skews(delay=bad_4g_delay, **timeline, **kwargs),
        # bad_4g_hops_delay: what the real runs add to the jitter
        "with_hop_delays": _live_skews(delay=bad_4g_hops_delay, **timeline, **kwargs),
        "machine": machine(),
    }  # fmt: skip


def clock_idle_scenario() -> dict[str, Any]:
    """A 10-minute session after an idle hour, on virtual time (BAD_4G and the hop delays).

    The field's usual start: the devices hold only their idle probing's samples (one every
    `fast_interval_s` on such a link) when the first frame comes, and their live burst
    starts with it.
    """
    kwargs = _clock_defaults()
    return {
        "bench": "field_link", "scenario": "clock-idle", "defaults": kwargs,
        **_live_skews(delay=bad_4g_hops_delay, seconds=4200, from_s=3600,
                      live=((3600, 4200),), **kwargs),
        "machine": machine(),
    }  # fmt: skip


async def run(args: argparse.Namespace, work: Path) -> None:
    """Run the chosen scenarios, printing each line as it is ready."""
    broker = TestBroker(port=free_port(), broker_dir=work / "mosquitto")
    await asyncio.to_thread(broker.start)
    try:
        for name, fn in (("clip", clip_scenario), ("catchup", catchup_scenario),
                         ("starts", starts_scenario)):  # fmt: skip
            if args.only in (None, name):
                result = await fn(broker, work / name, args.quick)
                print(json.dumps(result), flush=True)
        if args.only in (None, "live"):
            minutes = args.minutes or (2 if args.quick else 10)
            result = await live_scenario(broker, work / "live", minutes=minutes, profile=BAD_4G,
                                         zone=ZONE, delay_ms=args.delay_ms,
                                         idle_s=args.idle_s)  # fmt: skip
            print(json.dumps(result | {"machine": machine()}), flush=True)
    finally:
        await asyncio.to_thread(broker.stop)


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small numbers, for tests")
    parser.add_argument(
        "--only",
        choices=["clip", "catchup", "starts", "live", "clock", "clock-live", "clock-idle"],
    )
    parser.add_argument("--minutes", type=float, help="live: broadcast length (default 10)")
    parser.add_argument("--delay-ms", type=int, help="live: override the chosen delay (diagnosis)")
    parser.add_argument(
        "--idle-s", type=float, default=0.0,
        help="live: stay idle this long before the session (660: it starts as after an idle hour)",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.only in (None, "clock"):
        print(json.dumps(clock_scenario(args.quick)), flush=True)
    if args.only in (None, "clock-live"):
        print(json.dumps(clock_live_scenario()), flush=True)
    if args.only in (None, "clock-idle"):
        print(json.dumps(clock_idle_scenario()), flush=True)
    if args.only in ("clock", "clock-live", "clock-idle"):
        return
    with tempfile.TemporaryDirectory(prefix="loa-field-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
