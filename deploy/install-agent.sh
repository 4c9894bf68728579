#!/bin/sh
# Install a Loa agent on a fresh Raspberry Pi OS, offline, in one command:
#
#   sudo sh install-agent.sh REGISTRATION.json [WHEELS_DIR] [loa-agent install options]
#
# REGISTRATION.json is the server's answer to POST /api/v1/devices (or .../credentials);
# WHEELS_DIR (default: ./wheels beside this script) holds the loa wheel and its dependencies
# built for the Pi (docs/operations.md, "Install an agent on a Raspberry Pi"). This makes the
# venv, then `loa-agent install` does the rest: user, config, CA, sound check, service.
#
# E-boards (profile eboard-*): the screen's kiosk browser is installed too, from
# loa-eboard-kiosk.service beside this script, for the desktop user LOA_KIOSK_USER (default:
# the user with uid 1000, `pi` on a stock image). LOA_EBOARD_KIOSK=no skips it; =yes installs
# it whatever the profile.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: sudo sh $0 REGISTRATION.json [WHEELS_DIR] [loa-agent install options]" >&2
    exit 2
fi
reg=$1
shift
wheels=${1:-$(dirname "$0")/wheels}
[ $# -gt 0 ] && shift
venv=${LOA_VENV:-/opt/loa/venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-index --find-links "$wheels" --upgrade 'loa[edge]'
"$venv/bin/loa-agent" install --registration "$reg" --wheels "$wheels" "$@"

# A trial run (--dry-run, --root DIR) changed nothing on this system: neither does the kiosk.
for arg in "$@"; do
    case "$arg" in --dry-run | --root | --root=*) exit 0 ;; esac
done
kiosk=${LOA_EBOARD_KIOSK:-auto}
profile=$("$venv/bin/python" -c 'import tomllib; print(tomllib.load(open("/etc/loa/agent.toml", "rb")).get("firmware_profile", ""))')
case "$kiosk:$profile" in
    no:*) exit 0 ;;
    yes:* | auto:eboard-*) ;;
    *) exit 0 ;;
esac
unit=$(dirname "$0")/loa-eboard-kiosk.service
if [ ! -f "$unit" ]; then
    echo "e-board: $unit is missing; copy deploy/loa-eboard-kiosk.service beside this script" >&2
    exit 1
fi
desktop=${LOA_KIOSK_USER:-$(getent passwd 1000 | cut -d: -f1)}
if [ -z "$desktop" ] || ! id "$desktop" >/dev/null 2>&1; then
    echo "e-board: no desktop user (set LOA_KIOSK_USER to the user logged in on the screen)" >&2
    exit 1
fi
command -v chromium >/dev/null 2>&1 || echo "e-board: chromium is not installed (apt-get install chromium)" >&2
uid=$(id -u "$desktop")
sed -e "s/^User=pi\$/User=$desktop/" -e "s#/run/user/1000#/run/user/$uid#" "$unit" \
    > /etc/systemd/system/loa-eboard-kiosk.service
systemctl daemon-reload
systemctl enable loa-eboard-kiosk.service
echo "e-board: kiosk browser enabled for user $desktop (starts with the desktop session)"
