"""'auto' playout delay: the server sizes it from the links its target devices report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loa_testkit.harness import eventually, run
from loa_testkit.stack import Stack, live_stack
from protocol import Telemetry, TopicKind, device_topic, encode
from protocol.mqtt_client import Outgoing
from server.devices.models import Device
from tests.live.test_api import _fleet, _listen


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Stack]:
    """The server with live audio and its own broker."""
    with live_stack(tmp_path) as stack:
        yield stack


def link_report(p95_ms: float, max_ms: float | None = None) -> Telemetry:
    """A health sample carrying the device's probe round trips."""
    return Telemetry(
        uptime_s=60,
        load_1m=0.2,
        mem_used_pct=30,
        disk_free_mb=900,
        disk_used_pct=20,
        agent_version="0.1.0",
        firmware_profile="sim",
        link_rtt_ms=p95_ms * 0.7,
        link_rtt_p95_ms=p95_ms,
        link_rtt_max_ms=max_ms,
    )


def reported(api: Stack) -> int:
    with api.session() as db:
        return sum(
            1
            for d in db.query(Device).all()
            if (d.telemetry or {}).get("link_rtt_p95_ms") is not None
        )


@pytest.mark.parametrize(
    ("longest", "delay_ms", "named"),
    [((None, None), 750, "cell-slow"), ((260.0, 3_240.0), 3_350, "stall")],
    ids=["jitter", "a-stall"],
)
def test_auto_delay_covers_the_slowest_reported_link_and_the_devices_get_it(
    api: Stack,
    tmp_path: Path,
    longest: tuple[float | None, float | None],
    delay_ms: int,
    named: str,
) -> None:
    _, zones, passwords = _fleet(api, {"xom": ["cell-fast", "cell-slow"]})

    async def body() -> None:
        listeners = await _listen(api, tmp_path, passwords)
        for li, p95, most in zip(listeners, (120.0, 318.9), longest, strict=True):
            assert li.link is not None
            topic = device_topic(li.uid, TopicKind.TELEMETRY)
            li.link.publish(Outgoing(topic, encode(link_report(p95, most)), 0, False))
        await eventually(lambda: reported(api) == 2, 10, "both link reports stored")
        r = api.client.post(
            "/api/v1/live",
            json={"source": "mic", "zone_ids": [zones["xom"]], "playout_delay_ms": "auto"},
            headers=api.headers,
        )
        assert r.status_code == 201, r.text
        session = r.json()
        # 2 × 318.9 + 100 = 737.8, or a 3240 ms stall + 100; rounded up to 50 ms.
        assert session["playout_delay_ms"] == delay_ms
        assert named in session["playout_delay_basis"]

        def told() -> bool:
            return all(
                li.receiver is not None
                and li.receiver.current is not None
                and li.receiver.current.join.playout_delay_ms == delay_ms
                for li in listeners
            )

        await eventually(told, 10, "both devices joined with the chosen delay")
        api.client.delete(f"/api/v1/live/{session['id']}", headers=api.headers)

    run(body())


def test_a_requested_delay_is_kept_and_says_nothing_about_a_choice(
    api: Stack, tmp_path: Path
) -> None:
    _, zones, _ = _fleet(api, {"cho": ["cum-1"]})
    r = api.client.post(
        "/api/v1/live",
        json={"source": "mic", "zone_ids": [zones["cho"]], "playout_delay_ms": 300},
        headers=api.headers,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["playout_delay_ms"], r.json()["playout_delay_basis"]) == (300, None)
    api.client.delete(f"/api/v1/live/{r.json()['id']}", headers=api.headers)
    bad = api.client.post(
        "/api/v1/live",
        json={"source": "mic", "zone_ids": [zones["cho"]], "playout_delay_ms": "soon"},
        headers=api.headers,
    )
    assert bad.status_code == 422 and "playout_delay_ms" in bad.json()["detail"]
