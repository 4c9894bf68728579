"""Fetch CAP content (an alert's audio <resource>, a polled feed and its alerts): only from
hosts the admin allowed, bounded in size and time, checked.

Blocking (DNS, HTTP): call from a thread. Every hop (the URL and each redirect) goes through
the relay's guarded fetcher, whose resolver here also refuses any host not on the CAP list.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from server.cap.alert import CapResource
from server.domain import DomainError
from server.live.fetch import Fetcher, StreamFailed
from server.live.urlguard import (
    AddressRefused,
    AddressUnusable,
    AllowList,
    Resolver,
    system_resolve,
)

FETCH_DEADLINE_S = 60.0
_CHUNK = 64 * 1024


def audio_resource(resources: tuple[CapResource, ...]) -> CapResource | None:
    """The first resource of an audio type that names a URL, if any (images etc. are ignored)."""
    for resource in resources:
        if resource.mime_type.lower().startswith("audio/") and resource.uri:
            return resource
    return None


def _only_allowed(allow: AllowList, resolve: Resolver) -> Resolver:
    """A resolver that refuses every host the admin did not list, by name or by network."""

    def checked(host: str, port: int) -> list[str]:
        addresses = resolve(host, port)
        if allow.admits_name(host):
            return addresses
        ips = [ipaddress.ip_address(a.split("%")[0]) for a in addresses]
        if not ips or not all(allow.admits_ip(ip) for ip in ips):
            raise AddressRefused(f"{host!r} is not on the CAP resource list")
        return addresses

    return checked


def fetch(
    resource: CapResource,
    *,
    allow: AllowList,
    dest: Path,
    max_bytes: int,
    resolve: Resolver = system_resolve,
) -> str:
    """Write the resource to dest and return its sha256; 422 with a plain reason otherwise."""
    uri = resource.uri or ""
    host = (urlsplit(uri).hostname or "?")[:100]
    if resource.size is not None and resource.size > max_bytes:
        raise DomainError(
            422, f"The alert's audio is {resource.size} bytes; at most {max_bytes} are accepted."
        )
    fetcher = Fetcher(
        allow=allow,
        resolve=_only_allowed(allow, resolve),
        deadline=time.monotonic() + FETCH_DEADLINE_S,
    )
    sha256, sha1, size = hashlib.sha256(), hashlib.sha1(usedforsecurity=False), 0
    try:
        stream = fetcher.open(uri)
        with dest.open("wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise DomainError(
                        422, f"The alert's audio is larger than {max_bytes} bytes; not accepted."
                    )
                sha256.update(chunk)
                sha1.update(chunk)
                out.write(chunk)
    except AddressRefused:
        raise DomainError(
            422,
            f"The alert's audio is on {host}, a host the administrator has not allowed"
            " (LOA_CAP_RESOURCE_ALLOWED_HOSTS).",
        ) from None
    except (AddressUnusable, StreamFailed, httpx.HTTPError, TimeoutError, OSError) as exc:
        raise DomainError(
            422, f"The alert's audio could not be fetched from {host}: {exc}"
        ) from None
    finally:
        fetcher.close()
    if size == 0:
        raise DomainError(422, f"The alert's audio from {host} is empty.")
    # CAP 1.2 <digest> is the SHA-1 of the resource: a mismatch means it is not what was sent.
    if resource.digest and resource.digest.lower() != sha1.hexdigest():
        raise DomainError(422, "The alert's audio does not match its <digest> (SHA-1).")
    return sha256.hexdigest()


class FetchFailed(Exception):
    """A feed or alert that could not be fetched; the message says why, for a technician."""


def fetch_bytes(
    uri: str,
    *,
    allow: AllowList,
    max_bytes: int,
    resolve: Resolver = system_resolve,
    deadline_s: float = FETCH_DEADLINE_S,
) -> bytes:
    """The document at uri, at most max_bytes, within deadline_s (a feed, a CAP alert)."""
    host = (urlsplit(uri).hostname or "?")[:100]
    fetcher = Fetcher(
        allow=allow,
        resolve=_only_allowed(allow, resolve),
        deadline=time.monotonic() + deadline_s,
    )
    data = bytearray()
    try:
        stream = fetcher.open(uri)
        while chunk := stream.read(_CHUNK):
            data += chunk
            if len(data) > max_bytes:
                raise FetchFailed(f"{uri[:200]} is larger than {max_bytes} bytes")
    except AddressRefused:
        raise FetchFailed(
            f"{host} is not on LOA_CAP_RESOURCE_ALLOWED_HOSTS; nothing was fetched"
        ) from None
    except (AddressUnusable, StreamFailed, httpx.HTTPError, TimeoutError, OSError) as exc:
        raise FetchFailed(f"the fetch failed: {exc}") from None
    finally:
        fetcher.close()
    return bytes(data)
