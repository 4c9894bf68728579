"""Live API: start, list, stop sessions; the microphone ingest WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Request, WebSocket, status
from starlette.websockets import WebSocketDisconnect

from server.access.actor import Actor
from server.access.deps import SESSION_COOKIE, allow
from server.access.policy import DEVICES_READ, LIVE_BROADCAST
from server.deps import SessionDep
from server.domain import DomainError
from server.live import redact
from server.live.schemas import LiveSessionOut, LiveStart
from server.live.service import LiveError, LiveService, LiveSession
from server.live.sources import IngestError, PushDecoder

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"])
redact.install()  # uvicorn logs the ingest URL: an old client's ?token= must not reach a log

LIVE_PERMISSION = LIVE_BROADCAST
FIRST_MESSAGE_S = 10.0
# WebSocket close codes (RFC 6455 and the private 4000-4999 range).
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_ENDED = 4000
# End reasons of a pushed stream: fixed wording per input, never the sender's own text.
MIC_STOPPED = "the microphone ended the broadcast"
STOP_REASONS = {
    "file_ended": "the file ended",
    "pipe_ended": "the piped audio ended",
    "stopped": "the sender stopped the broadcast",
}
CLOSE_NOT_FOUND = 4404


def _service(request: Request) -> LiveService:
    """The app's LiveService, or 503 when this server runs without MQTT."""
    live: LiveService | None = getattr(request.app.state, "live", None)
    if live is None:
        raise DomainError(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Live audio is not running on this server (no MQTT connection).",
        )
    return live


Live = Annotated[LiveService, Depends(_service)]


@router.post("/live", response_model=LiveSessionOut, status_code=201)
async def start_live(
    body: LiveStart, actor: Annotated[Actor, allow(LIVE_PERMISSION)], db: SessionDep, live: Live
) -> LiveSessionOut:
    """Start a live session to zones (or an org unit's subtree) now."""
    return (await live.start(db, actor=actor, request=body)).view()


@router.get("/live", response_model=list[LiveSessionOut])
async def list_live(
    actor: Annotated[Actor, allow(DEVICES_READ)], live: Live
) -> list[LiveSessionOut]:
    """Running and recently ended sessions, with listeners and per-device answers."""
    return await live.list_sessions(actor=actor)


@router.delete("/live/{session_id}", response_model=LiveSessionOut)
async def stop_live(
    session_id: Annotated[str, Path(max_length=64)],
    actor: Annotated[Actor, allow(LIVE_PERMISSION)],
    db: SessionDep,
    live: Live,
) -> LiveSessionOut:
    """Stop a session (of any server process): the devices are told to leave."""
    return await live.stop(db, actor=actor, session_id=session_id)


@router.websocket("/live/{session_id}/ingest")
async def ingest(websocket: WebSocket, session_id: str) -> None:
    """Microphone audio: binary messages of s16le PCM (or Opus packets), see protocol/README."""
    await websocket.accept()
    live: LiveService | None = getattr(websocket.app.state, "live", None)
    if live is None:
        await websocket.close(CLOSE_NOT_FOUND, "live audio is not running on this server")
        return
    try:
        reach, decoder, realtime = await _handshake(websocket, live)
        session = live.mic_session(session_id, reach=reach)
        session.queue.live = realtime
    except IngestError as exc:
        await websocket.close(_close_code(exc), str(exc)[:120])
        return
    except LiveError as exc:
        await websocket.close(CLOSE_NOT_FOUND, exc.detail[:120])
        return
    except (WebSocketDisconnect, TimeoutError):
        return
    if session.ingest_connected:
        await websocket.close(CLOSE_POLICY, "another microphone already feeds this session")
        return
    session.ingest_connected = True
    try:
        await _pump(websocket, live, session, decoder)
    finally:
        session.ingest_connected = False


class _AuthError(IngestError):
    """Missing or invalid credentials."""


def _close_code(exc: IngestError) -> int:
    return CLOSE_POLICY if isinstance(exc, _AuthError) else CLOSE_UNSUPPORTED


def _same_origin(ws: WebSocket) -> bool:
    """A browser always sends Origin: a cookie-authenticated socket must come from our pages."""
    origin = ws.headers.get("origin")
    host = ws.headers.get("host")
    return origin is not None and host is not None and urlsplit(origin).netloc == host


def _decoder_for(hello: dict[str, Any]) -> PushDecoder:
    """The decoder a hello message asks for ({"format", "sample_rate"}; defaults 48 kHz PCM)."""
    fmt, rate = hello.get("format", "pcm_s16le"), hello.get("sample_rate", 48000)
    if not isinstance(rate, int) or not isinstance(fmt, str):
        raise IngestError("'format' must be a string and 'sample_rate' a whole number.")
    return PushDecoder(fmt=fmt, sample_rate=rate)


async def _handshake(
    ws: WebSocket, live: LiveService
) -> tuple[frozenset[int] | None, PushDecoder, bool]:
    """Authenticate (Authorization header, console cookie or first message); reach, decoder.

    With the header or the cookie the audio may start at once (48 kHz s16le) or after an
    optional hello text message; otherwise the first message is the hello with the token.
    A token in the URL is refused: URLs are written to access logs. The hello's `live`
    (default true) says the audio is real time, so a backlog of it is stale (PcmQueue).
    """
    if "token" in ws.query_params:
        raise _AuthError(
            "Send the token in the first message or an Authorization header, not in the URL."
        )
    token: str | None = None
    scheme, _, credentials = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        token = credentials.strip()
    decoder = PushDecoder(fmt="pcm_s16le", sample_rate=48000)
    realtime = True
    if token is None and ws.cookies.get(SESSION_COOKIE):
        if not _same_origin(ws):
            raise _AuthError("A console microphone must connect from the console's own page.")
        token = ws.cookies[SESSION_COOKIE]
    if token is None:
        first = await asyncio.wait_for(ws.receive_text(), FIRST_MESSAGE_S)
        try:
            hello = json.loads(first)
        except json.JSONDecodeError:
            raise _AuthError("The first message must be JSON with the bearer token.") from None
        if not isinstance(hello, dict) or not isinstance(hello.get("token"), str):
            raise _AuthError("The first message must carry a 'token'.")
        token = hello["token"]
        decoder = _decoder_for(hello)
        realtime = hello.get("live", True) is not False
    ip = ws.client.host if ws.client else ""
    actor = await live.broadcaster(token=token or "", ip=ip)
    if actor is None:
        raise _AuthError("Not signed in, or your role may not broadcast live audio.")
    return actor.org_ids, decoder, realtime


async def _pump(ws: WebSocket, live: LiveService, session: LiveSession, dec: PushDecoder) -> None:
    """Decode messages into the session until it ends or the browser goes away."""
    # One waiter for the session's end beside the receiving, not a timeout around every 20 ms
    # message: each costs a timer set and cancelled (7 % of the server's interpreter samples in
    # a live stream, py-spy: docs/benchmarks.md, "Tenth pass").
    receiving = asyncio.ensure_future(_receive(ws, live, session, dec))
    ending = asyncio.ensure_future(session.done.wait())
    try:
        await asyncio.wait({receiving, ending}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (receiving, ending):
            task.cancel()
        await asyncio.gather(receiving, ending, return_exceptions=True)
    if not receiving.cancelled() and not receiving.result():  # result() re-raises its error
        return  # it closed the socket itself, or the browser went away
    with contextlib.suppress(RuntimeError):
        await ws.close(CLOSE_ENDED, (session.end_reason or "session ended")[:120])


async def _receive(
    ws: WebSocket, live: LiveService, session: LiveSession, dec: PushDecoder
) -> bool:
    """Decode messages until a stop; False if the socket was closed or the browser went away."""
    audio_seen = False
    while session.ended_at is None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return False
        data = message.get("bytes")
        if data is None:
            control: Any = None
            with contextlib.suppress(json.JSONDecodeError):
                control = json.loads(message.get("text") or "")
            if isinstance(control, dict) and control.get("type") == "stop":
                # What was already sent is still heard, then the session ends. The browser's
                # microphone sends a bare stop; `loa-server live` says what its input was.
                said = control.get("reason")
                reason = STOP_REASONS.get(said if isinstance(said, str) else "", MIC_STOPPED)
                await live.finish_input(session, reason=reason)
                break
            if isinstance(control, dict) and control.get("type") == "paced":
                session.queue.live = False  # a pipe fed faster than real time: all content
                continue
            if isinstance(control, dict) and "format" in control and not audio_seen:
                try:
                    dec = _decoder_for(control)
                    session.queue.live = control.get("live", True) is not False
                except IngestError as exc:
                    await ws.close(CLOSE_UNSUPPORTED, str(exc)[:120])
                    return False
                continue
            await ws.close(CLOSE_UNSUPPORTED, "send audio as binary messages")
            return False
        audio_seen = True
        try:
            live.ingest(session, dec.decode(data))
        except IngestError as exc:
            await ws.close(CLOSE_UNSUPPORTED, str(exc)[:120])
            return False
    return True
