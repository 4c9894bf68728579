"""SSRF: a relay URL must not make the server reach itself, its network or cloud metadata.

The guard is checked alone (literal forms, names resolving inward, redirects, playlists) and
through POST /api/v1/live against a real local HTTP server, which counts what reached it.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydantic
import pytest
from sqlalchemy import func, select

from loa_testkit.stack import Stack, live_stack
from server.live.buffer import PcmQueue
from server.live.fetch import Fetcher, StreamFailed
from server.live.sources import SourceError, SourceStatus, feed_url, probe_url
from server.live.urlguard import AddressRefused, AllowList, check_target, system_resolve
from server.orgs.models import Zone
from server.relay.models import RelaySource
from server.settings import ServerSettings
from tests.live.test_api import _fleet

REFUSED = "The relay address could not be played: this address is not allowed for relays."
UNPLAYABLE = "The relay address could not be played."


@dataclass
class Radio:
    """A local HTTP server: its port, the requests it got (by path) and their Host headers."""

    port: int
    hits: Counter[str]
    hosts: list[str]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of MP3 and the same as HLS (a playlist and its segments)."""
    root = tmp_path_factory.mktemp("media")
    tone = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=2", "-ac", "1"]
    subprocess.run([*tone, str(root / "radio.mp3")], check=True)
    hls = [*tone, "-c:a", "aac", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0"]
    subprocess.run([*hls, str(root / "hls.m3u8")], check=True)
    return root


@pytest.fixture
def radio(media: Path) -> Iterator[Radio]:
    """Serves the media; /go?to=URL redirects; /private answers 401 like an API would."""
    hits: Counter[str] = Counter()
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
            hits[path] += 1
            hosts.append(self.headers.get("Host", ""))
            if path == "/loop":
                self.send_response(302)
                self.send_header("Location", "/loop")
                self.end_headers()
            elif path == "/go":
                self.send_response(302)
                self.send_header("Location", query["to"][0])
                self.end_headers()
            elif path == "/private":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="loa-internal"')
                self.end_headers()
                self.wfile.write(b'{"detail": "Not authenticated"}')
            elif path == "/evil.m3u8":  # a playlist whose segment lies on a refused address
                segment = query["segment"][0]
                text = f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{segment}\n"
                self._send(text.encode() + b"#EXT-X-ENDLIST\n", "application/vnd.apple.mpegurl")
            elif (media / path.lstrip("/")).is_file():
                self._send((media / path.lstrip("/")).read_bytes(), "application/octet-stream")
            else:
                self._send(b"<html><body>" + b"not audio " * 500 + b"</body></html>", "text/html")

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Radio(port=server.server_address[1], hits=hits, hosts=hosts)
    server.shutdown()
    server.server_close()


def _resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    """A DNS stand-in for names only it knows (nothing else can resolve them by itself)."""

    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return table[host] if host in table else system_resolve(host, port)

    return resolve


# -- the guard alone ------------------------------------------------------------------------

INWARD = [
    "127.0.0.1", "[::1]", "localhost", "127.1", "2130706433", "0x7f.0.0.1", "0.0.0.0", "[::]",
    "169.254.169.254", "10.0.0.1", "10.255.255.254", "192.168.1.1", "172.16.0.1",
    "172.31.255.254", "100.64.0.1", "198.18.0.1", "192.0.2.1", "240.0.0.1", "255.255.255.255",
    "224.0.0.251", "[ff02::1]", "[fd12:3456::1]", "[fe80::1]", "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]", "[::ffff:169.254.169.254]", "[::ffff:10.0.0.1]", "[::127.0.0.1]",
    "[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::1]", "8.8.8.8@127.0.0.1",
]  # fmt: skip


@pytest.mark.parametrize("host", INWARD)
def test_loopback_private_link_local_and_their_other_spellings_are_refused(host: str) -> None:
    with pytest.raises(AddressRefused):
        check_target(f"http://{host}:8000/stream", allow=AllowList())


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://8.8.8.8/x", "rtsp://8.8.8.8/live", "gopher://8.8.8.8:70/",
     "icecast://8.8.8.8/live", "data:audio/mpeg;base64,AAAA", "concat:http://8.8.8.8/a|b"],
)  # fmt: skip
def test_only_http_and_https_are_fetched(url: str) -> None:
    with pytest.raises(AddressRefused):
        check_target(url, allow=AllowList.parse("8.8.8.8"))


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    inward = _resolver({"radio.test": ["127.0.0.1"]})
    with pytest.raises(AddressRefused):
        check_target("http://radio.test/live", allow=AllowList(), resolve=inward)
    mixed = _resolver({"radio.test": ["93.184.215.14", "10.0.0.1"]})
    with pytest.raises(AddressRefused):
        check_target("http://radio.test/live", allow=AllowList(), resolve=mixed)
    public = _resolver({"radio.test": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    target = check_target("https://Radio.Test./live?q=1", allow=AllowList(), resolve=public)
    assert target.addresses == ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    assert (target.host, target.port, target.target) == ("radio.test", 443, "/live?q=1")
    assert check_target("http://8.8.8.8/", allow=AllowList()).addresses == ("8.8.8.8",)


def test_the_allow_list_admits_names_suffixes_and_networks_and_nothing_more() -> None:
    allow = AllowList.parse("radio.lan, *.station.lan 10.20.0.0/16,127.0.0.1")
    dns = _resolver({
        "radio.lan": ["10.9.9.9"], "a.station.lan": ["192.168.1.5"], "other.lan": ["10.9.9.9"],
        "inside.example": ["10.20.3.4"], "half.example": ["10.20.3.4", "10.21.0.1"],
        "station.lan.evil.test": ["10.9.9.9"], "127.0.0.1": ["127.0.0.1"],
        "127.0.0.2": ["127.0.0.2"],
    })  # fmt: skip
    for host in ("radio.lan", "a.station.lan", "inside.example", "127.0.0.1"):
        check_target(f"http://{host}/live", allow=allow, resolve=dns)
    for host in ("other.lan", "half.example", "station.lan.evil.test", "127.0.0.2"):
        with pytest.raises(AddressRefused, match="not public"):
            check_target(f"http://{host}/live", allow=allow, resolve=dns)
    assert AllowList.parse("") == AllowList()


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "http://radio.lan/", "*.", "a/b"])
def test_a_bad_allow_list_fails_at_start_up(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="LOA_RELAY_ALLOWED_HOSTS"):
        ServerSettings(relay_allowed_hosts=bad)


# -- fetching: the checked address is the one connected to; every hop is checked -------------


def test_the_connection_goes_to_the_checked_address_with_one_lookup(radio: Radio) -> None:
    calls: list[str] = []
    fetcher = Fetcher(
        allow=AllowList.parse("radio.test"),
        resolve=_resolver({"radio.test": ["127.0.0.1"]}, calls),
    )
    stream = fetcher.open(radio.url("/radio.mp3", host="radio.test"))
    assert len(stream.read(4096)) > 0
    fetcher.close()
    # Only our resolver knows radio.test: the connection used the address it gave, once.
    assert calls == ["radio.test"] and radio.hits["/radio.mp3"] == 1
    assert radio.hosts == [f"radio.test:{radio.port}"]


def test_a_redirect_from_an_allowed_host_to_an_inward_one_is_refused(radio: Radio) -> None:
    dns = _resolver({"radio.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]})
    fetcher = Fetcher(allow=AllowList.parse("radio.test"), resolve=dns)
    for inward in (
        radio.url("/radio.mp3"),
        radio.url("/radio.mp3", host="evil.test"),
        radio.url("/radio.mp3", host="[::ffff:127.0.0.1]"),
        "file:///etc/passwd",
    ):
        with pytest.raises(AddressRefused):
            fetcher.open(radio.url(f"/go?to={inward}", host="radio.test"))
    assert radio.hits["/go"] == 4 and radio.hits["/radio.mp3"] == 0
    # The same redirect to the allowed host itself is followed.
    fetcher.open(radio.url("/go?to=/radio.mp3", host="radio.test")).close()
    assert radio.hits["/radio.mp3"] == 1


def test_redirect_loops_end(radio: Radio) -> None:
    fetcher = Fetcher(allow=AllowList.parse("127.0.0.1"))
    with pytest.raises(StreamFailed, match="redirects"):
        fetcher.open(radio.url("/loop"))
    assert radio.hits["/loop"] == 6


def test_a_playlist_cannot_send_ffmpeg_to_an_inward_address(radio: Radio) -> None:
    dns = _resolver({"radio.test": ["127.0.0.1"]})
    allow = AllowList.parse("radio.test")
    probe_url(radio.url("/hls.m3u8", host="radio.test"), allow=allow, timeout_s=3, resolve=dns)
    assert radio.hits["/hls0.ts"] >= 1  # a playlist's own segments are fetched (and checked)
    segment = radio.url("/hls1.ts")  # on 127.0.0.1, which is not allowed
    with pytest.raises(SourceError, match="could not be played"):
        probe_url(
            radio.url(f"/evil.m3u8?segment={segment}", host="radio.test"),
            allow=allow, timeout_s=3, resolve=dns,
        )  # fmt: skip
    assert radio.hits["/evil.m3u8"] == 1 and radio.hits["/hls1.ts"] == 0


def test_the_relay_status_says_only_could_not_be_played(radio: Radio) -> None:
    async def run(url: str, allow: AllowList) -> SourceStatus:
        status = SourceStatus()
        task = asyncio.create_task(feed_url(url, PcmQueue(), status, allow=allow))
        for _ in range(400):  # 20 s at most
            if status.reconnects:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        return status

    closed = _closed_port()
    allow = AllowList.parse("127.0.0.1")
    assert asyncio.run(run(f"http://127.0.0.1:{closed}/", allow)).error == "could not be played"
    assert asyncio.run(run(radio.url("/private"), allow)).error == "could not be played"
    refused = asyncio.run(run(radio.url("/radio.mp3"), AllowList())).error
    assert refused == "could not be played: this address is not allowed for relays"
    assert radio.hits["/radio.mp3"] == 0


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- through the API ------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Stack]:
    """The server with live audio and the default settings (no relay host allowed)."""
    with live_stack(tmp_path) as stack:
        yield stack


@pytest.fixture
def local_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The server with LOA_RELAY_ALLOWED_HOSTS=localhost (the name, not its address)."""
    monkeypatch.setenv("LOA_RELAY_ALLOWED_HOSTS", "localhost")
    with live_stack(tmp_path) as stack:
        yield stack


def _relay(api: Stack, zone: int, url: str, *, allow_private: bool = False) -> Any:
    """Relay url as a registered source of the zone's unit.

    The row goes straight into the database, past the relay-sources API's own address check:
    a source whose name later resolves inward (DNS rebinding) must still be refused on opening.
    """
    with api.session() as db:
        unit = db.scalar(select(Zone.org_unit_id).where(Zone.id == zone))
        source = RelaySource(
            name=f"Nguồn {db.scalar(select(func.count(RelaySource.id)))}", url=url,
            org_unit_id=unit, allow_private=allow_private,
        )  # fmt: skip
        db.add(source)
        db.flush()
        source_id = source.id
    body = {"source": "relay", "relay_source_id": source_id, "zone_ids": [zone]}
    return api.client.post("/api/v1/live", json=body, headers=api.headers)


def test_the_api_refuses_inward_relays_without_connecting(api: Stack, radio: Radio) -> None:
    _, zones, _ = _fleet(api, {"z": ["dev-z1"]})
    hosts = ["127.0.0.1", "localhost", "127.1", "2130706433", "0.0.0.0", "[::ffff:127.0.0.1]"]
    for host in hosts:
        r = _relay(api, zones["z"], radio.url("/radio.mp3", host=host))
        assert (r.status_code, r.json()["detail"]) == (422, REFUSED), host
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]/",
                "http://192.168.0.1/", "http://172.16.0.1/", "http://100.64.0.1/"):  # fmt: skip
        r = _relay(api, zones["z"], url)
        assert (r.status_code, r.json()["detail"]) == (422, REFUSED), url
    # An address nobody registered is refused before anything is resolved or fetched.
    body = {"source": "url", "url": radio.url("/unregistered.mp3"), "zone_ids": [zones["z"]]}
    r = api.client.post("/api/v1/live", json=body, headers=api.headers)
    assert r.status_code == 422 and "only registered relay sources" in r.json()["detail"]
    assert sum(radio.hits.values()) == 0
    assert api.client.get("/api/v1/live", headers=api.headers).json() == []


def test_a_source_an_admin_allowed_private_opens_its_own_host_only(
    api: Stack, radio: Radio
) -> None:
    _, zones, _ = _fleet(api, {"z": ["dev-z1"]})
    # No LOA_RELAY_ALLOWED_HOSTS here: the source's allow_private alone admits its host.
    r = _relay(api, zones["z"], radio.url("/radio.mp3", host="localhost"), allow_private=True)
    assert r.status_code == 201, r.text
    api.client.delete(f"/api/v1/live/{r.json()['id']}", headers=api.headers)
    assert radio.hits["/radio.mp3"] >= 1
    # ...not the address behind it, nor anywhere a redirect points.
    inward = radio.url("/hls.m3u8")
    r = _relay(api, zones["z"], radio.url(f"/go?to={inward}", "localhost"), allow_private=True)
    assert (r.status_code, r.json()["detail"]) == (422, REFUSED)
    assert radio.hits["/hls.m3u8"] == 0


def test_the_allow_list_admits_a_host_and_answers_tell_nothing(
    local_api: Stack, radio: Radio, caplog: pytest.LogCaptureFixture
) -> None:
    _, zones, _ = _fleet(local_api, {"z": ["dev-z1"]})
    caplog.set_level(logging.INFO)
    # Allowed by name: the relay plays.
    r = _relay(local_api, zones["z"], radio.url("/radio.mp3", host="localhost"))
    assert r.status_code == 201, r.text
    local_api.client.delete(f"/api/v1/live/{r.json()['id']}", headers=local_api.headers)
    # A redirect from the allowed name to the address behind it is refused, unfetched.
    inward = radio.url("/hls.m3u8")  # 127.0.0.1: the address behind the name, not allowed
    r = _relay(local_api, zones["z"], radio.url(f"/go?to={inward}", "localhost"))
    assert (r.status_code, r.json()["detail"]) == (422, REFUSED)
    assert radio.hits["/go"] == 1 and radio.hits["/hls.m3u8"] == 0
    # Whatever answers (nothing, a 401 API, a web page), the operator learns only this.
    for url in (f"http://localhost:{_closed_port()}/", radio.url("/private", "localhost"),
                radio.url("/page", "localhost")):  # fmt: skip
        r = _relay(local_api, zones["z"], url)
        assert (r.status_code, r.json()["detail"]) == (422, UNPLAYABLE), r.text
        for word in ("401", "Unauthorized", "refused", "Connection", "Invalid data", "realm"):
            assert word.lower() not in r.text.lower()
    # The details are for the admin, in the server log.
    logged = caplog.text
    assert "Connection refused" in logged or "ConnectError" in logged
    assert "HTTP 401" in logged
