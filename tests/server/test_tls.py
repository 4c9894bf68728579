"""The server's side of TLS: broker config, the public ca.pem, a registration answer for TLS."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.hardware import SimHardware
from edge_agent.install import read_registration
from edge_agent.settings import load_settings
from edge_agent.telemetry import SimulatedSensors
from firmware_profiles import load_profile
from loa_testkit.harness import eventually, run, running
from loa_testkit.stack import Stack, database, server_stack
from server.broker.process import free_port
from server.settings import ServerSettings


@pytest.fixture
def tls_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A running server whose broker has a TLS listener on a port of its own."""
    monkeypatch.setenv("LOA_MQTT_TLS_PORT", str(free_port()))
    monkeypatch.setenv("LOA_MQTT_TLS_BIND_HOST", "127.0.0.1")
    with database("sqlite", tmp_path) as url, server_stack(url, tmp_path / "data") as stack:
        yield stack


def listener_options(conf: str) -> dict[str, list[str]]:
    """mosquitto.conf's listeners (`port host`) and the option lines under each."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in conf.splitlines():
        if line.startswith("listener "):
            current = out.setdefault(line.removeprefix("listener "), [])
        elif line.startswith("#"):
            current = None  # the listener's block ends at the next comment
        elif current is not None:
            current.append(line)
    return out


def test_the_default_broker_config_has_tls_and_plain_only_on_loopback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LOA_MQTT_TLS_PORT")  # tests/conftest.py turns it off for the suite
    from server.broker.pki import broker_tls
    from server.broker.process import write_broker_files
    from server.broker.render import TlsListener

    settings = ServerSettings(data_dir=tmp_path, mqtt_public_host="loa.example.vn")
    assert (settings.mqtt_tls_port, settings.mqtt_bind_host) == (8883, "127.0.0.1")
    files = broker_tls(settings)
    assert files is not None and files.cafile is not None
    assert (tmp_path / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
    conf = write_broker_files(
        broker_dir=settings.broker_dir,
        port=settings.mqtt_port,
        server_port=settings.server_mqtt_port,
        bind_host=settings.mqtt_bind_host,
        server_hash="x",
        devices=[],
        max_packet_bytes=1024,
        tls=TlsListener(8883, settings.mqtt_tls_bind_host, files.certfile, files.keyfile),
    ).read_text()
    listeners = listener_options(conf)
    assert set(listeners) == {"1883 127.0.0.1", "1884 127.0.0.1", "8883 0.0.0.0"}
    tls = listeners["8883 0.0.0.0"]
    assert f"certfile {files.certfile}" in tls and f"keyfile {files.keyfile}" in tls
    # The TLS listener keeps every rule of the plain device listener (client id, auth, ACL).
    device_rules = listeners["1883 127.0.0.1"]
    assert device_rules and all(rule in tls for rule in device_rules)
    assert _names(files.certfile) == {"loa.example.vn", "localhost", "127.0.0.1"}


def _names(path: Path) -> set[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in sans.get_values_for_type(x509.DNSName)} | {
        str(v) for v in sans.get_values_for_type(x509.IPAddress)
    }


def test_ca_pem_is_public_and_the_registration_answer_connects_over_tls(
    tls_api: Stack, tmp_path: Path
) -> None:
    api, settings = tls_api, tls_api.settings
    r = api.client.get("/api/v1/broker/ca.pem")  # no sign-in
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-pem-file"
    assert r.text == (settings.data_dir / "pki" / "ca.pem").read_text()
    assert r.text.startswith("-----BEGIN CERTIFICATE-----")
    unit = api.client.post(
        "/api/v1/org-units", json={"name": "Xã TLS", "kind": "commune"}, headers=api.headers
    ).json()["id"]
    answer = api.client.post(
        "/api/v1/devices",
        json={"uid": "tls-01", "name": "Cụm TLS", "org_unit_id": unit, "firmware_profile": "sim"},
        headers=api.headers,
    ).json()
    creds = answer["credentials"]
    assert creds["mqtt_tls_port"] == settings.mqtt_tls_port and creds["ca_pem"] == r.text
    config = tomllib.loads(creds["agent_config_toml"])
    assert config["mqtt_host"] == "127.0.0.1" and config["mqtt_port"] == settings.mqtt_tls_port
    assert config["tls"] is True and config["tls_ca_file"] == "/etc/loa/ca.pem"
    # The Pi installer writes the CA where the config looks for it.
    saved = tmp_path / "answer.json"
    saved.write_text(json.dumps(answer))
    reg = read_registration(saved)
    assert reg.ca_pem == r.text and str(reg.ca_file) == config["tls_ca_file"]
    # The answer, as installed (the CA at a test path), connects over TLS.
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(creds["ca_pem"])
    # Mosquitto reads the new password file on SIGHUP, asynchronously: a first attempt may
    # be refused, so retry quickly.
    fast = {"min_backoff_s": 0.1, "max_backoff_s": 0.5}
    agent_settings = load_settings(
        sim=True, **config | fast | {"tls_ca_file": ca_file, "data_dir": tmp_path / "agent"}
    )
    agent = Agent(
        settings=agent_settings,
        profile=load_profile("sim"),
        hardware=SimHardware(),
        sensors=SimulatedSensors(device_id="tls-01"),
    )
    device_id = answer["device"]["id"]

    def online() -> bool:
        got = api.client.get(f"/api/v1/devices/{device_id}", headers=api.headers).json()
        return bool(got["online"])

    async def body() -> None:
        async with running(agent):
            await eventually(online, 30, "the device online in the API")

    run(body(), timeout=60)  # generous: the machine is shared
    # A new password: the answer is as complete.
    rotated = api.client.post(
        f"/api/v1/devices/{device_id}/credentials", headers=api.headers
    ).json()["credentials"]
    assert rotated["ca_pem"] == r.text and rotated["mqtt_tls_port"] == settings.mqtt_tls_port
    assert 'tls_ca_file = "/etc/loa/ca.pem"' in rotated["agent_config_toml"]


def test_the_ca_survives_a_backup_and_restore(tls_api: Stack, tmp_path: Path) -> None:
    from server.backup import restore_backup, write_backup

    pki = tls_api.settings.data_dir / "pki"
    assert (pki / "ca.key").is_file()  # created when the stack wrote the broker files
    write_backup(settings=tls_api.settings, dest=tmp_path / "backup")
    restored = ServerSettings(data_dir=tmp_path / "restored")
    restore_backup(src=tmp_path / "backup", settings=restored)
    for name in ("ca.pem", "ca.key", "server.pem", "server.key"):
        assert (tmp_path / "restored" / "pki" / name).read_bytes() == (pki / name).read_bytes()
    assert (tmp_path / "restored" / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600


def test_without_tls_ca_pem_says_why(tmp_path: Path) -> None:
    with (
        database("sqlite", tmp_path) as url,
        server_stack(url, tmp_path / "d", with_broker=False) as api,
    ):
        assert api.settings.mqtt_tls_port == 0  # tests/conftest.py
        r = api.client.get("/api/v1/broker/ca.pem")
        assert r.status_code == 404 and "LOA_MQTT_TLS_PORT=0" in r.json()["detail"]


def test_serve_takes_uvicorns_tls_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from server.cli import app, http_config

    settings = ServerSettings(data_dir=tmp_path)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    config = http_config(object(), settings, ssl_certfile=cert, ssl_keyfile=key)
    assert (config.ssl_certfile, config.ssl_keyfile) == (cert, key)
    monkeypatch.setenv("LOA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOA_MQTT_PASSWORD", "x")
    monkeypatch.setenv("LOA_ADMIN_PASSWORD", "y")
    result = CliRunner().invoke(app, ["serve", "--ssl-certfile", str(cert)])
    assert result.exit_code != 0 and "both --ssl-certfile and --ssl-keyfile" in result.output
    cert.write_text("x")
    result = CliRunner().invoke(
        app, ["serve", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    )
    assert result.exit_code != 0 and f"{key} does not exist" in result.output
