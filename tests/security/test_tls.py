"""TLS on the device link against a real Mosquitto: verification, refusals, renewal, clock."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.agent import Agent
from edge_agent.hardware import SimHardware
from edge_agent.settings import load_settings
from edge_agent.telemetry import SimulatedSensors
from firmware_profiles import load_profile
from loa_testkit.brokerfix import HOST, TestBroker
from loa_testkit.harness import eventually, new_device_id, observing, run, running
from protocol import TopicKind
from protocol.mqtt_client import MqttLink
from protocol.tls import client_context, refusal
from server.broker.pki import certificate_expiry, ensure_private_pki
from server.broker.process import free_port
from server.broker.render import TlsListener

TIMINGS = {"keepalive_s": 5, "min_backoff_s": 0.1, "max_backoff_s": 0.5, "connect_timeout_s": 3}


def tls_agent(broker: TestBroker, uid: str, data_dir: Path, ca_file: Path, **values: Any) -> Agent:
    """A simulated agent that reaches `broker` over TLS only, trusting `ca_file`."""
    assert broker.tls is not None
    settings = load_settings(
        sim=True,
        device_id=uid,
        mqtt_host=values.pop("mqtt_host", HOST),
        mqtt_port=broker.tls.port,
        mqtt_password=values.pop("password", None) or broker.add_device(uid),
        data_dir=data_dir,
        tls=True,
        tls_ca_file=ca_file,
        **(TIMINGS | values),
    )
    return Agent(
        settings=settings,
        profile=load_profile("sim"),
        hardware=SimHardware(),
        sensors=SimulatedSensors(device_id=uid),
    )


def served_serial(port: int, ca_file: Path) -> int:
    """The serial number of the certificate the broker presents (verified against ca_file)."""
    ctx = client_context(ca_file)
    with (
        socket.create_connection((HOST, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A man in the middle's certificate: self-signed, for the right host name."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / "mitm.pem", directory / "mitm.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@pytest.fixture
def brokers() -> Iterator[list[TestBroker]]:
    """Brokers a test starts itself; all stopped at the end."""
    started: list[TestBroker] = []
    yield started
    for b in started:
        b.stop()


def start_tls_broker(
    brokers: list[TestBroker], directory: Path, certfile: Path, keyfile: Path, tls_port: int
) -> TestBroker:
    b = TestBroker(
        port=free_port(),
        broker_dir=directory,
        tls=TlsListener(tls_port, HOST, certfile, keyfile),
    )
    b.start()
    brokers.append(b)
    return b


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refusing MQTT broker" in r.getMessage()]


def test_an_agent_connects_over_tls_and_plain_mqtt_to_the_tls_port_is_refused(
    tls_broker: TestBroker, tmp_path: Path
) -> None:
    assert tls_broker.tls is not None
    uid = new_device_id("tls")
    password = tls_broker.add_device(uid)
    ca_file = tmp_path / "pki" / "ca.pem"
    agent = tls_agent(tls_broker, uid, tmp_path / "agent", ca_file, password=password)

    async def body() -> None:
        async with observing(tls_broker, uid) as obs, running(agent):
            birth = await obs.wait_for(TopicKind.STATUS, lambda m: m.type == "birth")
            assert birth.conn_id == agent.link.conn_id
            sock = agent.link._client.socket()
            assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
            # The same credentials in plain MQTT on the TLS port: never connected.
            assert tls_broker.tls is not None
            plain = MqttLink(
                client_id=uid,
                host=HOST,
                port=tls_broker.tls.port,
                username=uid,
                password=password,
                on_message=lambda _t, _p: None,
                min_backoff=0.2,
                max_backoff=0.4,
                connect_timeout=2,
            )
            task = asyncio.create_task(plain.run())
            await asyncio.sleep(2.5)
            assert plain.connects == 0 and not plain.is_connected
            await plain.close()
            await asyncio.wait_for(task, 5)
            assert agent.link.is_connected and agent.link.connects == 1

    run(body())


def test_an_agent_holding_another_ca_refuses_the_broker_and_says_why(
    tls_broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other_ca = ensure_private_pki(tmp_path / "other-pki", hosts=[HOST]).cafile
    assert other_ca is not None
    agent = tls_agent(tls_broker, new_device_id("tls"), tmp_path / "agent", other_ca)

    async def body() -> None:
        async with running(agent, wait_connected=False):
            await eventually(lambda: len(refusals(caplog)) >= 2, 10, "two refused attempts")
            assert agent.link.connects == 0

    with caplog.at_level(logging.INFO, logger="protocol.mqtt_client"):
        run(body())
    line = refusals(caplog)[0]
    assert f"{HOST}:{tls_broker.tls.port if tls_broker.tls else 0}" in line
    assert "not signed by the CA this device trusts" in line
    assert "unable to get local issuer certificate" in line  # OpenSSL's words, kept
    assert "\n" not in line
    retries = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert retries, "the agent backs off between attempts"


def test_a_wrong_host_name_is_refused(
    brokers: list[TestBroker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A certificate from the right CA, but for another host than the one the agent dialled.
    files = ensure_private_pki(tmp_path / "pki", hosts=["broker.example"], local_names=False)
    assert files.cafile is not None
    broker = start_tls_broker(
        brokers, tmp_path / "mosquitto", files.certfile, files.keyfile, free_port()
    )
    agent = tls_agent(broker, new_device_id("tls"), tmp_path / "agent", files.cafile)

    async def body() -> None:
        async with running(agent, wait_connected=False):
            await eventually(lambda: bool(refusals(caplog)), 10, "a refused attempt")
            assert agent.link.connects == 0

    with caplog.at_level(logging.INFO, logger="protocol.mqtt_client"):
        run(body())
    line = refusals(caplog)[0]
    assert f"not valid for the host name '{HOST}'" in line and "mismatch" in line


def test_a_man_in_the_middle_is_refused_then_reported_in_telemetry(
    brokers: list[TestBroker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tls_port = free_port()
    mitm_cert, mitm_key = self_signed(tmp_path / "mitm", "localhost")
    mitm = start_tls_broker(brokers, tmp_path / "mitm-mosquitto", mitm_cert, mitm_key, tls_port)
    files = ensure_private_pki(tmp_path / "pki", hosts=[HOST])
    assert files.cafile is not None
    uid = new_device_id("tls")
    password = mitm.add_device(uid)  # the MITM would accept it: the device must not talk
    agent = tls_agent(mitm, uid, tmp_path / "agent", files.cafile, password=password)

    async def body() -> None:
        async with running(agent, wait_connected=False):
            await eventually(lambda: bool(refusals(caplog)), 10, "the MITM refused")
            assert agent.link.connects == 0
            await asyncio.to_thread(mitm.stop)
            # The right broker comes back on the same address.
            right = start_tls_broker(
                brokers, tmp_path / "mosquitto", files.certfile, files.keyfile, tls_port
            )
            right.accounts[uid] = mitm.accounts[uid]
            right._reload()
            async with observing(right, uid) as obs:
                sample = await obs.wait_for(TopicKind.TELEMETRY, lambda m: True, timeout=15)
        assert sample.tls_refusals >= 1
        assert "not signed by the CA this device trusts" in sample.tls_refused
        assert "self-signed certificate" in sample.tls_refused
        assert f"{HOST}:{tls_port}" in sample.tls_refused

    with caplog.at_level(logging.INFO, logger="protocol.mqtt_client"):
        run(body(), timeout=60)


def test_renewal_under_the_same_ca_needs_nothing_on_the_devices(
    brokers: list[TestBroker], tmp_path: Path
) -> None:
    # A server certificate issued 340 days ago: 25 days left, inside the renewal window.
    then = datetime.now(UTC) - timedelta(days=340)
    files = ensure_private_pki(tmp_path / "pki", hosts=[HOST], now=then)
    assert files.cafile is not None
    ca_before = files.cafile.read_bytes()
    assert certificate_expiry(files.certfile) - datetime.now(UTC) < timedelta(days=30)
    broker = start_tls_broker(
        brokers, tmp_path / "mosquitto", files.certfile, files.keyfile, free_port()
    )
    assert broker.tls is not None
    tls_port, ca_file = broker.tls.port, files.cafile
    old_serial = served_serial(broker.tls.port, files.cafile)
    # Not due: nothing is re-issued.
    assert ensure_private_pki(tmp_path / "pki", hosts=[HOST], now=then) == files
    assert served_serial(broker.tls.port, files.cafile) == old_serial
    uid = new_device_id("tls")
    agent = tls_agent(broker, uid, tmp_path / "agent", files.cafile)

    async def body() -> None:
        async with running(agent):
            ensure_private_pki(tmp_path / "pki", hosts=[HOST])  # at broker start or reload
            await asyncio.to_thread(broker._reload)  # SIGHUP: Mosquitto re-reads the files
            new_serial = served_serial(tls_port, ca_file)
            assert new_serial != old_serial
            # A broker restart drops the agent; it comes back on the renewed certificate.
            await asyncio.to_thread(broker.stop)
            await asyncio.to_thread(broker.start)
            await eventually(lambda: agent.link.connects == 2, 15, "the agent reconnected")
            assert agent.link.tls_refusal_count == 0

    run(body())
    assert files.cafile.read_bytes() == ca_before  # same CA: the devices' ca.pem still holds
    assert certificate_expiry(files.certfile) - datetime.now(UTC) > timedelta(days=300)


def test_a_clock_before_the_certificate_says_so_and_waits(
    brokers: list[TestBroker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The certificate starts in two days: to this device, as to a Pi booted in 1970, it is
    # not valid yet.
    future = datetime.now(UTC) + timedelta(days=2)
    files = ensure_private_pki(tmp_path / "pki", hosts=[HOST], now=future)
    assert files.cafile is not None
    broker = start_tls_broker(
        brokers, tmp_path / "mosquitto", files.certfile, files.keyfile, free_port()
    )
    agent = tls_agent(broker, new_device_id("tls"), tmp_path / "agent", files.cafile)
    assert agent.settings.clock_wait_s == 300  # the default: no retry storm

    async def body() -> None:
        async with running(agent, wait_connected=False):
            await eventually(lambda: bool(refusals(caplog)), 10, "a refused attempt")
            # min_backoff is 0.1 s: without the clock wait this would be ~15 attempts.
            await asyncio.sleep(3)
            assert len(refusals(caplog)) == 1
            assert agent.link.connects == 0

    with caplog.at_level(logging.INFO, logger="protocol.mqtt_client"):
        run(body())
    line = refusals(caplog)[0]
    assert "the clock looks wrong" in line and "waiting for time sync" in line
    assert "certificate is not yet valid" in line
    waits = [m for m in (r.getMessage() for r in caplog.records) if "clock is set" in m]
    assert waits and "300s" in waits[0]
    assert agent.link.tls_refusal_count == 0  # a wrong clock is not an attack


def test_an_expired_certificate_is_refused(
    brokers: list[TestBroker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Issued 400 days ago for a year, and never renewed (the broker was not restarted).
    files = ensure_private_pki(
        tmp_path / "pki", hosts=[HOST], now=datetime.now(UTC) - timedelta(days=400)
    )
    assert files.cafile is not None
    broker = start_tls_broker(
        brokers, tmp_path / "mosquitto", files.certfile, files.keyfile, free_port()
    )
    agent = tls_agent(broker, new_device_id("tls"), tmp_path / "agent", files.cafile)

    async def body() -> None:
        async with running(agent, wait_connected=False):
            await eventually(lambda: len(refusals(caplog)) >= 2, 10, "refused, then retried")
            assert agent.link.connects == 0

    with caplog.at_level(logging.INFO, logger="protocol.mqtt_client"):
        run(body())
    line = refusals(caplog)[0]
    assert "the certificate has expired" in line and "renew it on the server" in line
    assert agent.link.tls_refusal_count >= 2


def test_a_device_clock_in_1970_is_named_as_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    # What OpenSSL reports on a Pi that booted without RTC: the certificate is not valid yet.
    monkeypatch.setattr("protocol.tls.time.time", lambda: 5.0)
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_code, exc.verify_message = 9, "certificate is not yet valid"
    r = refusal(exc, host="loa.example.vn", port=8883)
    assert r.clock_suspect
    assert "by this device's clock (1970-01-01 00:00 UTC): the clock looks wrong" in r.reason
    # Another failure on a 1970 clock also points at the clock.
    exc.verify_code, exc.verify_message = 20, "unable to get local issuer certificate"
    r = refusal(exc, host="loa.example.vn", port=8883)
    assert r.clock_suspect and "this device's clock (1970-01-01 00:00 UTC) looks wrong" in r.reason
