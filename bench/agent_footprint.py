"""Memory and CPU of one real `loa-agent run --sim` process: idle, playing a clip, receiving live.

A local Mosquitto, a stand-in for the server (tests/edge_agent/playfix.ServerDouble: clock
answers, the desired state, a zone clip and a schedule) and the server's FramePublisher for a
live session. The agent is its own process (`python -m edge_agent run --sim`, as on a Pi with
the file sink instead of ALSA); this process reads its RSS (VmRSS, and the peak VmHWM) and CPU
time from /proc, from outside, over each state.

Prints one JSON line. Usage: python bench/agent_footprint.py [--seconds 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio.clock import SystemClock  # noqa: E402
from audio.pcmformat import SAMPLE_RATE  # noqa: E402
from audio.signals import make_marker, marker_track  # noqa: E402
from bench._http import proc_cpu_s  # noqa: E402
from bench._speed import reference_cpu_ms  # noqa: E402
from edge_agent.output import sim_timing_path  # noqa: E402
from loa_testkit.brokerfix import TestBroker  # noqa: E402
from loa_testkit.harness import agent_env, eventually, start_process  # noqa: E402
from loa_testkit.playfix import ServerDouble, at, document, item, make_clip  # noqa: E402
from protocol import DesiredState, LiveJoin, TopicKind, encode, live_topic  # noqa: E402
from server.broker.process import free_port  # noqa: E402
from server.live.buffer import PcmQueue  # noqa: E402
from server.live.publisher import FramePublisher, command_out, frames_per_send  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

ZONE = 9
FRAME_MS = int(  # as the server sends them; LOA_LIVE_FRAME_MS=20 to compare
    os.environ.get("LOA_LIVE_FRAME_MS", ServerSettings.model_fields["live_frame_ms"].default)
)
SEND_MS = int(  # audio per send, as the server groups frames; LOA_LIVE_SEND_MS=20 for singles
    os.environ.get("LOA_LIVE_SEND_MS", ServerSettings.model_fields["live_send_ms"].default)
)
GROUP = frames_per_send(send_ms=SEND_MS, frame_ms=FRAME_MS)


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident memory of a process in MB (VmRSS now, or VmHWM: the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} missing for pid {pid}")


def sink_bytes(data_dir: Path) -> int:
    """What the agent's file sink has written so far (proof that the state produced audio)."""
    wav = sim_timing_path(data_dir).parent / "output.wav"
    return wav.stat().st_size if wav.exists() else 0


async def measure(
    pid: int, seconds: float, data_dir: Path, server: ServerDouble
) -> dict[str, float]:
    """RSS (mean of 1 s samples and max), CPU % of one core, audio written, clock probes."""
    cpu0, t0, out0 = proc_cpu_s(pid), time.monotonic(), sink_bytes(data_dir)
    probes0 = server.time_requests
    samples = []
    while time.monotonic() - t0 < seconds:
        samples.append(rss_mb(pid))
        await asyncio.sleep(1.0)
    cpu = proc_cpu_s(pid) - cpu0
    return {
        "rss_mb": round(sum(samples) / len(samples), 1),
        "rss_max_mb": round(max(samples), 1),
        "cpu_pct": round(100 * cpu / (time.monotonic() - t0), 2),
        "sink_bytes_written": sink_bytes(data_dir) - out0,
        "clock_probes": server.time_requests - probes0,
    }


async def bench(seconds: float, work: Path) -> dict[str, Any]:
    """Run the three states; return the figures."""
    broker = TestBroker(port=free_port(), broker_dir=work / "mosquitto")
    await asyncio.to_thread(broker.start)
    uid = f"foot-{os.getpid()}"
    password = broker.add_device(uid, zone_ids=(ZONE,))
    server = ServerDouble(broker, [uid])
    await server.start()
    env = agent_env(broker, uid, password, work / "agent")
    env["LOA_AGENT_KEEPALIVE_S"] = "60"
    proc = await start_process("run", "--sim", env=env, cwd=work, log_file=work / "agent.log")
    result: dict[str, Any] = {"bench": "agent_footprint", "seconds_per_state": seconds}
    try:
        await eventually(lambda: server.time_requests > 0, 60, "the agent's first clock probe")
        state = DesiredState(version=1, volume=60, zone_ids=[ZONE])
        await server.publish_raw(uid, TopicKind.STATE, encode(state))
        await asyncio.sleep(5)  # the connect burst of clock probes and the zone subscription
        result["idle"] = await measure(proc.pid, seconds, work / "agent", server)

        clip = make_clip(work / "clip", seconds=seconds + 10)
        await server.publish_schedule(document(uid, 1, [item("f@1", at(8), [clip])]))
        await server.publish_zone_clip(ZONE, clip)
        await asyncio.sleep(8.5)  # the item starts 8 s after it was scheduled
        result["playing"] = await measure(proc.pid, seconds, work / "agent", server)
        await asyncio.sleep(12)  # the clip ends

        sid = uuid.uuid4().hex[:12]
        topic = live_topic(ZONE, sid)
        join = LiveJoin(id=uuid.uuid4().hex, session_id=sid, topic=topic, playout_delay_ms=500,
                        frame_ms=FRAME_MS,
                        expires_at=time.time() + 60)  # fmt: skip
        server.link.publish(command_out(uid, join))
        await asyncio.sleep(1.0)
        queue = PcmQueue(max_s=seconds + 5)
        marker = make_marker()
        queue.put(marker_track(duration_s=seconds + 3, marker_times_s=[1.0], marker=marker))
        queue.finish()
        pub = FramePublisher(outlet=server.link, queue=queue, clock=SystemClock(),
                             topics=lambda: [topic],
                             frame_samples=SAMPLE_RATE * FRAME_MS // 1000,
                             frames_per_send=GROUP)  # fmt: skip
        sending = asyncio.create_task(pub.run())
        await asyncio.sleep(1.5)
        result["live"] = await measure(proc.pid, seconds, work / "agent", server)
        await sending
        result["live"]["frames_sent"] = pub.frames_sent
        result["rss_peak_mb"] = round(rss_mb(proc.pid, "VmHWM"), 1)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        await server.stop()
        await asyncio.to_thread(broker.stop)
    log = (work / "agent.log").read_text(errors="replace")
    result["agent_log_errors"] = sum("ERROR" in line for line in log.splitlines())
    result["machine"] = (
        f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return result


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="5 s per state")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    before = reference_cpu_ms()  # the machine's speed now: CPU figures need it (_speed.py)
    with tempfile.TemporaryDirectory(prefix="loa-foot-") as tmp:
        result = asyncio.run(bench(5.0 if args.quick else args.seconds, Path(tmp)))
    result["reference_cpu_ms"] = [before, reference_cpu_ms()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
