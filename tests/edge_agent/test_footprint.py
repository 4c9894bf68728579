"""The agent's idle footprint: heavy modules load where they are used, not at start."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from edge_agent.silence import HORNS_DROP_DB
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import ROOT, agent_env, eventually, new_device_id, run, start_process
from loa_testkit.playfix import at, document, heard, item, make_clip, serving
from protocol import DesiredState, TopicKind, encode

# Each ~20 MB resident (numpy, PyAV) or a chain of pure-Python packages (ffmpeg-python with
# `past`/`future`, pydub): none is needed until audio plays (bench/agent_footprint.py
# measures the difference).
HEAVY = {"numpy", "av", "ffmpeg", "past", "future", "pydub"}

PROBE = """
import json, sys
import edge_agent.cli, edge_agent.agent, edge_agent.runtime, edge_agent.player
import edge_agent.live, edge_agent.relay, edge_agent.silence, edge_agent.selftest
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def test_starting_the_agent_does_not_load_numpy_pyav_or_ffmpeg() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert not HEAVY & loaded
    assert {"edge_agent", "audio", "pydantic"} <= loaded  # the probe did import the agent


def _imported(log: Path) -> set[str]:
    """Top-level packages the process imported so far (PYTHONPROFILEIMPORTTIME's lines)."""
    lines = log.read_text(errors="replace").splitlines()
    names = (line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:"))
    return {name.split(".")[0] for name in names}


def test_an_idle_agent_process_loads_numpy_and_pyav_with_its_first_item(
    broker: TestBroker, tmp_path: Path
) -> None:
    """The real `loa-agent run --sim`, connected and holding its state, a schedule and a clip."""
    uid = new_device_id()
    zone = 9
    password = broker.add_device(uid, zone_ids=(zone,))
    data = tmp_path / "data"
    env = agent_env(broker, uid, password, data)
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # the interpreter logs every import to stderr
    log = tmp_path / "agent.log"
    clip = make_clip(tmp_path / "clip", seconds=1.0)

    async def scenario() -> tuple[set[str], set[str]]:
        async with serving(broker, uid) as server:
            proc = await start_process("run", "--sim", env=env, cwd=tmp_path, log_file=log)
            try:
                await eventually(lambda: server.time_requests > 0, 30, "the first clock probe")
                state = DesiredState(version=1, volume=60, zone_ids=[zone])
                await server.publish_raw(uid, TopicKind.STATE, encode(state))
                later = item("later@1", at(3600), [clip])  # held, far from its instant
                await server.publish_schedule(document(uid, 1, [later]))
                await server.publish_zone_clip(zone, clip)
                held = f"{clip.sha256}.opus"
                await eventually(lambda: any(data.rglob(held)), 20, "the clip in the cache")
                await asyncio.sleep(1.0)  # idle: clock probes, state, schedule and clip held
                idle = _imported(log)
                await server.publish_schedule(document(uid, 2, [item("now@2", at(3), [clip])]))
                await eventually(lambda: bool(heard(data, "now@2")), 30, "the item played")
                return idle, _imported(log)
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 20)

    idle, played = run(scenario(), timeout=90)
    assert "edge_agent" in idle  # the import log is read
    assert not HEAVY & idle, sorted(HEAVY & idle)
    # The same probe sees them load once the item plays: the check above can fail.
    assert {"numpy", "av"} <= played


ANALYSIS = """
import json, sys
import edge_agent.cli, edge_agent.agent
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("audio", "numpy")))))
"""


def test_starting_the_agent_does_not_load_the_self_test_analysis() -> None:
    out = subprocess.run(
        [sys.executable, "-c", ANALYSIS], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    # The sweep analysis and the simulated acoustics load with the first self-test, sim
    # recording or horn check (issue 17), not with every agent.
    assert not {"audio.selftest", "audio.acoustic", "audio.signals"} & loaded
    assert "audio.sinks" in loaded  # the probe did import the agent


HORN_CHECK = """
import json, sys
from pathlib import Path
import numpy as np
from edge_agent.silence import _mic_drop_db
t = np.arange(48000) / 48000
window = np.asarray(np.rint(3000 * np.sin(2 * np.pi * 440 * t)), dtype=np.int16)
where = Path(sys.argv[1])
(where / "dead.json").write_text(json.dumps({"dead_horns": [0, 1, 2, 3]}))
print(json.dumps({
    "healthy": _mic_drop_db(where / "none.json", window),
    "dead": _mic_drop_db(where / "dead.json", window),
    "random": "numpy.random" in sys.modules,
}))
"""


def test_the_sim_horn_check_judges_levels_without_drawing_noise(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", HORN_CHECK, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    drops = json.loads(out.stdout)
    # numpy.random (~3 MB resident) stays unloaded while programmes play: the noise's level
    # is known, it need not be drawn.
    assert drops["random"] is False
    assert drops["healthy"] < 1.0 and drops["dead"] > HORNS_DROP_DB
