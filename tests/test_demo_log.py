"""`loa-server demo` output: the sign-ins come last and again on Enter; no routine noise."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from server.broker.process import free_port
from server.logs import configure_logging

SIGNIN = "sign in as: admin / "


def test_demo_prints_signins_last_and_on_enter_without_routine_lines(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LOA_DATA_DIR": str(tmp_path / "var"),
        "LOA_HTTP_PORT": str(free_port()),
        "LOA_MQTT_PORT": str(free_port()),
        "LOA_MQTT_SERVER_PORT": str(free_port()),
        "LOA_MQTT_TLS_PORT": str(free_port()),
    }
    for name in ("LOA_ADMIN_PASSWORD", "LOA_MQTT_PASSWORD", "LOA_LOG_LEVEL"):
        env.pop(name, None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "server", "demo", "--agents", "2"],
        env=env, cwd=tmp_path, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert demo.stdout is not None and demo.stdin is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()

    def wait_for(count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(SIGNIN in line for line in list(lines)) < count:
            assert time.monotonic() < deadline, "".join(lines)
            assert demo.poll() is None, "".join(lines)
            time.sleep(0.2)

    try:
        wait_for(1, 90)
        first = next(i for i, line in enumerate(lines) if SIGNIN in line)
        # Printed after the start-up lines: the clusters' count is already above it.
        assert any("devices online" in line for line in lines[:first]), "".join(lines)
        # Past one 15 s planner tick the block is still the last thing on the screen.
        time.sleep(17)
        after = lines[first:]
        assert not [line for line in after if "apscheduler" in line or "GET /api" in line], after
        demo.stdin.write("\n")
        demo.stdin.flush()
        wait_for(2, 20)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
        reader.join(10)
    out = "".join(lines)
    assert demo.returncode == 0, out
    assert "stopped." in out
    assert "GET /api/v1/devices" not in out  # the demo's own checks read the database


def test_routine_scheduler_lines_are_debug() -> None:
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    try:
        root.handlers = [Keep()]
        configure_logging("INFO")
        logging.getLogger("apscheduler.executors.default").info('Running job "Planner.tick"')
        logging.getLogger("server.planner.runner").info("planned 12 device(s)")
        logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
        assert [r.getMessage() for r in records] == [
            "planned 12 device(s)",
            "Run time of job was missed",
        ]
        configure_logging("DEBUG")
        logging.getLogger("apscheduler.executors.default").info('Running job "Planner.tick"')
        assert records[-1].levelname == "DEBUG"
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]
