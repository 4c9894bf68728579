"""`python -m edge_agent` as a real process: will on SIGKILL, goodbye on SIGTERM, exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import (
    agent_env,
    finished,
    new_device_id,
    observing,
    run,
    start_process,
)
from protocol import TopicKind


def test_sigkill_leaves_the_will_with_the_birth_conn_id(broker: TestBroker, tmp_path: Path) -> None:
    uid = new_device_id()
    env = agent_env(broker, uid, broker.add_device(uid), tmp_path / "data")
    log = tmp_path / "agent.log"

    async def scenario() -> None:
        async with observing(broker, uid, clear=False) as obs:
            proc = await start_process("run", "--sim", env=env, cwd=tmp_path, log_file=log)
            birth = await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "birth", timeout=15)
            proc.kill()
            code, _ = await finished(proc, log)
            assert code == -signal.SIGKILL
            will = await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "offline")
            assert will.reason == "will"
            assert will.conn_id == birth.conn_id
        # The will is retained: whoever subscribes now reads that the device is offline.
        async with observing(broker, uid) as late:
            status = await late.wait_for(TopicKind.STATUS, lambda m: True)
            assert status.type == "offline" and status.conn_id == birth.conn_id

    run(scenario())


def test_sigterm_says_goodbye_and_exits_0(broker: TestBroker, tmp_path: Path) -> None:
    uid = new_device_id()
    env = agent_env(broker, uid, broker.add_device(uid), tmp_path / "data")
    log = tmp_path / "agent.log"

    async def scenario() -> None:
        async with observing(broker, uid) as obs:
            proc = await start_process("run", "--sim", env=env, cwd=tmp_path, log_file=log)
            birth = await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "birth", timeout=15)
            proc.send_signal(signal.SIGTERM)
            code, output = await finished(proc, log)
            assert code == 0, output
            bye = await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "offline")
            assert bye.reason == "shutdown" and bye.conn_id == birth.conn_id
            await asyncio.sleep(0.5)
            # A clean DISCONNECT suppresses the will: no second offline message.
            assert len(obs.of(TopicKind.STATUS, "offline")) == 1
            assert "stopped (exit code 0)" in output

    run(scenario())


def test_an_invalid_profile_exits_2_naming_the_field(broker: TestBroker, tmp_path: Path) -> None:
    bad = tmp_path / "bad-profile.yaml"
    sim = (Path(__file__).resolve().parents[2] / "firmware_profiles/profiles/sim.yaml").read_text()
    bad.write_text(sim.replace("  default: 70", "  default: 150"))
    uid = new_device_id()
    env = agent_env(broker, uid, "unused-password", tmp_path / "data")
    log = tmp_path / "agent.log"

    async def scenario() -> None:
        env["LOA_AGENT_FIRMWARE_PROFILE"] = str(bad)
        proc = await start_process("run", env=env, cwd=tmp_path, log_file=log)
        code, output = await finished(proc, log)
        assert code == 2
        assert "volume.default" in output and "LOA_AGENT_FIRMWARE_PROFILE" in output
        assert "Traceback" not in output

        env["LOA_AGENT_FIRMWARE_PROFILE"] = "rpi5-does-not-exist"
        proc = await start_process("run", env=env, cwd=tmp_path, log_file=log)
        code, output = await finished(proc, log)
        assert code == 2 and "unknown firmware profile 'rpi5-does-not-exist'" in output

    run(scenario())


def test_missing_settings_exit_2_naming_what_to_set(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('device_id = "bao-ninh-03"\nmqtt_host = "10.0.0.1"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOA_AGENT_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    log = tmp_path / "agent.log"

    async def scenario() -> None:
        proc = await start_process(
            "run", "--sim", "--config", str(config), env=env, cwd=tmp_path, log_file=log
        )
        code, output = await finished(proc, log)
        assert code == 2
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1, output  # one line, no traceback
        assert "mqtt_password" in lines[0] and "LOA_AGENT_MQTT_PASSWORD" in lines[0]
        assert str(config) in lines[0]

    run(scenario())
