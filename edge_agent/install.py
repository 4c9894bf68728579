"""`loa-agent install`: set up a Raspberry Pi from the server's registration answer.

Creates the service user, the venv under /opt/loa (pip from a local wheel directory, no
index: it works offline), /etc/loa/agent.toml (0600, owned by the service user), the CA when
the answer carries one, checks the profile's sound card and mixer, and enables the unit.
With root=DIR every file goes under DIR and no system command runs: they are printed.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shlex
import subprocess
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edge_agent.alsacheck import check_profile_audio
from edge_agent.settings import SettingsError, load_settings
from firmware_profiles import ProfileError, load_profile

USER = "loa"
GROUPS = ("audio", "gpio", "dialout")  # sound card, GPIO chip, the modem's AT tty
VENV = Path("/opt/loa/venv")
CONFIG_FILE = Path("/etc/loa/agent.toml")
CA_FILE = Path("/etc/loa/ca.pem")
DATA_DIR = Path("/var/lib/loa")  # the unit's StateDirectory=loa
UNIT_NAME = "loa-agent.service"
UNIT_FILE = Path("/etc/systemd/system") / UNIT_NAME
DISTRIBUTION = "loa[edge]"

Say = Callable[[str], None]


class InstallError(Exception):
    """The install cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class Registration:
    """What the installer takes from the registration answer."""

    config_toml: str
    device_id: str
    firmware_profile: str
    ca_pem: str | None
    ca_file: Path


def read_registration(path: Path) -> Registration:
    """Parse the answer of POST /api/v1/devices (or .../credentials), or its `credentials`."""
    try:
        answer = json.loads(path.read_text())
    except OSError as exc:
        raise InstallError(f"cannot read the registration file {path}: {exc}") from None
    except ValueError as exc:
        raise InstallError(f"{path} is not the server's JSON answer: {exc}") from None
    if not isinstance(answer, dict):
        raise InstallError(f"{path} is not the server's JSON answer (an object)")
    creds = answer.get("credentials", answer)
    toml_text = creds.get("agent_config_toml") if isinstance(creds, dict) else None
    if not isinstance(toml_text, str):
        raise InstallError(
            f"{path} has no credentials.agent_config_toml: save the whole answer of "
            "POST /api/v1/devices or POST /api/v1/devices/<id>/credentials"
        )
    try:
        config = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise InstallError(f"agent_config_toml in {path} is not valid TOML: {exc}") from None
    ca_pem = creds.get("ca_pem") or answer.get("ca_pem")
    if ca_pem is not None and (
        not isinstance(ca_pem, str) or "-----BEGIN CERTIFICATE-----" not in ca_pem
    ):
        raise InstallError(f"ca_pem in {path} is not a PEM certificate")
    for key in ("device_id", "firmware_profile"):
        if not isinstance(config.get(key), str):
            raise InstallError(f"agent_config_toml in {path} has no {key}")
    return Registration(
        config_toml=toml_text,
        device_id=config["device_id"],
        firmware_profile=config["firmware_profile"],
        ca_pem=ca_pem,
        ca_file=_ca_file(config),
    )


def _ca_file(config: Mapping[str, Any]) -> Path:
    """Where the config expects the CA: a `*ca_file` key naming a path, else /etc/loa/ca.pem."""
    named = [v for k, v in config.items() if k.endswith("ca_file") and isinstance(v, str)]
    return Path(named[0]) if named and named[0].startswith("/") else CA_FILE


def agent_config(registration: Registration) -> str:
    """agent.toml: the server's config, plus the data dir of the service unless it sets one."""
    text = registration.config_toml
    if "data_dir" not in tomllib.loads(text):
        text = text.rstrip("\n") + f'\ndata_dir = "{DATA_DIR}"\n'
    return text


def unit_text() -> str:
    """The packaged systemd unit (deploy/loa-agent.service links to the same file)."""
    return (resources.files("edge_agent") / "systemd" / UNIT_NAME).read_text()


class Installer:
    """Carries out (or, with root or dry_run, shows) each step of the install."""

    def __init__(self, *, root: Path | None, dry_run: bool, say: Say) -> None:
        self.root = root
        self.dry_run = dry_run
        self.say = say
        self.system = root is None and not dry_run  # really change this machine

    def path(self, target: Path) -> Path:
        """Where a target path is written: under root when one is given."""
        return self.root / target.relative_to("/") if self.root else target

    def run(self, argv: Sequence[str]) -> None:
        """Run a system command, or print it when not changing this machine."""
        line = shlex.join(argv)
        if not self.system:
            self.say(f"would run: {line}")
            return
        self.say(f"running: {line}")
        try:
            subprocess.run(list(argv), check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise InstallError(f"`{line}` failed: {exc}") from None

    def write(self, target: Path, text: str, *, mode: int, owner: str | None = None) -> None:
        """Write a file atomically with its mode (and owner), or say it would."""
        where = self.path(target)
        if self.dry_run:
            self.say(f"would write {where} (mode {mode:04o})")
            return
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = where.with_name(f".{where.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)  # never readable by all
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        if owner is not None:
            if self.system:
                os.chown(tmp, pwd.getpwnam(owner).pw_uid, grp.getgrnam(owner).gr_gid)
            else:
                self.say(f"would run: chown {owner}:{owner} {target}")
        os.replace(tmp, where)
        self.say(f"wrote {where} (mode {mode:04o})")


def install(
    *,
    registration_file: Path,
    wheels: Path | None,
    root: Path | None = None,
    dry_run: bool = False,
    check_audio: bool = True,
    say: Say = print,
) -> None:
    """Install the agent from a registration answer; InstallError says what to fix."""
    reg = read_registration(registration_file)
    inst = Installer(root=root, dry_run=dry_run, say=say)
    if inst.system and os.geteuid() != 0:
        raise InstallError("run it as root: sudo loa-agent install ... (or --root DIR / --dry-run)")
    _check_config(reg)
    _check_hardware(reg, check_audio=check_audio, say=say)
    _check_wheels(inst, wheels)
    _ensure_user(inst)
    if not inst.path(VENV / "bin" / "python").exists():
        inst.run(["python3", "-m", "venv", str(VENV)])
    if wheels is not None:
        pip = [str(VENV / "bin" / "pip"), "install", "--no-index", "--find-links"]
        inst.run([*pip, str(wheels.resolve()), "--upgrade", DISTRIBUTION])
    inst.write(CONFIG_FILE, agent_config(reg), mode=0o600, owner=USER)
    if reg.ca_pem is not None:
        inst.write(reg.ca_file, reg.ca_pem, mode=0o644)
    inst.write(UNIT_FILE, unit_text(), mode=0o644)
    inst.run(["systemctl", "daemon-reload"])
    inst.run(["systemctl", "enable", UNIT_NAME])
    inst.run(["systemctl", "restart", UNIT_NAME])  # a re-install applies the new config
    say(
        f"agent {reg.device_id} installed (profile {reg.firmware_profile}); follow it with: "
        f"journalctl -u {UNIT_NAME} -f"
    )


def _check_config(reg: Registration) -> None:
    config = reg.config_toml
    try:
        load_settings(**tomllib.loads(config) | {"data_dir": DATA_DIR})
    except SettingsError as exc:
        raise InstallError(f"agent_config_toml does not suit this agent version: {exc}") from None


def _check_hardware(reg: Registration, *, check_audio: bool, say: Say) -> None:
    try:
        profile = load_profile(reg.firmware_profile)
    except ProfileError as exc:
        raise InstallError(f"{exc} (see loa-agent profiles)") from None
    if not check_audio:
        say("sound card and mixer not checked (--skip-audio-check)")
        return
    problems = check_profile_audio(profile, profile_ref=reg.firmware_profile)
    if problems:
        raise InstallError(
            "the sound hardware does not match the firmware profile (no user, config or "
            "service was set up). "
            "Fix this, then run the install again:\n- " + "\n- ".join(problems)
        )
    say(f"sound card and mixer of profile {profile.name}: present")


def _check_wheels(inst: Installer, wheels: Path | None) -> None:
    if wheels is None:
        if not inst.path(VENV / "bin" / "loa-agent").exists():
            raise InstallError(
                f"the agent is not installed in {VENV}: give --wheels DIR, a directory with "
                "the loa wheel and its dependencies (docs/operations.md says how to make it)"
            )
        return
    if not any(wheels.glob("loa-*.whl")):
        raise InstallError(
            f"no loa-*.whl in {wheels}: copy the wheel directory made with `pip wheel` "
            "(docs/operations.md, 'Install an agent on a Raspberry Pi')"
        )


def _ensure_user(inst: Installer) -> None:
    groups = [g for g in GROUPS if not inst.system or _group_exists(g)]
    for missing in sorted(set(GROUPS) - set(groups)):
        inst.say(f"no group {missing} on this system: the agent will lack its devices")
    member = ["--groups", ",".join(groups)] if groups else []
    if inst.system and _user_exists(USER):
        if groups:
            inst.run(["usermod", "--append", *member, USER])
        return
    inst.run(
        [
            *("useradd", "--system", "--user-group", "--home-dir", str(DATA_DIR)),
            *("--no-create-home", "--shell", "/usr/sbin/nologin", *member, USER),
        ]
    )


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
