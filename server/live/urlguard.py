"""Which addresses a relay may reach: public http(s) hosts, plus what an admin allowed.

The check runs after DNS resolution, on every address a name resolves to, so a name that
points at loopback, a private network or a cloud metadata address is refused like the
address itself. The caller connects only to the addresses returned here (no second lookup
that a rebinding DNS server could answer differently).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP address strings

SCHEMES = {"http": 80, "https": 443}

# Named here as well as in the stdlib flags, so the answer does not depend on the Python
# version's idea of "global" (3.11 counts multicast as global, for one).
_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/96", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
        "3fff::/20", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip


class AddressRefused(Exception):
    """The URL is not one a relay may reach; the message is for the server log."""


class AddressUnusable(Exception):
    """The URL cannot be used (bad syntax, name not found); the message is for the log."""


@dataclass(frozen=True)
class AllowList:
    """Hosts an admin allowed although they are not public (LOA_RELAY_ALLOWED_HOSTS)."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> AllowList:
        """From 'radio.lan, *.station.lan, 10.20.0.0/16' (ValueError names a bad entry)."""
        items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for item in (i.strip() for i in items if i.strip()):
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _norm_host(item)
            if "/" in name or ":" in name or not name.strip("*."):
                raise ValueError(
                    f"LOA_RELAY_ALLOWED_HOSTS: {item!r} is neither a host name nor a CIDR"
                )
            if name.startswith("*."):
                suffixes.append(name[1:])
            else:
                names.add(name)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def admits_name(self, host: str) -> bool:
        """True when the admin allowed this host name (whatever it resolves to)."""
        host = _norm_host(host)
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def admits_ip(self, ip: IPAddress) -> bool:
        """True when the address lies in an allowed network."""
        return any(ip in net for net in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (the checked addresses only) and what to ask for."""

    url: str
    scheme: str
    host: str  # as written (for Host, TLS SNI and certificate checks)
    port: int
    target: str  # path and query
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        """The Host header: the name, with the port when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if SCHEMES[self.scheme] == self.port else f"{host}:{self.port}"


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (blocking: call in a thread)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AddressUnusable(f"{host!r} does not resolve: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_target(url: str, *, allow: AllowList, resolve: Resolver = system_resolve) -> Target:
    """Parse, resolve and check url; AddressRefused or AddressUnusable (blocking: DNS)."""
    parts = _split(url)
    try:
        host = _norm_host(parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressUnusable("the host name is not valid") from None
    port = parts.port or SCHEMES[parts.scheme]
    ips = [_parse_ip(a) for a in resolve(host, port)]
    if not ips:
        raise AddressUnusable(f"{host!r} resolves to no address")
    if not allow.admits_name(host):
        bad = [str(ip) for ip in ips if is_blocked(ip) and not allow.admits_ip(ip)]
        if bad:
            raise AddressRefused(f"{host!r} resolves to {', '.join(bad)}, not public")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Target(url.strip(), parts.scheme, host, port, target, tuple(str(ip) for ip in ips))


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise AddressUnusable(f"bad URL: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise AddressRefused(f"scheme {parts.scheme[:20]!r} is not http(s)")
    if not parts.hostname:
        raise AddressUnusable("the URL names no host")
    return parts._replace(scheme=parts.scheme.lower())


def _norm_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _parse_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.split("%")[0])  # drop an IPv6 zone id
    except ValueError:
        raise AddressUnusable(f"the resolver gave {text!r}, not an address") from None


def is_blocked(ip: IPAddress) -> bool:
    """True for every address that is not plainly public unicast (or embeds one that is not)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if ip in ipaddress.ip_network("::/96") or ip in ipaddress.ip_network("64:ff9b::/96"):
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(v4 is not None and is_blocked(v4) for v4 in inner):
            return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or any(ip in net for net in _BLOCKED if net.version == ip.version)
    )


def with_source_host(allow: AllowList, *, url: str, allow_private: bool) -> AllowList:
    """`allow` plus the relay source's own host name, when an admin set allow_private on it.

    The name only: a redirect to another name or to the address itself is still refused.
    """
    if not allow_private:
        return allow
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    with contextlib.suppress(UnicodeError):  # names are compared in their IDNA form
        host = host.encode("idna").decode("ascii")
    return replace(allow, names=allow.names | {host})
