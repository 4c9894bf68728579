"""The demo's acoustic self-test (issue 17): baselines at commissioning, then one dead horn.

Once the demo's agents are online this asks every running agent for a self-test as the new
baseline (through the API, as the console does), waits for the results, then gives one
cluster a simulated dead horn and tests it again so the console flags it. A marker file
under <data dir>/agents makes later starts only print where to run a test.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from server.db import make_engine
from server.devices.models import Device, DeviceCommand
from server.plays.models import DeviceEventRecord
from server.selftest.service import VERDICTS

# The cluster that gets the dead horn: Xã Quảng Phú's second (not in Bảo Ninh's zones, where
# the demo's other examples play); when it is not started (--agents), the last one that is.
DEAD_HORN_UID = "quang-phu-02"
MARKER = "selftest-commissioned"
# The sim agent's acoustic path in its data dir (edge_agent.capture, which server may not import).
SIM_ACOUSTIC_FILE = "sim_acoustic.json"
# Two horns: one dead takes 6 dB off (a level drop the test calls "yếu tiếng"); of four
# horns, one dead is only 2.5 dB and still within bounds.
HEALTHY_PATH = {"horns": [0, 0]}
DEAD_HORN_PATH = {"horns": [0, 0], "dead_horns": [1]}
BASELINE_WAIT_S = 90.0
RESULT_WAIT_S = 60.0
RETRY_S = 5.0  # a refused command (the horns were busy) is sent again after this
TECHNICIAN = "kythuat"

Say = Callable[[str], None]


def start_commissioning(
    *, base: str, token: str, data_dir: Path, db_url: str, uids: list[str], say: Say
) -> threading.Thread:
    """Commission the running agents' self-test in a daemon thread (see the module doc)."""
    thread = threading.Thread(
        target=_guarded,
        kwargs={
            "base": base,
            "token": token,
            "data_dir": data_dir,
            "db_url": db_url,
            "uids": uids,
            "say": say,
        },
        name="demo-selftest",
        daemon=True,
    )
    thread.start()
    return thread


def _guarded(*, say: Say, **kwargs: Any) -> None:
    try:
        commission(say=say, **kwargs)
    except Exception as exc:  # one plain line: the demo runs on without it
        say(f"self-test: commissioning stopped: {exc}")


def commission(
    *, base: str, token: str, data_dir: Path, db_url: str, uids: list[str], say: Say
) -> None:
    """Baselines for every agent, then the dead horn; only the hint when already done."""
    agents_dir = data_dir / "agents"
    engine = make_engine(db_url)
    try:
        devices = _devices(engine)
        running = [uid for uid in uids if uid in devices]
        clusters = [uid for uid in running if devices[uid][2] == "sim"]
        if not clusters:
            return
        dead = DEAD_HORN_UID if DEAD_HORN_UID in clusters else clusters[-1]
        dead_id, dead_name, _ = devices[dead]
        if (agents_dir / MARKER).exists():
            _hint(base, say, dead_id, dead_name, dead, agents_dir)
            return
        _write_path(agents_dir / dead / SIM_ACOUSTIC_FILE, HEALTHY_PATH)
        ids = {uid: devices[uid][0] for uid in running}
        codes = _run_tests(base, token, engine, ids, rebaseline=True, wait_s=BASELINE_WAIT_S)
        recorded = sum(code == "baseline" for code in codes.values())
        say(f"self-test: baselines recorded for {recorded}/{len(running)} devices")
        if codes.get(dead) != "baseline":
            say(f"self-test: no baseline from {dead} ({codes.get(dead)}); tried again next start")
            return
        _write_path(agents_dir / dead / SIM_ACOUSTIC_FILE, DEAD_HORN_PATH)
        (agents_dir / MARKER).write_text("baselines recorded; dead horn simulated\n")
        code = _run_tests(
            base, token, engine, {dead: dead_id}, rebaseline=False, wait_s=RESULT_WAIT_S
        ).get(dead)
        verdict = VERDICTS.get(code or "", "no answer")
        say(
            f"self-test: {dead_name} ({dead}) has a simulated dead horn; "
            f"its self-test says '{verdict}' ({code})"
        )
        _hint(base, say, dead_id, dead_name, dead, agents_dir)
    finally:
        engine.dispose()


def _hint(base: str, say: Say, dead_id: int, name: str, uid: str, agents_dir: Path) -> None:
    say(
        f"self-test: sign in as {TECHNICIAN}, open {base}/devices/{dead_id}#selftest ({name}) "
        "and press 'Chạy tự kiểm tra ngay'; the verdict shows within about 30 s"
    )
    say(f"self-test: the simulated horns are in {agents_dir / uid / SIM_ACOUSTIC_FILE}")


def _devices(engine: Engine) -> dict[str, tuple[int, str, str]]:
    """uid -> (id, name, firmware profile) of every device not revoked."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Device.uid, Device.id, Device.name, Device.firmware_profile).where(
                Device.revoked_at.is_(None)
            )
        ).all()
    return {uid: (int(id_), name, profile) for uid, id_, name, profile in rows}


def _write_path(path: Path, acoustic: dict[str, Any]) -> None:
    """Replace the sim's acoustic path at once: the agent reads it at each test's start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(acoustic))
    tmp.replace(path)


def _run_tests(
    base: str, token: str, engine: Engine, ids: dict[str, int], *, rebaseline: bool, wait_s: float
) -> dict[str, str]:
    """Ask each device for a self-test and wait for the results: uid -> code (as far as in)."""
    deadline = time.monotonic() + wait_s
    sent: dict[str, tuple[str, float]] = {}
    codes: dict[str, str] = {}
    while time.monotonic() < deadline and len(codes) < len(ids):
        for uid, device_id in ids.items():
            if uid in codes or (uid in sent and sent[uid][1] > time.monotonic()):
                continue
            command = _post(base, f"/api/v1/devices/{device_id}/self-test", token, rebaseline)
            sent[uid] = (str(command["id"]), float("inf"))
        for uid, (command_id, resend_at) in list(sent.items()):
            if uid in codes or resend_at != float("inf"):
                continue
            code, refused = _result(engine, command_id)
            if code is not None:
                codes[uid] = code
            elif refused:
                sent[uid] = (command_id, time.monotonic() + RETRY_S)
        time.sleep(1.0)
    return codes


def _result(engine: Engine, command_id: str) -> tuple[str | None, bool]:
    """(the self-test's code, or None while none arrived; True when the device refused)."""
    with engine.connect() as conn:
        code = conn.scalar(
            select(DeviceEventRecord.code).where(
                DeviceEventRecord.kind == "selftest", DeviceEventRecord.command_id == command_id
            )
        )
        status = conn.scalar(select(DeviceCommand.status).where(DeviceCommand.id == command_id))
    return code, code is None and status == "failed"


def _post(base: str, path: str, token: str, rebaseline: bool) -> dict[str, Any]:
    body = json.dumps({"volume": None, "rebaseline": rebaseline}).encode()
    req = urllib.request.Request(base + path, data=body, method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            out = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        raise RuntimeError(f"POST {path} answered {exc.code}: {detail}") from None
    if not isinstance(out, dict) or "id" not in out:
        raise RuntimeError(f"POST {path} answered without a command id")
    return out
