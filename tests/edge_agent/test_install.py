"""`loa-agent install` and the systemd units in deploy/.

The sound card is a hardware seam: `aplay` and `amixer` are replaced on PATH by scripts that
print what a real Pi prints. useradd, systemctl, python3 and pip are replaced by scripts that
leave a mark, so a test fails if --root or --dry-run ever runs a system command.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.alsacheck import parse_alsa_device, parse_aplay, parse_scontrols
from edge_agent.cli import app
from edge_agent.install import unit_text
from edge_agent.settings import load_settings
from server.devices.models import Device
from server.devices.routes import _credentials
from server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
runner = CliRunner()

PI_CARDS = """**** List of PLAYBACK Hardware Devices ****
card 0: Headphones [bcm2835 Headphones], device 0: bcm2835 Headphones [bcm2835 Headphones]
  Subdevices: 8/8
  Subdevice #0: subdevice #0
card 1: vc4hdmi [vc4-hdmi], device 0: MAI PCM i2s-hifi-0 [MAI PCM i2s-hifi-0]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
"""
HIFIBERRY = """card 2: sndrpihifiberry [snd_rpi_hifiberry_dacplus], device 0: HiFiBerry DAC+ HiFi \
pcm512x-hifi-0 [HiFiBerry DAC+ HiFi pcm512x-hifi-0]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
"""
USB = """card 3: Device [USB Audio Device], device 0: USB Audio [USB Audio]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
"""
HIFIBERRY_CONTROLS = """Simple mixer control 'DSP Program',0
Simple mixer control 'Analogue',0
Simple mixer control 'Analogue Playback Boost',0
Simple mixer control 'Digital',0
"""
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----\n"
SYSTEM_COMMANDS = ("useradd", "usermod", "systemctl", "python3", "chown")


class FakeSystem:
    """A bin directory first on PATH: sound tools with canned output, marked system tools."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bin = tmp / "fakebin"
        self.bin.mkdir()
        self.marks = tmp / "marks"
        self.marks.mkdir()
        for name in SYSTEM_COMMANDS:
            self._script(name, f'touch "{self.marks}/{name}"\n')
        self._script(
            "aplay",
            f'[ -f "{self.bin}/cards" ] && exec cat "{self.bin}/cards"\n'
            'echo "aplay: device_list:274: no soundcards found..." >&2\nexit 1\n',
        )
        self._script(
            "amixer",
            f'f="{self.bin}/controls-$2"\n[ -f "$f" ] && exec cat "$f"\n'
            "echo \"amixer: Invalid card number '$2'.\" >&2\nexit 1\n",
        )
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")

    def _script(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)

    def sound(self, cards: str | None, controls: dict[str, str] | None = None) -> None:
        """What `aplay -l` and `amixer -c CARD scontrols` print (None: no sound card)."""
        if cards is not None:
            (self.bin / "cards").write_text(cards)
        for card, text in (controls or {}).items():
            (self.bin / f"controls-{card}").write_text(text)

    def commands_run(self) -> list[str]:
        return sorted(p.name for p in self.marks.iterdir())


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    return FakeSystem(tmp_path, monkeypatch)


def registration(tmp: Path, *, profile: str, ca_pem: str | None = None) -> Path:
    """The server's own answer to POST /api/v1/devices, as the technician saves it."""
    device = Device(uid="xa-an-binh-01", firmware_profile=profile)
    settings = ServerSettings(mqtt_host="loa.example.vn", mqtt_port=1883)
    creds = _credentials(settings, device, "s3cret-password").model_dump()
    if ca_pem is not None:
        creds["ca_pem"] = ca_pem
    path = tmp / "reg.json"
    path.write_text(json.dumps({"device": {"uid": device.uid}, "credentials": creds}))
    return path


def wheel_dir(tmp: Path) -> Path:
    wheels = tmp / "wheels"
    wheels.mkdir()
    (wheels / "loa-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    return wheels


def install(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["install", *args])
    return result.exit_code, result.output


def test_root_mode_writes_the_tree_and_runs_no_command(system: FakeSystem, tmp_path: Path) -> None:
    system.sound(PI_CARDS + HIFIBERRY, {"sndrpihifiberry": HIFIBERRY_CONTROLS})
    reg = registration(tmp_path, profile="rpi3bplus-hifiberry-dac", ca_pem=CA_PEM)
    root, wheels = tmp_path / "root", wheel_dir(tmp_path)

    code, output = install("--registration", str(reg), "--root", str(root), "--wheels", str(wheels))

    assert code == 0, output
    assert system.commands_run() == []
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == [
        "etc/loa/agent.toml",
        "etc/loa/ca.pem",
        "etc/systemd/system/loa-agent.service",
    ]
    config = root / "etc/loa/agent.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    answer = json.loads(reg.read_text())["credentials"]["agent_config_toml"]
    assert config.read_text() == answer + 'data_dir = "/var/lib/loa"\n'
    settings = load_settings(config_file=config)
    assert settings.device_id == "xa-an-binh-01" and settings.mqtt_host == "loa.example.vn"
    assert settings.mqtt_password.get_secret_value() == "s3cret-password"
    assert settings.state_dir == Path("/var/lib/loa")
    assert (root / "etc/loa/ca.pem").read_text() == CA_PEM
    unit = (root / "etc/systemd/system/loa-agent.service").read_text()
    assert unit == unit_text() == (DEPLOY / "loa-agent.service").read_text()
    planned = [line.removeprefix("would run: ") for line in output.splitlines()]
    for command in (
        "useradd --system --user-group --home-dir /var/lib/loa --no-create-home "
        "--shell /usr/sbin/nologin --groups audio,gpio,dialout loa",
        "python3 -m venv /opt/loa/venv",
        f"/opt/loa/venv/bin/pip install --no-index --find-links {wheels} --upgrade 'loa[edge]'",
        "chown loa:loa /etc/loa/agent.toml",
        "systemctl daemon-reload",
        "systemctl enable loa-agent.service",
        "systemctl restart loa-agent.service",
    ):
        assert command in planned, output
    assert "sound card and mixer of profile rpi3bplus-hifiberry-dac: present" in output


def test_no_ca_in_the_answer_writes_no_ca(system: FakeSystem, tmp_path: Path) -> None:
    system.sound(PI_CARDS + USB, {"Device": "Simple mixer control 'Speaker',0\n"})
    reg = registration(tmp_path, profile="rpi4-usb-pa")
    root = tmp_path / "root"
    code, output = install(
        "--registration", str(reg), "--root", str(root), "--wheels", str(wheel_dir(tmp_path))
    )
    assert code == 0, output
    assert not (root / "etc/loa/ca.pem").exists()
    assert (root / "etc/loa/agent.toml").exists()


def test_a_missing_hat_names_the_overlay_and_installs_nothing(
    system: FakeSystem, tmp_path: Path
) -> None:
    system.sound(PI_CARDS)  # the HAT's overlay is not enabled: only on-board audio
    reg = registration(tmp_path, profile="rpi3bplus-hifiberry-dac", ca_pem=CA_PEM)
    root = tmp_path / "root"
    code, output = install(
        "--registration", str(reg), "--root", str(root), "--wheels", str(wheel_dir(tmp_path))
    )
    assert code == 2
    assert "sound card 'sndrpihifiberry'" in output
    assert "'Headphones' (card 0), 'vc4hdmi' (card 1)" in output
    assert "Add dtoverlay=hifiberry-dacplus to /boot/firmware/config.txt" in output
    assert not root.exists() and system.commands_run() == []


def test_an_unplugged_usb_adapter_says_plug_it_in(system: FakeSystem, tmp_path: Path) -> None:
    system.sound(None)  # aplay -l: "no soundcards found"
    reg = registration(tmp_path, profile="rpi4-usb-pa")
    code, output = install("--registration", str(reg), "--dry-run")
    assert code == 2
    assert "lists: no sound card" in output and "Plug the USB audio adapter in" in output


def test_a_missing_mixer_control_lists_the_card_controls(
    system: FakeSystem, tmp_path: Path
) -> None:
    controls = HIFIBERRY_CONTROLS.replace("'Digital'", "'Master'")
    system.sound(PI_CARDS + HIFIBERRY, {"sndrpihifiberry": controls})
    reg = registration(tmp_path, profile="rpi3bplus-hifiberry-dac")
    code, output = install("--registration", str(reg), "--dry-run")
    assert code == 2
    assert "mixer control 'Digital'" in output and "not on card 'sndrpihifiberry'" in output
    assert "'DSP Program', 'Analogue', 'Analogue Playback Boost', 'Master'" in output


def test_dry_run_checks_and_prints_but_changes_nothing(
    system: FakeSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system.sound(PI_CARDS + USB, {"Device": "Simple mixer control 'Speaker',0\n"})
    reg = registration(tmp_path, profile="rpi4-usb-pa", ca_pem=CA_PEM)
    monkeypatch.chdir(tmp_path)
    code, output = install("--registration", str(reg), "--dry-run", "--wheels", "wheels-none")
    assert code == 2 and "no loa-*.whl in wheels-none" in output
    wheel_dir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, output = install("--registration", str(reg), "--dry-run", "--wheels", "wheels")
    assert code == 0, output
    assert sorted(tmp_path.rglob("*")) == before and system.commands_run() == []
    assert "would write /etc/loa/agent.toml (mode 0600)" in output
    assert "would write /etc/loa/ca.pem (mode 0644)" in output
    assert "would run: systemctl enable loa-agent.service" in output


def test_a_wrong_registration_file_says_what_to_save(tmp_path: Path) -> None:
    bad = tmp_path / "device.json"
    bad.write_text(json.dumps({"id": 3, "uid": "xa-an-binh-01"}))  # GET /devices/3, not the answer
    code, output = install("--registration", str(bad), "--dry-run")
    assert code == 2 and "has no credentials.agent_config_toml" in output
    unknown = tmp_path / "reg.json"
    toml = 'device_id = "xa-01"\nmqtt_host = "h"\nmqtt_password = "p"\nfirmware_profile = "sim"\n'
    unknown.write_text(json.dumps({"agent_config_toml": toml + "mqtt_tls = true\n"}))
    code, output = install("--registration", str(unknown), "--dry-run")
    assert code == 2 and "does not suit this agent version" in output and "mqtt_tls" in output
    unknown.write_text(json.dumps({"agent_config_toml": toml, "ca_pem": "not a certificate"}))
    code, output = install("--registration", str(unknown), "--dry-run")
    assert code == 2 and "ca_pem" in output and "not a PEM certificate" in output


def test_install_script_makes_the_venv_offline_then_runs_the_installer(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls"
    for name in ("python", "pip", "loa-agent"):
        tool = venv / "bin" / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        tool.chmod(0o755)
    env = {**os.environ, "LOA_VENV": str(venv)}
    done = subprocess.run(
        ["sh", str(DEPLOY / "install-agent.sh"), "reg.json", "/media/usb/wheels", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "pip install --quiet --no-index --find-links /media/usb/wheels --upgrade loa[edge]",
        "loa-agent install --registration reg.json --wheels /media/usb/wheels --dry-run",
    ]


def test_alsa_names_and_listings_parse() -> None:
    assert parse_alsa_device("plughw:CARD=Device,DEV=0") == ("Device", 0)
    assert parse_alsa_device("hw:CARD=sndrpihifiberry,DEV=1") == ("sndrpihifiberry", 1)
    assert parse_alsa_device("hw:1,0") == ("1", 0)
    assert parse_alsa_device("plughw:2") == ("2", 0)
    assert parse_alsa_device("default") is None
    cards = parse_aplay(PI_CARDS + HIFIBERRY)
    assert [(c.index, c.name, sorted(c.devices)) for c in cards] == [
        (0, "Headphones", [0]),
        (1, "vc4hdmi", [0]),
        (2, "sndrpihifiberry", [0]),
    ]
    assert parse_scontrols(HIFIBERRY_CONTROLS)[-1] == "Digital"


SERVICES = ("loa-agent.service", "loa-server.service", "loa-broker.service")
UNITS = (*SERVICES, "loa-broker-renew.service", "loa-broker-renew.timer")


def test_units_are_hardened_and_restart_always() -> None:
    assert (DEPLOY / "loa-agent.service").resolve() == (
        ROOT / "edge_agent/systemd/loa-agent.service"
    )
    for name in (*SERVICES, "loa-broker-renew.service"):
        lines = set((DEPLOY / name).read_text().splitlines())
        for setting in (
            *(("Restart=always",) if name in SERVICES else ("Type=oneshot",)),
            "User=loa",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/loa",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
        ):
            assert setting in lines, f"{name}: {setting}"
    agent = set((DEPLOY / "loa-agent.service").read_text().splitlines())
    assert {"Type=notify", "WatchdogSec=30", "NotifyAccess=main"} <= agent
    broker = (DEPLOY / "loa-broker.service").read_text()
    assert "ExecStart=/opt/loa/venv/bin/loa-server broker --foreground" in broker


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verified in a root holding the system's units and stand-ins for the venv's commands."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for exe in ("opt/loa/venv/bin/loa-agent", "opt/loa/venv/bin/loa-server", "bin/kill"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(DEPLOY / name, units / name)
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *(str(units / n) for n in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings (exit 0): any output is a failure.
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
