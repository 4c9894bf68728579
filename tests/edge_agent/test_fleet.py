"""`loa-agent fleet`: many simulated agents in one process, and its credentials file."""

from __future__ import annotations

import json
import secrets
import signal
from pathlib import Path

import pytest

from edge_agent.fleet import FleetError, read_credentials
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import (
    agent_env,
    eventually,
    finished,
    new_device_id,
    observing,
    run,
    start_process,
)
from protocol import TopicKind
from server.broker.render import BrokerAccount, mosquitto_hash

FLEET_SIZE = 20


def _credentials(broker: TestBroker, count: int) -> list[dict[str, str]]:
    """Register `count` devices on the broker with a single reload (one SIGHUP, not 20)."""
    creds = [{"device_id": new_device_id("f"), "password": secrets.token_urlsafe(9)}]
    for _ in range(count - 1):
        creds.append({"device_id": new_device_id("f"), "password": secrets.token_urlsafe(9)})
    for c in creds[1:]:
        broker.accounts[c["device_id"]] = BrokerAccount(
            c["device_id"], mosquitto_hash(c["password"])
        )
    creds[0]["password"] = broker.add_device(creds[0]["device_id"])  # writes and reloads all
    return creds


def test_a_fleet_of_20_agents_publishes_20_births(broker: TestBroker, tmp_path: Path) -> None:
    creds = _credentials(broker, FLEET_SIZE)
    cred_file = tmp_path / "fleet.jsonl"
    cred_file.write_text("".join(json.dumps(c) + "\n" for c in creds))
    ids = [c["device_id"] for c in creds]
    env = agent_env(broker, "unused", "unused", tmp_path)
    log = tmp_path / "fleet.log"
    args = [
        "fleet",
        "--count",
        str(FLEET_SIZE),
        "--credentials",
        str(cred_file),
        "--mqtt-host",
        broker.host,
        "--mqtt-port",
        str(broker.port),
        "--data-root",
        str(tmp_path / "data"),
    ]

    async def scenario() -> None:
        async with observing(broker, ids[0], also=ids[1:]) as obs:
            proc = await start_process(*args, env=env, cwd=tmp_path, log_file=log)

            def births() -> set[str]:
                return {uid for uid in ids if obs.of(TopicKind.STATUS, "birth", device_id=uid)}

            await eventually(lambda: len(births()) == FLEET_SIZE, timeout=20, what="20 births")
            conn_ids = {obs.of(TopicKind.STATUS, "birth", device_id=uid)[0].conn_id for uid in ids}
            assert len(conn_ids) == FLEET_SIZE
            proc.send_signal(signal.SIGTERM)
            code, output = await finished(proc, log)
            assert code == 0, output

            def goodbyes() -> int:
                return sum(
                    1
                    for uid in ids
                    if any(
                        m.reason == "shutdown"
                        for m in obs.of(TopicKind.STATUS, "offline", device_id=uid)
                    )
                )

            await eventually(lambda: goodbyes() == FLEET_SIZE, what="20 clean goodbyes")

    run(scenario(), timeout=60)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(ids)


def test_credentials_file_problems_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "creds.jsonl"
    path.write_text('{"device_id": "dev-001", "password": "a"}\n\n{"device_id": "dev-002"}\n')
    with pytest.raises(FleetError, match=r"line 3 needs string fields device_id and password"):
        read_credentials(path, count=2)
    assert [c.device_id for c in read_credentials(path, count=1)] == ["dev-001"]

    path.write_text('{"device_id": "dev-001", "password": "a"}\n')
    with pytest.raises(FleetError, match=r"holds 1 devices but --count is 5"):
        read_credentials(path, count=5)

    path.write_text("not json\n")
    with pytest.raises(FleetError, match=r"line 1 is not JSON"):
        read_credentials(path, count=1)

    path.write_text('{"device_id": "Bad/Id", "password": "a"}\n')
    with pytest.raises(FleetError, match=r"line 1: invalid device id"):
        read_credentials(path, count=1)

    path.write_text('{"device_id": "dev-001", "password": "a"}\n' * 2)
    with pytest.raises(FleetError, match=r"line 2 repeats device dev-001"):
        read_credentials(path, count=2)

    with pytest.raises(FleetError, match=r"cannot read credentials file"):
        read_credentials(tmp_path / "missing.jsonl", count=1)
