"""A relay source's URL: http(s), and a host that resolves to public addresses only.

Every address the name resolves to is checked (a name with one public and one private
address is refused), with the rules of server/live/urlguard.py (IPv4-mapped, 6to4, Teredo
and NAT64 forms of a private IPv4 address count as private). Resolving blocks, so it runs
in a small thread pool with a time limit; async callers use check_url_async.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.live.urlguard import SCHEMES, AddressUnusable, is_blocked, system_resolve

Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP address strings
RESOLVE_TIMEOUT_S = 5.0
MAX_ADDRESSES = 64  # a name with more is refused rather than checked for minutes
# A few lookups at a time: a slow resolver then queues admins' requests instead of threads.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="loa-relay-dns")


class UrlRefused(Exception):
    """The URL may not be a relay source; the message is a sentence for the API."""


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed: its host, every address it resolved to, and the non-public ones."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]
    private: tuple[str, ...]  # non-empty only when the caller allowed private addresses


def _host_and_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("The relay source URL is not valid (check the host and port).") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UrlRefused("The relay source URL must start with http:// or https://.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("Put no user name or password in the relay source URL.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("The relay source URL names no host.")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UrlRefused("The host name of the relay source URL is not valid.") from None
    return host, port or SCHEMES[scheme]


def _resolve(resolve: Resolver, host: str, port: int, timeout_s: float) -> list[str]:
    future = _POOL.submit(resolve, host, port)
    try:
        return future.result(timeout=timeout_s)
    except TimeoutError:
        future.cancel()
        raise UrlRefused(
            f"The host {host} did not resolve within {timeout_s:g} seconds; check the URL."
        ) from None
    except AddressUnusable:
        raise UrlRefused(f"The host {host} does not resolve; check the URL.") from None


def check_url(
    url: str,
    *,
    allow_private: bool,
    resolve: Resolver = system_resolve,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> CheckedUrl:
    """Parse and resolve url; UrlRefused unless every address is public (or allowed)."""
    clean = url.strip()
    host, port = _host_and_port(clean)
    found = list(dict.fromkeys(_resolve(resolve, host, port, timeout_s)))
    if not found:
        raise UrlRefused(f"The host {host} resolves to no address.")
    if len(found) > MAX_ADDRESSES:
        raise UrlRefused(f"The host {host} resolves to more than {MAX_ADDRESSES} addresses.")
    try:
        ips = [ipaddress.ip_address(a.split("%")[0]) for a in found]
    except ValueError:
        raise UrlRefused(f"The host {host} resolves to something that is not an address.") from None
    private = tuple(str(ip) for ip in ips if is_blocked(ip))
    if private and not allow_private:
        raise UrlRefused(
            f"The host {host} resolves to {', '.join(private)}: a loopback, private, "
            "link-local, multicast or unspecified address. A relay source must be public, "
            "unless an administrator sets allow_private on purpose."
        )
    return CheckedUrl(clean, host, port, tuple(str(ip) for ip in ips), private)


async def check_url_async(
    url: str,
    *,
    allow_private: bool,
    resolve: Resolver = system_resolve,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> CheckedUrl:
    """check_url without blocking the event loop (the lookup runs in the pool)."""
    return await asyncio.to_thread(
        check_url, url, allow_private=allow_private, resolve=resolve, timeout_s=timeout_s
    )
