#!/bin/sh
# Install a Loa agent on a fresh Raspberry Pi OS, offline, in one command:
#
#   sudo sh install-agent.sh REGISTRATION.json [WHEELS_DIR] [loa-agent install options]
#
# REGISTRATION.json is the server's answer to POST /api/v1/devices (or .../credentials);
# WHEELS_DIR (default: ./wheels beside this script) holds the loa wheel and its dependencies
# built for the Pi (docs/operations.md, "Install an agent on a Raspberry Pi"). This makes the
# venv, then `loa-agent install` does the rest: user, config, CA, sound check, service.
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
exec "$venv/bin/loa-agent" install --registration "$reg" --wheels "$wheels" "$@"
