"""Fetch a relay stream ourselves, so every hop is checked and FFmpeg never connects by itself.

Each hop (the first URL, every redirect, every URL a playlist names) goes through
`check_target` and the connection goes to one of the addresses that were checked; the bytes
reach PyAV through a file object. All of it blocks: call it in a thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from server.live.urlguard import AllowList, Resolver, Target, check_target, system_resolve

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_AVIO_FLAG_WRITE = 2


class StreamFailed(Exception):
    """The stream's server did not give us a stream; the message is for the server log."""


@dataclass
class Fetcher:
    """Opens checked HTTP streams for one relay connection (and the URLs its playlist names)."""

    allow: AllowList
    resolve: Resolver = system_resolve
    connect_s: float = 5.0
    read_s: float = 5.0
    deadline: float | None = None  # time.monotonic(); while set, reads after it fail
    streams: list[HttpStream] = field(default_factory=list)

    def open(self, url: str) -> HttpStream:
        """GET url, following redirects ourselves with the check on every hop."""
        for _ in range(MAX_REDIRECTS + 1):
            target = check_target(url, allow=self.allow, resolve=self.resolve)
            client, response = self._connect(target)
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                response.close()
                client.close()
                url = urljoin(target.url, location)
                continue
            if not 200 <= response.status_code < 300:
                response.close()
                client.close()
                raise StreamFailed(f"{target.url[:200]} answered HTTP {response.status_code}")
            stream = HttpStream(self, client, response, name=target.url)
            self.streams.append(stream)
            return stream
        raise StreamFailed(f"more than {MAX_REDIRECTS} redirects")

    def io_open(self, url: str, flags: int, options: dict[str, Any]) -> HttpStream:
        """PyAV's hook for the URLs a container names (HLS segments): the same checks."""
        if flags & _AVIO_FLAG_WRITE:
            raise StreamFailed("the stream asked to write a file")
        return self.open(url)

    def close(self) -> None:
        """Close every connection this fetcher opened."""
        for stream in list(self.streams):
            stream.close()

    def _connect(self, target: Target) -> tuple[httpx.Client, httpx.Response]:
        """Try the checked addresses in turn; only they are ever connected to."""
        error: Exception = StreamFailed("no address")
        for address in target.addresses:
            host = f"[{address}]" if ":" in address else address
            client = httpx.Client(
                timeout=httpx.Timeout(self.read_s, connect=self.connect_s),
                follow_redirects=False,
                trust_env=False,  # a proxy from the environment would resolve the name again
            )
            request = client.build_request(
                "GET",
                f"{target.scheme}://{host}:{target.port}{target.target}",
                headers={
                    "Host": target.host_header,
                    "Accept-Encoding": "identity",
                    "User-Agent": "loa-relay",
                },
                # The certificate is checked against the name, not the address.
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            try:
                return client, client.send(request, stream=True)
            except httpx.TransportError as exc:
                client.close()
                error = exc
                log.info("relay %s via %s: %r", target.url[:200], address, exc)
        raise error


class HttpStream:
    """A read-only, non-seekable file object over one response, for av.open."""

    def __init__(
        self, owner: Fetcher, client: httpx.Client, response: httpx.Response, *, name: str
    ) -> None:
        self.name = name  # the final URL: a playlist's relative paths resolve against it
        self._owner = owner
        self._client = client
        self._response = response
        self._chunks = response.iter_bytes()
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        """Up to size bytes (fewer when that is what has arrived); b'' at the end."""
        deadline = self._owner.deadline
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the stream did not deliver in time")
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buf = chunk
        size = len(self._buf) if size < 0 else size
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def close(self) -> None:
        """Release the connection (and forget it: a long HLS relay opens one per segment)."""
        self._response.close()
        self._client.close()
        if self in self._owner.streams:
            self._owner.streams.remove(self)
