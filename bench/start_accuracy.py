"""Start accuracy of scheduled playout: N simulated agents, one programme starting in 5 s.

One process runs a local Mosquitto, N `--sim` agents (fleet-style, one event loop, a
ClockedFileSink each) and a stand-in for the server (loa_testkit/playfix.ServerDouble:
a server-account client that answers clock probes and clip requests, publishes the
desired states, the zone clip and the schedules, and acknowledges proof of play). The
error of each agent is its file sink's recorded start (server time) minus the planned
start. Prints one JSON line with p50/p99/max of |error| in ms.

Usage: python bench/start_accuracy.py [--agents 50] [--lead 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.fleet import Fleet, FleetCredential  # noqa: E402
from edge_agent.output import sim_timing_path  # noqa: E402
from loa_testkit.brokerfix import TestBroker  # noqa: E402
from loa_testkit.playfix import ServerDouble, at, document, item, make_clip  # noqa: E402
from protocol import DesiredState, TopicKind, encode  # noqa: E402
from server.broker.process import free_port  # noqa: E402
from server.broker.render import BrokerAccount, mosquitto_hash  # noqa: E402

ZONE = 1
CLIP_SECONDS = 3.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def sink_starts(data_dir: Path, item_id: str) -> list[float]:
    """start_wall of each placement of an item in an agent's sink timing lines."""
    path = sim_timing_path(data_dir)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["start_wall"] for r in rows if r["event"] == "item" and r["label"] == item_id]


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until check() is true; raise saying what did not happen in time."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def bench(agents: int, lead_s: float, work: Path) -> dict[str, Any]:
    """Run the scenario; return the figures."""
    broker = TestBroker(port=free_port(), broker_dir=work / "mosquitto")
    creds = [FleetCredential(f"bench-{i:03d}", f"pw-{i:03d}-{os.getpid()}") for i in range(agents)]
    for c in creds:  # one hash each, one broker start: no reload per device
        broker.accounts[c.device_id] = BrokerAccount(
            c.device_id, mosquitto_hash(c.password), (ZONE,)
        )
    await asyncio.to_thread(broker.start)
    server = ServerDouble(broker, [c.device_id for c in creds])
    fleet = Fleet(credentials=creds, mqtt_host=broker.host, mqtt_port=broker.port, data_root=work)
    fleet_task = asyncio.create_task(fleet.run())
    try:
        await server.start()
        await wait_until(lambda: all(a.subscribed.is_set() for a in fleet.agents), 60, "connect")
        for c in creds:
            state = DesiredState(version=1, volume=60, zone_ids=[ZONE])
            await server.publish_raw(c.device_id, TopicKind.STATE, encode(state))
        await wait_until(lambda: all(a.runtime.zone_ids for a in fleet.agents), 30, "zones")
        await asyncio.sleep(0.5)  # the zone SUBSCRIBEs are on their way
        clip = make_clip(work / "clip", seconds=CLIP_SECONDS)
        await server.publish_zone_clip(ZONE, clip)
        start = at(lead_s)
        planned = start.timestamp()
        for c in creds:
            doc = document(c.device_id, 1, [item("bench@1", start, [clip])])
            await server.publish_schedule(doc)
        published = planned - time.time()
        await asyncio.sleep(max(0.0, planned + CLIP_SECONDS + 2.0 - time.time()))
        proven = lambda: sum(len(server.unique_events(c.device_id)) for c in creds) == agents  # noqa: E731
        await wait_until(proven, 15, "proof of play")
    finally:
        fleet.request_stop()
        await asyncio.wait_for(fleet_task, 30)
        await server.stop(clear=False)
        await asyncio.to_thread(broker.stop)

    errors_ms: list[float] = []
    for agent in fleet.agents:
        starts = sink_starts(agent.settings.state_dir, "bench@1")
        if starts:
            errors_ms.append((starts[0] - planned) * 1000)
    proof = [
        (e.actual_start - e.planned_start) * 1000
        for c in creds
        for e in server.unique_events(c.device_id).values()
        if e.outcome == "played" and e.actual_start is not None
    ]
    offsets = [
        abs(e.clock_offset_ms)
        for c in creds
        for e in server.unique_events(c.device_id).values()
        if e.clock_offset_ms is not None
    ]
    magnitudes = [abs(x) for x in errors_ms]
    return {
        "benchmark": "start_accuracy",
        "agents": agents,
        "played": len(errors_ms),
        "proof_of_play_received": len(proof),
        "schedule_published_s_before_start": round(published, 2),
        "p50_ms": round(statistics.median(magnitudes), 3) if magnitudes else None,
        "p99_ms": round(percentile(magnitudes, 99), 3) if magnitudes else None,
        "max_ms": round(max(magnitudes), 3) if magnitudes else None,
        "mean_signed_ms": round(statistics.fmean(errors_ms), 3) if errors_ms else None,
        "proof_p99_ms": round(percentile([abs(x) for x in proof], 99), 3) if proof else None,
        "clock_offset_max_ms": round(max(offsets), 3) if offsets else None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--lead", type=float, default=5.0, help="seconds until the start")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("LOA_AGENT_CLIP_HOLDOFF_S", "2")
    with tempfile.TemporaryDirectory(prefix="loa-bench-") as tmp:
        result = asyncio.run(bench(args.agents, args.lead, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
