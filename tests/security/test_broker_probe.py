"""The broker probe, permanent: what a device's real credentials can and cannot do.

Devices, zones and credentials come from the server's own API and broker code (password
and ACL files rendered from the database). Every "nothing arrived" check is paired with a
legitimate reader or publisher on the same topic that does get its message, so a check
can only pass because the broker refused, never because nothing was sent.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from loa_testkit.stack import Stack, database, server_stack
from protocol import (
    PREFIX,
    SERVER_USERNAME,
    SPECS,
    Birth,
    Direction,
    Offline,
    TopicKind,
    device_topic,
    encode,
    live_topic,
    zone_clip_topic,
)
from tests.conftest import _mosquitto_available

HOST = "127.0.0.1"
SHA = "ab" * 32
WAIT_S = 5.0


class Peer:
    """A paho client on its own network thread that records what it receives."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        client_id: str = "",
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.connack: int | None = None
        self.disconnects = 0
        self._cond = threading.Condition()
        self._acked: set[int] = set()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            c.username_pw_set(username, password)
        if will is not None:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c
        c.connect(HOST, port, keepalive=30)
        c.loop_start()
        self.wait(lambda: self.connack is not None)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        with self._cond:
            self.connack = int(code.value)
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _code: Any, _p: Any) -> None:
        with self._cond:
            self.disconnects += 1
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.got.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, _codes: Any, _p: Any) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def wait(self, pred: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        """Wait until pred() holds (evaluated under the peer's lock)."""
        with self._cond:
            return self._cond.wait_for(pred, timeout)

    @property
    def connected(self) -> bool:
        """True when the broker accepted the connection and has not dropped it."""
        return self.connack == 0 and self.disconnects == 0

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe and wait for the SUBACK (Mosquitto 2 grants, then filters on delivery)."""
        _rc, mid = self.client.subscribe(topic_filter, qos=1)
        assert mid is not None and self.wait(lambda: mid in self._acked)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK (whatever its reason code)."""
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def has(self, payload: bytes) -> bool:
        """True once a message with this payload arrived."""
        return any(p == payload for _t, p in self.got)

    def close(self) -> None:
        """Disconnect cleanly (no will)."""
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Probe:
    """The server, its devices' credentials, and connected peers."""

    stack: Stack
    passwords: dict[str, str]
    ids: dict[str, int]
    zone_a: int  # thief-a and peer-b belong to it (commune 1)
    zone_b: int  # peer-c belongs to it (commune 2)
    server: Peer  # the server account, on its own listener, reads loa/v1/#
    peers: dict[str, Peer] = field(default_factory=dict)

    def device(self, uid: str, **kw: Any) -> Peer:
        """Connect with a device's real credentials on the device listener."""
        return Peer(self.stack.settings.mqtt_port, uid, self.passwords[uid], client_id=uid, **kw)

    def flush(self, reader: Peer, uid: str) -> None:
        """Publish a marker to reader's own command topic and wait until it arrives.

        Mosquitto handles one connection's publishes in order, so anything the server sent
        the reader before the marker has been delivered by the time the marker is.
        """
        marker = _token("marker")
        self.server.publish(device_topic(uid, TopicKind.COMMAND), marker)
        assert reader.wait(lambda: reader.has(marker)), "the flush marker never arrived"


def _token(what: str) -> bytes:
    return f"{what}-{secrets.token_hex(6)}".encode()


def _post(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = stack.client.post(path, json=body, headers=stack.headers)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    """A server with two communes, two zones and four devices; the device peers connected."""
    if not _mosquitto_available():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    tmp: Path = tmp_path_factory.mktemp("probe")
    with database("sqlite", tmp) as url, server_stack(url, tmp / "data") as stack:
        passwords: dict[str, str] = {}
        ids: dict[str, int] = {}
        units = [
            _post(stack, "/api/v1/org-units", {"name": f"Xã Dò {n}", "kind": "commune"})["id"]
            for n in (1, 2)
        ]
        devices = {
            "thief-a": 0, "peer-b": 0, "peer-c": 1, "victim-v": 0, "thief-t": 1, "revoked-r": 0,
        }  # fmt: skip
        for uid, unit in devices.items():
            body = {"uid": uid, "name": uid, "org_unit_id": units[unit], "firmware_profile": "sim"}
            r = _post(stack, "/api/v1/devices", body)
            ids[uid], passwords[uid] = r["device"]["id"], r["credentials"]["password"]
        zone_a = _post(
            stack,
            "/api/v1/zones",
            {"org_unit_id": units[0], "name": "A", "device_ids": [ids["thief-a"], ids["peer-b"]]},
        )["id"]
        zone_b = _post(
            stack,
            "/api/v1/zones",
            {"org_unit_id": units[1], "name": "B", "device_ids": [ids["peer-c"]]},
        )["id"]
        time.sleep(0.3)  # the broker reloads its ACL on SIGHUP, asynchronously
        server = Peer(
            stack.settings.server_mqtt_port, SERVER_USERNAME, stack.settings.mqtt_secret()
        )
        assert server.connack == 0
        server.subscribe(f"{PREFIX}/#")
        p = Probe(stack, passwords, ids, zone_a, zone_b, server)
        for uid, own in (("thief-a", zone_a), ("peer-b", zone_a), ("peer-c", zone_b)):
            peer = p.device(uid)
            assert peer.connack == 0, f"{uid} could not connect with its own credentials"
            peer.subscribe(f"{PREFIX}/dev/{uid}/+")
            peer.subscribe(f"{PREFIX}/zone/{own}/#")
            p.peers[uid] = peer
        try:
            yield p
        finally:
            for peer in (*p.peers.values(), server):
                peer.close()


# -- forbidden subscriptions ------------------------------------------------------------------


def _foreign_messages(p: Probe) -> list[tuple[Peer, Peer, str, bool]]:
    """(publisher, rightful reader, topic, retain) for every topic kind the thief must not read."""
    b, c, srv = p.peers["peer-b"], p.peers["peer-c"], p.server
    out: list[tuple[Peer, Peer, str, bool]] = []
    for kind, spec in SPECS.items():
        if spec.direction is Direction.DOWN:
            out.append((srv, b, device_topic("peer-b", kind), spec.retain))
        else:
            out.append((b, srv, device_topic("peer-b", kind), spec.retain))
    out += [
        (srv, c, zone_clip_topic(p.zone_b, SHA), False),
        (srv, c, live_topic(p.zone_b, "probe-live"), False),
        (srv, srv, f"{PREFIX}/server-only/{secrets.token_hex(3)}", False),
    ]
    return out


def _thief_may_read(p: Probe, topic: str) -> bool:
    return topic.startswith(
        (f"{PREFIX}/dev/thief-a/", f"{PREFIX}/zone/{p.zone_a}/")
    ) and not topic.endswith(
        tuple(f"/{k.value}" for k, s in SPECS.items() if s.direction is Direction.UP)
    )


def _check_subscription_reads_nothing(p: Probe, topic_filter: str, only: str | None) -> None:
    thief = p.peers["thief-a"]
    thief.subscribe(topic_filter)
    try:
        sent: list[tuple[Peer, bytes]] = []
        for publisher, reader, topic, retain in _foreign_messages(p):
            if only is not None and topic != only:
                continue
            payload = _token("secret")
            publisher.publish(topic, payload, retain=retain)
            sent.append((reader, payload))
        assert sent
        for reader, payload in sent:
            assert reader.wait(partial(reader.has, payload)), "the rightful reader got nothing"
        p.flush(thief, "thief-a")
        leaked = [t for t, x in thief.got if any(x == s for _r, s in sent)]
        assert leaked == [], f"{topic_filter!r} delivered {leaked}"
        foreign = [t for t, _x in thief.got if not _thief_may_read(p, t)]
        assert foreign == [], f"{topic_filter!r} delivered foreign topics {foreign}"
    finally:
        thief.client.unsubscribe(topic_filter)


_KINDS = [k for k in TopicKind]


@pytest.mark.parametrize("kind", _KINDS, ids=[k.value for k in _KINDS])
def test_another_devices_topic_cannot_be_read(probe: Probe, kind: TopicKind) -> None:
    topic = device_topic("peer-b", kind)
    _check_subscription_reads_nothing(probe, topic, only=topic)


@pytest.mark.parametrize("what", ["clip", "live", "all"])
def test_another_zones_topics_cannot_be_read(probe: Probe, what: str) -> None:
    z = probe.zone_b
    topics = {
        "clip": zone_clip_topic(z, SHA),
        "live": live_topic(z, "probe-live"),
        "all": f"{PREFIX}/zone/{z}/#",
    }
    only = None if what == "all" else topics[what]
    _check_subscription_reads_nothing(probe, topics[what], only=only)


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "loa/#", f"{PREFIX}/#", f"{PREFIX}/dev/+/+", f"{PREFIX}/zone/+/#", "+/+/+/+/+", "$SYS/#"],
)
def test_wildcards_read_only_the_devices_own_topics(probe: Probe, topic_filter: str) -> None:
    # $SYS/# has no reader with the right to prove delivery (no account may read it); what
    # is checked is that nothing of the broker's (retained) $SYS tree and nothing foreign
    # reaches the device.
    _check_subscription_reads_nothing(probe, topic_filter, only=None)


# -- forbidden publishes ----------------------------------------------------------------------


def _publish_targets(p: Probe) -> dict[str, tuple[Peer, Peer, str, bool]]:
    """name -> (rightful publisher, rightful reader, topic, retain) the thief must not write."""
    b, c, thief, srv = p.peers["peer-b"], p.peers["peer-c"], p.peers["thief-a"], p.server
    out: dict[str, tuple[Peer, Peer, str, bool]] = {}
    for kind, spec in SPECS.items():
        if spec.direction is Direction.UP:
            out[f"other-device-{kind.value}"] = (b, srv, device_topic("peer-b", kind), spec.retain)
        else:
            out[f"other-device-{kind.value}"] = (srv, b, device_topic("peer-b", kind), spec.retain)
            # Server-only: what the server tells this very device.
            out[f"own-{kind.value}"] = (srv, thief, device_topic("thief-a", kind), spec.retain)
    out |= {
        "own-zone-clip": (srv, b, zone_clip_topic(p.zone_a, SHA), False),
        "own-zone-live": (srv, b, live_topic(p.zone_a, "probe-live"), False),
        "other-zone-clip": (srv, c, zone_clip_topic(p.zone_b, SHA), False),
        "other-zone-live": (srv, c, live_topic(p.zone_b, "probe-live"), False),
        "server-only": (srv, srv, f"{PREFIX}/server-only/x", False),
    }
    return out


_PUBLISH_NAMES = [
    *(f"other-device-{k.value}" for k in TopicKind),
    *(f"own-{k.value}" for k, s in SPECS.items() if s.direction is Direction.DOWN),
    "own-zone-clip",
    "own-zone-live",
    "other-zone-clip",
    "other-zone-live",
    "server-only",
]


@pytest.mark.parametrize("name", _PUBLISH_NAMES)
def test_forbidden_publish_is_not_delivered(probe: Probe, name: str) -> None:
    publisher, reader, topic, retain = _publish_targets(probe)[name]
    forged, genuine = _token("forged"), _token("genuine")
    probe.peers["thief-a"].publish(topic, forged, retain=retain)
    # PUBACKed first, so had it been accepted it would reach the reader before this one.
    publisher.publish(topic, genuine, retain=retain)
    assert reader.wait(lambda: reader.has(genuine)), "the rightful publisher's message got lost"
    assert not reader.has(forged), f"the thief's publish on {topic} was delivered"


# -- who may connect ---------------------------------------------------------------------------


def test_anonymous_is_refused_on_both_listeners(probe: Probe) -> None:
    s = probe.stack.settings
    for port in (s.mqtt_port, s.server_mqtt_port):
        peer = Peer(port, None, None)
        assert peer.connack not in (None, 0)
        peer.close()


def test_wrong_password_is_refused(probe: Probe) -> None:
    peer = Peer(probe.stack.settings.mqtt_port, "peer-b", "not-the-password")
    assert peer.connack not in (None, 0)
    peer.close()
    # Another device's password does not work either.
    peer = Peer(probe.stack.settings.mqtt_port, "peer-b", probe.passwords["thief-a"])
    assert peer.connack not in (None, 0)
    peer.close()


def test_device_credentials_do_not_open_the_server_listener(probe: Probe) -> None:
    peer = Peer(probe.stack.settings.server_mqtt_port, "thief-a", probe.passwords["thief-a"])
    assert peer.connack not in (None, 0)
    peer.close()


def test_revoked_device_is_refused(probe: Probe) -> None:
    first = probe.device("revoked-r")
    assert first.connack == 0  # the credentials work until the revocation
    first.close()
    r = probe.stack.client.post(
        f"/api/v1/devices/{probe.ids['revoked-r']}/revoke", headers=probe.stack.headers
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + WAIT_S
    while True:
        peer = probe.device("revoked-r")
        peer.close()
        if peer.connack != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # SIGHUP is handled asynchronously
    assert peer.connack not in (None, 0)


def _online(stack: Stack, device_id: int) -> bool:
    r = stack.client.get(f"/api/v1/devices/{device_id}", headers=stack.headers)
    return bool(r.json()["online"])


def _until(pred: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_client_id_takeover_is_refused(probe: Probe) -> None:
    """Issue 10, defect 2: a device's own credentials with another device's client id."""
    stack, vid = probe.stack, probe.ids["victim-v"]
    status = device_topic("victim-v", TopicKind.STATUS)
    will = encode(Offline(conn_id="victim1"))
    victim = probe.device("victim-v", will=(status, will))
    birth = Birth(conn_id="victim1", agent_version="probe", firmware_profile="sim", boot_time=0)
    victim.publish(status, encode(birth), retain=True)
    assert _until(lambda: _online(stack, vid)), "the victim never showed online"
    wills_before = sum(1 for t, x in probe.server.got if t == status and x == will)

    bridge_id = stack.app.state.bridge.link.client_id
    for client_id in ("victim-v", bridge_id):
        thief = Peer(
            stack.settings.mqtt_port, "thief-t", probe.passwords["thief-t"], client_id=client_id
        )
        try:
            # The broker accepts the thief as itself (its client id becomes its username) ...
            assert thief.connack == 0
            probe.flush(probe.peers["peer-b"], "peer-b")
            time.sleep(0.3)
            # ... and the victim keeps its session: not disconnected, no will, still online.
            assert victim.connected, f"{client_id} was pushed off by another device's login"
            assert sum(1 for t, x in probe.server.got if t == status and x == will) == wills_before
            assert _online(stack, vid)
            assert stack.client.get("/healthz").json()["mqtt"] == "connected"
            assert stack.app.state.bridge.link.connects == 1
        finally:
            thief.close()
    # The will is real: dropping the victim's socket fires it and the server marks it offline.
    victim.client.loop_stop()
    victim.client.socket().close()  # type: ignore[union-attr]
    assert _until(lambda: not _online(stack, vid), timeout=10), "the will never fired"
