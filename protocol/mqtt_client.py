"""paho-mqtt 2 (MQTT 5) driven by an asyncio loop, with reconnect, backoff and ack tracking.

One implementation for both sides: the server keeps one link, the fleet simulator keeps
thousands in one process, so the network I/O runs on the event loop (socket callbacks,
as in paho's asyncio example and Home Assistant's client) instead of a thread per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol.tls import TlsRefusal, refusal

log = logging.getLogger(__name__)
EARLY_ACKS_KEPT = 1024  # far below the 65,535 message ids paho cycles through
_FAST_MAX_PAYLOAD = 1 << 20  # larger QoS 0 payloads take paho's own path


@dataclass(frozen=True)
class Outgoing:
    """A message to publish (also used for the will)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class PublishError(RuntimeError):
    """A QoS>0 publish that was not acknowledged."""


class _Client(mqtt.Client):
    """paho's client with a leaner receive path for many small messages (live audio frames).

    paho reads each packet with three or four `recv` calls and parses MQTT 5 properties into
    a `Properties` object per message (together most of a receiving agent's MQTT cost,
    measured). Here one `recv` takes everything the socket holds and packets are served from
    it (`MqttLink._read` reads on while any are buffered), and a QoS 0 PUBLISH without
    properties -- every live frame -- goes straight to `fast_publish` as (topic, payload).
    Everything else takes paho's own path.

    On the way out, paho hands every packet to the event loop's writer (add_writer, one loop
    turn, loop_write, remove_writer: most of a live frame's publishing cost, measured). Here a
    packet queued on the loop thread is written at once, as paho does without an external
    loop; the writer is registered only when the socket takes less than all of it. A QoS 0
    publish without properties (every live frame) is packed and sent here, skipping paho's
    per-message objects and its on_publish (which builds a Properties and a ReasonCode per
    frame for an "ack" nobody waits for).
    """

    _RECV_SIZE = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast_publish: Callable[[str, bytes], None] | None = None
        self.loop_thread: int | None = None  # the thread that may write directly
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None  # the socket the buffered bytes came from

    def buffered(self) -> bool:
        """True while bytes read from the current socket wait to be parsed."""
        sock = self._sock
        return sock is not None and sock is self._rsock and self._rpos < len(self._rbuf)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self.buffered():
            data = super()._sock_recv(max(bufsize, self._RECV_SIZE))
            if len(data) <= bufsize:
                self._rbuf, self._rpos, self._rsock = b"", 0, None
                return data
            self._rbuf, self._rpos, self._rsock = data, 0, self._sock
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def _handle_publish(self) -> MQTTErrorCode:
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        if self.fast_publish is not None and header & 0x06 == 0 and len(packet) >= 3:
            end = 2 + int.from_bytes(packet[:2], "big")  # after the topic
            if len(packet) > end and packet[end] == 0:  # property length 0: none
                try:
                    topic = packet[2:end].decode()
                except UnicodeDecodeError:
                    return super()._handle_publish()
                self.fast_publish(topic, bytes(packet[end + 1 :]))
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_publish()

    def publish_qos0(self, topic: str, payload: bytes) -> int | None:
        """Send a QoS 0, not retained PUBLISH now and return its id; None: use paho's publish."""
        sock = self._sock
        if (
            sock is None
            or self._out_packet  # earlier packets go first
            or threading.get_ident() != self.loop_thread
            or len(payload) > _FAST_MAX_PAYLOAD
        ):
            return None
        name = topic.encode()
        if not name or b"+" in name or b"#" in name:
            return None  # paho refuses it with its own error
        remaining = 2 + len(name) + 1 + len(payload)  # topic, property length 0, payload
        packet = bytearray((mqtt.PUBLISH,))
        while True:  # MQTT's variable-length remaining length
            byte, remaining = remaining & 0x7F, remaining >> 7
            packet.append(byte | 0x80 if remaining else byte)
            if not remaining:
                break
        packet += len(name).to_bytes(2, "big") + name + b"\x00" + payload
        mid = self._mid_generate()
        try:
            sent = sock.send(packet)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError:
            return None  # paho's path meets the same error and handles the lost link
        with self._msgtime_mutex:
            self._last_msg_out = time.monotonic()  # paho's keepalive clock
        if sent < len(packet):  # the socket is full: the writer sends the rest, in order
            self._out_packet.append(
                {
                    "command": mqtt.PUBLISH,
                    "mid": mid,
                    "qos": 0,
                    "pos": sent,
                    "to_process": len(packet) - sent,
                    "packet": packet,
                    "info": mqtt.MQTTMessageInfo(mid),
                }
            )
            self._call_socket_register_write()
        return mid

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        # Earlier packets waiting for the writer go first; another thread (the connect) must
        # leave the socket to the loop; inside a paho callback, loop_write would deadlock on
        # the callback lock (paho's own direct write checks the same).
        if (
            self._registered_write
            or self._sock is None
            or self._sockpairW is not None
            or threading.get_ident() != self.loop_thread
            or not self._in_callback_mutex.acquire(False)
        ):
            return super()._packet_queue(command, packet, mid, qos, info)
        self._in_callback_mutex.release()
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        return self.loop_write()  # registers the writer if the socket took less than all


class MqttLink:
    """One MQTT 5 client connection kept alive on the running asyncio loop."""

    def __init__(
        self,
        *,
        client_id: str,
        host: str,
        port: int,
        username: str,
        password: str,
        on_message: Callable[[str, bytes], None],
        on_connected: Callable[[str], None] | None = None,
        will: Callable[[str], Outgoing] | None = None,
        keepalive: int = 30,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        connect_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        clock_wait: float = 300.0,
    ) -> None:
        self.client_id = client_id
        self.host, self.port, self.keepalive = host, port, keepalive
        self._on_message_cb = on_message
        self._on_connected_cb = on_connected
        self._will = will
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._connect_timeout = connect_timeout
        self.conn_id = ""  # new for every connection; births and wills carry it
        self.refused_reason: str | None = None
        # Broker certificates refused since start (kept for telemetry: a man in the middle
        # is reported once the device reaches the right broker).
        self.tls_refusals: list[TlsRefusal] = []  # the last ten
        self.tls_refusal_count = 0
        self._clock_wait = clock_wait
        self._clock_suspect = False
        self.connects = 0
        self.connected = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._stopping = False
        self._lost = asyncio.Event()
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        # Acks of messages nobody waits for yet (QoS 0 "acks" come at once; a publish_wait may
        # look a moment later). Bounded: message ids wrap after 65,535 publishes, so an old
        # entry must never answer for a new message with the same id.
        self._early_acks: OrderedDict[int, ReasonCode] = OrderedDict()
        self._subscriptions: dict[str, int] = {}
        self._misc_task: asyncio.Task[None] | None = None

        c = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        c.fast_publish = self._on_fast_publish
        c.username_pw_set(username, password)
        if tls is not None:
            c.tls_set_context(tls)
            c.connect_timeout = connect_timeout  # the TLS handshake's own timeout
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_socket_register_write
        c.on_socket_unregister_write = self._on_socket_unregister_write
        self._client = c

    # -- public API ---------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True between a successful CONNACK and the loss of the connection."""
        return self.connected.is_set()

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        self._subscriptions[topic_filter] = qos
        if self.is_connected:
            self._client.subscribe(topic_filter, qos)

    def unsubscribe(self, topic_filter: str) -> None:
        """Stop reading a filter now and after reconnects (no-op if not subscribed)."""
        if self._subscriptions.pop(topic_filter, None) is not None and self.is_connected:
            self._client.unsubscribe(topic_filter)

    def publish(self, msg: Outgoing) -> int:
        """Queue a publish and return its message id (QoS>0 is resent after a reconnect)."""
        if msg.qos == 0 and not msg.retain:
            mid = self._client.publish_qos0(msg.topic, msg.payload)
            if mid is not None:
                return mid
        info = self._client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        return info.mid

    async def publish_wait(self, msg: Outgoing, *, timeout: float = 10.0) -> None:
        """Publish and wait until the broker acknowledges it (PUBACK/PUBCOMP)."""
        loop = asyncio.get_running_loop()
        info = self._client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        if msg.qos == 0:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise PublishError(f"not connected, QoS 0 message to {msg.topic} dropped")
            return
        early = self._early_acks.pop(info.mid, None)
        if early is not None:
            if early.is_failure:
                raise PublishError(f"broker rejected message {info.mid}: {early}")
            return
        fut = self._pending.setdefault(info.mid, loop.create_future())
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise PublishError(f"no acknowledgement for {msg.topic} within {timeout}s") from None
        finally:
            self._pending.pop(info.mid, None)

    async def run(self) -> None:
        """Connect and stay connected until close(); back off between failed attempts."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._client.loop_thread = self._loop_thread
        self._misc_task = asyncio.create_task(self._misc_loop())
        backoff = self._min_backoff
        try:
            while not self._stopping:
                if await self._connect_once():
                    backoff = self._min_backoff
                    await self._lost.wait()
                if self._stopping:
                    break
                if self._clock_suspect:
                    await self._wait_for_clock()
                    continue
                # Full jitter keeps a thousand clusters from reconnecting in lockstep
                # after the broker comes back.
                delay = random.uniform(backoff / 2, backoff)
                log.info("%s: reconnecting in %.1fs", self.client_id, delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self._max_backoff)
        finally:
            self._misc_task.cancel()

    async def close(self, *, last: Outgoing | None = None, timeout: float = 5.0) -> None:
        """Publish `last` (if connected), disconnect cleanly and stop reconnecting."""
        self._stopping = True
        if self.is_connected:
            if last is not None:
                try:
                    await self.publish_wait(last, timeout=timeout)
                except PublishError as exc:
                    log.warning("%s: %s", self.client_id, exc)
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout)
        self._lost.set()

    # -- connection management ------------------------------------------------------------

    async def _connect_once(self) -> bool:
        loop = asyncio.get_running_loop()
        self.conn_id = uuid.uuid4().hex[:16]
        self._lost.clear()
        self._connack = loop.create_future()
        if self._will is not None:
            w = self._will(self.conn_id)
            self._client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        self._clock_suspect = False
        try:
            # connect() resolves the name, opens the socket and does the TLS handshake:
            # blocking, so a thread.
            await loop.run_in_executor(None, self._blocking_connect, props)
            code = await asyncio.wait_for(asyncio.shield(self._connack), self._connect_timeout)
        except ssl.SSLCertVerificationError as exc:
            self._refuse_certificate(exc)
            self._client.disconnect()
            return False
        except (OSError, TimeoutError) as exc:
            log.warning(
                "%s: cannot reach MQTT broker %s:%s (%s); check the link and the broker",
                self.client_id,
                self.host,
                self.port,
                str(exc) or type(exc).__name__,
            )
            self._client.disconnect()
            return False
        if code.is_failure:
            self.refused_reason = str(code)
            log.error(
                "%s: broker %s:%s refused the connection: %s (check the device credentials)",
                self.client_id,
                self.host,
                self.port,
                code,
            )
            await self._lost.wait()
            return False
        return True

    def _refuse_certificate(self, exc: ssl.SSLCertVerificationError) -> None:
        r = refusal(exc, host=self.host, port=self.port)
        self._clock_suspect = r.clock_suspect
        if not r.clock_suspect:
            self.tls_refusals = [*self.tls_refusals[-9:], r]
            self.tls_refusal_count += 1
        log.error(
            "%s: refusing MQTT broker %s:%s: %s", self.client_id, self.host, self.port, r.reason
        )

    async def _wait_for_clock(self) -> None:
        """Sleep clock_wait, or less if the wall clock jumps (time sync): no TLS retry storm."""
        log.warning(
            "%s: retrying the broker in %.0fs, or as soon as the clock is set",
            self.client_id,
            self._clock_wait,
        )
        skew = time.time() - time.monotonic()
        deadline = time.monotonic() + self._clock_wait
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
            if abs(time.time() - time.monotonic() - skew) > 60:
                log.info("%s: the clock was set; retrying the broker now", self.client_id)
                return

    def _blocking_connect(self, props: Properties) -> None:
        self._client.connect(
            self.host, self.port, keepalive=self.keepalive, clean_start=True, properties=props
        )

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._client.loop_misc()  # keepalive pings and detection of a dead broker

    # -- paho callbacks (run on the loop thread, except socket-open during connect) --------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(code)
        if code.is_failure:
            return
        self.refused_reason = None
        self.connects += 1
        self.connected.set()
        for topic_filter, qos in self._subscriptions.items():
            client.subscribe(topic_filter, qos)
        if self._on_connected_cb is not None:
            self._on_connected_cb(self.conn_id)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        if self._connack is not None and not self._connack.done():
            # The broker hung up before CONNACK: do not sit out the whole connect timeout.
            self._connack.set_exception(ConnectionResetError(f"closed before CONNACK ({code})"))
        if self.connected.is_set():
            level = logging.INFO if self._stopping else logging.WARNING
            log.log(level, "%s: disconnected from broker (%s)", self.client_id, code)
        self.connected.clear()
        self._lost.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_fast_publish(msg.topic, bytes(msg.payload))

    def _on_fast_publish(self, topic: str, payload: bytes) -> None:
        try:
            self._on_message_cb(topic, payload)
        except Exception:  # a handler bug must never take the link down
            log.exception("%s: message handler failed for %s", self.client_id, topic)

    def _on_publish(self, _c: Any, _u: Any, mid: int, code: ReasonCode, _p: Any) -> None:
        fut = self._pending.get(mid)
        if fut is None:
            # Acked before publish_wait registered it, or nobody will wait (every QoS 0 frame):
            # remember it briefly, never as a future that would outlive its message id.
            self._early_acks[mid] = code
            while len(self._early_acks) > EARLY_ACKS_KEPT:
                self._early_acks.popitem(last=False)
            return
        if not fut.done():
            if code.is_failure:
                fut.set_exception(PublishError(f"broker rejected message {mid}: {code}"))
            else:
                fut.set_result(None)

    def _in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._add_reader, client, sock)

    def _add_reader(self, client: mqtt.Client, sock: Any) -> None:
        if self._loop is not None and sock.fileno() >= 0:
            self._loop.add_reader(sock, self._read, client, sock)

    def _read(self, client: mqtt.Client, sock: Any) -> None:
        client.loop_read()
        # Bytes already read into the client's buffer, or decrypted into the SSL buffer,
        # never make the socket readable again: read on while any are pending.
        tls_sock = sock if isinstance(sock, ssl.SSLSocket) else None
        for _ in range(10_000):
            if sock.fileno() < 0 or client.socket() is not sock:
                break
            if not self._client.buffered() and not (tls_sock is not None and tls_sock.pending()):
                break
            client.loop_read()

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._remove_fd, sock)

    def _remove_fd(self, sock: Any) -> None:
        if self._loop is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _on_socket_register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._add_writer, client, sock)

    def _add_writer(self, client: mqtt.Client, sock: Any) -> None:
        if self._loop is not None and sock.fileno() >= 0:
            self._loop.add_writer(sock, client.loop_write)

    def _on_socket_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._remove_writer, sock)

    def _remove_writer(self, sock: Any) -> None:
        if self._loop is not None:
            self._loop.remove_writer(sock)
