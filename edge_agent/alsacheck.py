"""Check that a firmware profile's ALSA card, device and mixer control exist on this Pi.

Reads what a technician would read (`aplay -l`, `amixer -c CARD scontrols`) and, when
something is missing, says exactly what to fix: the overlay line, the cable, the profile.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from firmware_profiles import FirmwareProfile

_CARD_LINE = re.compile(r"^card (\d+): (\S+) \[.*?\], device (\d+):", re.MULTILINE)
_MIXER_LINE = re.compile(r"^Simple mixer control '(.+)',\d+$", re.MULTILINE)
_OVERLAY = re.compile(r"dtoverlay=[\w,=.-]+")
_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Card:
    """One ALSA card as `aplay -l` shows it: index, id and its playback devices."""

    index: int
    name: str
    devices: frozenset[int]


def parse_aplay(text: str) -> list[Card]:
    """The playback cards in `aplay -l` output."""
    found: dict[str, tuple[int, set[int]]] = {}
    for index, name, device in _CARD_LINE.findall(text):
        found.setdefault(name, (int(index), set()))[1].add(int(device))
    return [Card(i, name, frozenset(devs)) for name, (i, devs) in found.items()]


def parse_scontrols(text: str) -> list[str]:
    """The simple mixer control names in `amixer scontrols` output."""
    return _MIXER_LINE.findall(text)


def parse_alsa_device(device: str) -> tuple[str, int] | None:
    """(card id or index, device number) of hw:/plughw:-style names; None for others."""
    keys = dict(re.findall(r"(CARD|DEV)=([^,]+)", device))
    if "CARD" in keys:
        return keys["CARD"], int(keys.get("DEV", "0"))
    positional = re.fullmatch(r"\w+:(\w+)(?:,(\d+))?", device)
    if positional:
        return positional.group(1), int(positional.group(2) or 0)
    return None  # "default", a PCM from ~/.asoundrc...: nothing we can check here


def check_profile_audio(profile: FirmwareProfile, *, profile_ref: str) -> list[str]:
    """What to fix so the profile's sound card and mixer work here (empty: all present)."""
    audio = profile.audio
    if audio.interface == "file" or audio.alsa_device is None:
        return []
    wanted = parse_alsa_device(audio.alsa_device)
    if wanted is None:
        return []
    aplay = _run(["aplay", "-l"])
    if aplay is None:
        return [_MISSING_TOOLS]
    cards = parse_aplay(aplay)
    card = next((c for c in cards if wanted[0] in (c.name, str(c.index))), None)
    if card is None:
        return [_card_missing(profile, wanted[0], cards, profile_ref)]
    problems = []
    if wanted[1] not in card.devices:
        problems.append(
            f"sound card '{card.name}' has no playback device {wanted[1]} (it has "
            f"{sorted(card.devices)}): audio.alsa_device '{audio.alsa_device}' of profile "
            f"'{profile.name}' is wrong; use a profile that names one of these devices."
        )
    if audio.mixer_control is not None and audio.mixer_card is not None:
        scontrols = _run(["amixer", "-c", audio.mixer_card, "scontrols"])
        if scontrols is None:
            return [*problems, _MISSING_TOOLS]
        controls = parse_scontrols(scontrols)
        if audio.mixer_control not in controls:
            listed = ", ".join(f"'{c}'" for c in controls) or "none"
            problems.append(
                f"mixer control '{audio.mixer_control}' (audio.mixer_control of profile "
                f"'{profile.name}') is not on card '{audio.mixer_card}'; `amixer -c "
                f"{audio.mixer_card} scontrols` lists: {listed}. Use a profile whose "
                "mixer_control is one of these: copy the profile's YAML (`loa-agent profiles`), "
                'fix mixer_control and set firmware_profile = "/etc/loa/<file>.yaml" in the '
                "registration's config."
            )
    return problems


_MISSING_TOOLS = (
    "aplay/amixer are not installed: sudo apt-get install -y alsa-utils (Raspberry Pi OS "
    "ships them; the agent sets the volume with amixer)"
)


def _card_missing(profile: FirmwareProfile, wanted: str, cards: list[Card], ref: str) -> str:
    present = ", ".join(f"'{c.name}' (card {c.index})" for c in cards) or "no sound card"
    fix = {
        "usb": "Plug the USB audio adapter in (`lsusb` should list it), then check `aplay -l`.",
        "i2s": _overlay_fix(ref),
        "hdmi": "Turn on the on-board audio: dtparam=audio=on in /boot/firmware/config.txt, "
        "then reboot.",
        "headphone": "Turn on the on-board audio: dtparam=audio=on in "
        "/boot/firmware/config.txt, then reboot.",
    }[profile.audio.interface]
    return (
        f"sound card '{wanted}' of firmware profile '{profile.name}' (audio.alsa_device "
        f"'{profile.audio.alsa_device}') is not present; `aplay -l` lists: {present}. {fix} "
        "If this Pi has other audio hardware, register it with the matching profile "
        "(`loa-agent profiles`)."
    )


def _overlay_fix(ref: str) -> str:
    overlays = sorted(set(_OVERLAY.findall(_profile_text(ref))))
    if not overlays:
        return "Enable the HAT's device-tree overlay in /boot/firmware/config.txt, then reboot."
    lines = " and ".join(overlays)
    return f"Add {lines} to /boot/firmware/config.txt (the HAT's driver), then reboot."


def _profile_text(ref: str) -> str:
    """The profile's YAML with its comments (they name the overlay), by name or path."""
    try:
        if "/" in ref or ref.endswith((".yaml", ".yml")):
            return Path(ref).read_text()
        return (resources.files("firmware_profiles") / "profiles" / f"{ref}.yaml").read_text()
    except OSError:
        return ""


def _run(argv: list[str]) -> str | None:
    """A read-only ALSA tool's output in English (errors count as no output); None if absent."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout
