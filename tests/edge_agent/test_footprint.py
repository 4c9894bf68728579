"""The agent's idle footprint: heavy modules load where they are used, not at start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_agent.silence import HORNS_DROP_DB
from loa_testkit.harness import ROOT

PROBE = """
import json, sys
import edge_agent.cli, edge_agent.agent
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def test_starting_the_agent_does_not_load_pyav() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout))
    # PyAV is ~20 MB resident: it loads with the first clip played or live session
    # (bench/agent_footprint.py measures the difference).
    assert "av" not in loaded
    assert {"edge_agent", "audio", "numpy"} <= loaded  # the probe did import the agent


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
    assert {"audio.sinks", "numpy"} <= loaded  # the probe did import the agent


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
