"""The agent's idle footprint: heavy modules load where they are used, not at start."""

from __future__ import annotations

import json
import subprocess
import sys

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
