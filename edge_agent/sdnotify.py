"""systemd notifications (sd_notify): READY=1, then WATCHDOG=1 pings from the event loop.

The protocol is one datagram per message on the unix socket named by $NOTIFY_SOCKET (a path,
or the abstract namespace when it starts with '@'); no library is needed. The pings run as a
coroutine on the agent's event loop on purpose: when the loop is blocked they stop, systemd's
WatchdogSec= expires and the service is restarted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Without a watchdog, the coroutine only waits to say STOPPING=1 at the end.
_IDLE_S = 3600.0


def socket_address(env: Mapping[str, str] | None = None) -> str | None:
    """The notify socket's address from NOTIFY_SOCKET, or None when not run by systemd."""
    value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # unset, or a kind we do not speak (vsock:...)


def notify(state: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send one notification (e.g. "READY=1"); False when there is no socket or it failed."""
    address = socket_address(env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block the loop: a full receive queue drops this ping, the next one follows.
            sock.setblocking(False)
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", state.split("\n", 1)[0], exc)
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings: half of WATCHDOG_USEC, or None when no watchdog is asked for."""
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (we were started by it)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


async def serve(*, status: str = "", env: Mapping[str, str] | None = None) -> None:
    """Say READY=1, ping WATCHDOG=1 every half WATCHDOG_USEC until cancelled, say STOPPING=1."""
    if socket_address(env) is None:
        return
    notify("READY=1" + (f"\nSTATUS={status}" if status else ""), env=env)
    interval = watchdog_interval(env)
    if interval is not None:
        log.info("systemd watchdog: pinging every %.1f s from the event loop", interval)
    try:
        while True:
            if interval is not None:
                notify("WATCHDOG=1", env=env)
            await asyncio.sleep(interval or _IDLE_S)
    finally:
        notify("STOPPING=1", env=env)
