"""Which client address a request came from, believing X-Forwarded-For only from our proxies."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def parse_trusted_proxies(value: str) -> tuple[Network, ...]:
    """LOA_TRUSTED_PROXIES: comma- or space-separated addresses and CIDRs; ValueError if bad."""
    networks = []
    for part in value.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(
                f"LOA_TRUSTED_PROXIES: {part!r} is not an IP address or CIDR network"
            ) from None
    return tuple(networks)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def forwarded_client(peer: str, forwarded_for: list[str], trusted: tuple[Network, ...]) -> str:
    """The client address: the peer, or behind trusted proxies the right-most untrusted hop.

    Each proxy appends the address it received the request from, so everything left of the
    last hop our own proxy vouches for was written by the client and may be forged.
    """
    if not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                # Not an address: our proxy did not write this hop, so nothing left of it
                # counts either; the proxy itself is the client we can vouch for.
                return peer
    return hops[0] if hops else peer
