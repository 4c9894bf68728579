"""CAP with real agents: a text-only emergency alert is heard on every cluster, its repeat
plays nothing new, and its Cancel stops the running playout within 2 s."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent
from loa_testkit.harness import eventually, running
from loa_testkit.playfix import FAST, heard
from loa_testkit.stack import stack_agent
from tests.integration.test_end_to_end import in_zone, live_server, plays
from tests.stack import requires_mosquitto

# About 40 s of speech: still playing when the Cancel arrives.
INSTRUCTION = " ".join(
    f"Lần {n}: người dân các thôn ven suối khẩn trương sơ tán lên vùng cao." for n in range(1, 9)
)


def _alert(identifier: str, msg_type: str = "Alert", refs: str = "") -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    info = (
        "<info><language>vi-VN</language><category>Met</category><event>Lũ quét</event>"
        "<urgency>Immediate</urgency><severity>Extreme</severity><certainty>Observed</certainty>"
        f"<expires>{(now + timedelta(hours=1)).isoformat()}</expires>"
        f"<headline>Cảnh báo lũ quét</headline><instruction>{INSTRUCTION}</instruction>"
        "<area><areaDesc>Xã</areaDesc><geocode><valueName>MA_DVHC</valueName>"
        "<value>E2E01</value></geocode></area></info>"
    )
    return (
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        f"<identifier>{identifier}</identifier><sender>pctt@loa.test</sender>"
        f"<sent>{now.isoformat()}</sent><status>Actual</status><msgType>{msg_type}</msgType>"
        "<scope>Public</scope>"
        + (f"<references>pctt@loa.test,{refs},{now.isoformat()}</references>" if refs else "")
        + (info if msg_type != "Cancel" else "")
        + "</alert>"
    ).encode()


def _on_air(agent: Agent) -> bool:
    document = agent.runtime.document
    return document is not None and any(
        heard(agent.settings.state_dir, i.item_id) for i in document.items
    )


def _has_proof(live: Any, device_id: int) -> bool:
    return bool(plays(live, device_id))


@requires_mosquitto
def test_a_cap_emergency_plays_once_everywhere_and_its_cancel_stops_it(tmp_path: Path) -> None:
    with live_server(tmp_path) as live:
        w = live.w
        org = w.org()
        w.client.patch(f"/api/v1/org-units/{org}", json={"code": "E2E01"}, headers=w.headers)
        devices = [w.device(org) for _ in range(2)]
        agents = [
            stack_agent(live.settings, uid, tmp_path / uid, password=pw, **FAST)
            for _id, uid, pw in devices
        ]

        def post(document: bytes) -> Any:
            headers = w.headers | {"Content-Type": "application/cap+xml"}
            return w.client.post("/api/v1/cap", content=document, headers=headers)

        async def scenario() -> float:
            async with running(agents[0]), running(agents[1]):
                zone = await asyncio.to_thread(w.zone, org, None, [d[0] for d in devices])
                for agent in agents:
                    await eventually(partial(in_zone, agent, zone), what="the zone")
                first = await asyncio.to_thread(post, _alert("E2E-1"))
                assert first.status_code == 201, first.text
                for agent in agents:
                    await eventually(partial(_on_air, agent), timeout=30, what="the alert")
                again = await asyncio.to_thread(post, _alert("E2E-1"))
                assert again.status_code == 200
                assert again.json()["bulletin_id"] == first.json()["bulletin_id"]
                await asyncio.sleep(2)
                cancelled_at = time.time()
                cancel = await asyncio.to_thread(post, _alert("E2E-1-C", "Cancel", "E2E-1"))
                assert cancel.status_code == 201, cancel.text
                for device_id, _uid, _pw in devices:
                    proof = partial(_has_proof, live, device_id)
                    await eventually(proof, timeout=15, what="the proof")
                return cancelled_at

        cancelled_at = asyncio.run(asyncio.wait_for(scenario(), 120))
        for device_id, _uid, _pw in devices:
            [record] = plays(live, device_id)  # one item, though the alert came twice
            assert record["outcome"] == "preempted", record
            assert "removed from the schedule" in record["reason"]
            ended = datetime.fromisoformat(record["ended_at"]).timestamp()
            assert ended - cancelled_at < 2.0, ended - cancelled_at
